//! The REST global rate limit: a fixed one-second window. Plain arithmetic.

use std::time::{Duration, Instant};

/// Outcome of one request against the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Served; `remaining` requests are left until `reset_after`.
    Yes {
        remaining: u32,
        reset_after: Duration,
    },
    /// Over the limit: retry after this long.
    No { retry_after: Duration },
}

const WINDOW: Duration = Duration::from_secs(1);

/// Requests counted in the current one-second window.
#[derive(Debug)]
pub(crate) struct Window {
    limit: u32,
    started: Option<Instant>,
    used: u32,
}

impl Window {
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            limit,
            started: None,
            used: 0,
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts a request arriving at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        let started = match self.started {
            Some(started) if now.saturating_duration_since(started) < WINDOW => started,
            _ => {
                self.started = Some(now);
                self.used = 0;
                now
            }
        };
        let reset_after = WINDOW.saturating_sub(now.saturating_duration_since(started));
        if self.used >= self.limit {
            return Admit::No {
                retry_after: reset_after,
            };
        }
        self.used += 1;
        Admit::Yes {
            remaining: self.limit - self.used,
            reset_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_per_second_then_429_until_the_window_ends() {
        let start = Instant::now();
        let mut window = Window::new(50);
        for n in 0..50 {
            let Admit::Yes { remaining, .. } = window.admit(start) else {
                panic!("request {n} refused");
            };
            assert_eq!(remaining, 49 - n);
        }
        let later = start + Duration::from_millis(300);
        assert_eq!(
            window.admit(later),
            Admit::No {
                retry_after: Duration::from_millis(700)
            }
        );
        assert!(matches!(
            window.admit(start + WINDOW),
            Admit::Yes { remaining: 49, .. }
        ));
    }
}
