//! Identify pacing: one IDENTIFY per bucket (`shard_id % max_concurrency`) per
//! interval, and the daily session-start budget. Plain arithmetic, no clock of its own.

use std::time::{Duration, Instant};

/// What the simulator does with an IDENTIFY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start a session; one session start was spent.
    Granted,
    /// The bucket identified less than an interval ago: a pacing violation.
    TooSoon,
    /// The daily budget is spent.
    BudgetExhausted,
}

/// Per-bucket time of the last granted IDENTIFY, and the budget left.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Duration,
    slack: Duration,
    last: Vec<Option<Instant>>,
    remaining: u32,
}

impl Pacer {
    pub(crate) fn new(
        max_concurrency: u16,
        interval: Duration,
        slack: Duration,
        budget: u32,
    ) -> Self {
        Self {
            interval,
            slack,
            last: vec![None; usize::from(max_concurrency.max(1))],
            remaining: budget,
        }
    }

    /// Judges an IDENTIFY from `shard` arriving at `now`.
    ///
    /// A violation does not move the bucket's clock: the next legal IDENTIFY is still
    /// one interval after the last granted one.
    pub(crate) fn identify(&mut self, shard: u32, now: Instant) -> Verdict {
        let bucket = shard as usize % self.last.len();
        if let Some(last) = self.last[bucket]
            && now.saturating_duration_since(last) + self.slack < self.interval
        {
            return Verdict::TooSoon;
        }
        if self.remaining == 0 {
            return Verdict::BudgetExhausted;
        }
        self.remaining -= 1;
        self.last[bucket] = Some(now);
        Verdict::Granted
    }

    /// Session starts left in the budget.
    pub(crate) fn remaining(&self) -> u32 {
        self.remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn pacer(max_concurrency: u16, budget: u32) -> Pacer {
        Pacer::new(
            max_concurrency,
            5 * SECOND,
            Duration::from_millis(100),
            budget,
        )
    }

    #[test]
    fn one_identify_per_bucket_per_interval() {
        let start = Instant::now();
        let mut pacer = pacer(2, 100);
        assert_eq!(pacer.identify(0, start), Verdict::Granted);
        assert_eq!(pacer.identify(1, start), Verdict::Granted);
        assert_eq!(pacer.identify(2, start + SECOND), Verdict::TooSoon);
        assert_eq!(pacer.identify(3, start + 4 * SECOND), Verdict::TooSoon);
        assert_eq!(pacer.identify(2, start + 5 * SECOND), Verdict::Granted);
        assert_eq!(pacer.identify(3, start + 5 * SECOND), Verdict::Granted);
        assert_eq!(pacer.remaining(), 96);
    }

    #[test]
    fn slack_forgives_small_jitter_only() {
        let start = Instant::now();
        let mut pacer = pacer(1, 100);
        assert_eq!(pacer.identify(0, start), Verdict::Granted);
        assert_eq!(
            pacer.identify(0, start + Duration::from_millis(4_850)),
            Verdict::TooSoon
        );
        assert_eq!(
            pacer.identify(0, start + Duration::from_millis(4_950)),
            Verdict::Granted
        );
    }

    #[test]
    fn violations_do_not_spend_budget_and_budget_runs_out() {
        let start = Instant::now();
        let mut pacer = pacer(1, 1);
        assert_eq!(pacer.identify(0, start), Verdict::Granted);
        assert_eq!(pacer.identify(0, start), Verdict::TooSoon);
        assert_eq!(pacer.remaining(), 0);
        assert_eq!(
            pacer.identify(0, start + 10 * SECOND),
            Verdict::BudgetExhausted
        );
    }
}
