//! Capped, jittered exponential backoff: how long every retry against the broker (and a
//! node's wait for its store) sleeps.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff, capped, with jitter: attempt `n` waits a uniformly random time
/// in `[d/2, d]` where `d = min(max, min * 2^n)`.
///
/// Every wait on the broker uses it, and so do nodes waiting for their store at
/// start-up ([`BrokerConfig::backoff`](crate::BrokerConfig::backoff)).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// The longest wait, `max`.
    pub(crate) fn max(&self) -> Duration {
        self.max
    }

    /// The jittered delay before attempt `attempt` (0-based).
    pub fn next_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, &mut rand::rng())
    }

    /// The upper bound of the delay before attempt `attempt` (0-based), without jitter.
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The delay before attempt `attempt`, with jitter from `rng`.
    pub(crate) fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling / 2 + ceiling.mul_f64(rng.random::<f64>() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<_> = (0..6).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_to_full_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 0..20 {
            let ceiling = backoff.ceiling(attempt);
            let delay = backoff.delay(attempt, &mut rng);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
        }
    }
}
