//! Runs of consecutive failures, so that a retried operation is logged when it starts
//! failing and when it works again instead of at every attempt.

use std::time::{Duration, Instant};

/// Consecutive failures of one repeated operation (a heartbeat, a subscription, a
/// connect): the first of a run is the one to log at WARN, the rest at DEBUG, and the
/// success that ends the run is reported with [`FailureRun::ended`].
///
/// ```
/// use shardmesh_broker::FailureRun;
///
/// let mut announcing = FailureRun::default();
/// assert!(announcing.failed()); // WARN: the first of a run
/// assert!(!announcing.failed()); // DEBUG: the same outage
/// let run = announcing.ended().expect("a run ended");
/// assert_eq!(run.failures, 2);
/// assert!(announcing.ended().is_none()); // a success without a run before it
/// ```
#[derive(Debug, Default, Clone)]
pub struct FailureRun {
    current: Option<(Instant, u32)>,
}

/// A run of failures that a success ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedRun {
    /// How many attempts failed.
    pub failures: u32,
    /// From the first failure to the success.
    pub lasted: Duration,
}

impl EndedRun {
    /// [`EndedRun::lasted`] in whole milliseconds, for a log field.
    pub fn millis(&self) -> u64 {
        u64::try_from(self.lasted.as_millis()).unwrap_or(u64::MAX)
    }
}

impl FailureRun {
    /// Counts a failure; `true` when it begins a run (log it at WARN), `false` when it
    /// continues one (DEBUG).
    pub fn failed(&mut self) -> bool {
        if let Some((_, failures)) = &mut self.current {
            *failures = failures.saturating_add(1);
            false
        } else {
            self.current = Some((Instant::now(), 1));
            true
        }
    }

    /// Records a success: the run it ends, if one was under way (log it at INFO).
    pub fn ended(&mut self) -> Option<EndedRun> {
        self.current.take().map(|(since, failures)| EndedRun {
            failures,
            lasted: since.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_failure_of_a_run_begins_it() {
        let mut run = FailureRun::default();
        assert!(run.ended().is_none());
        assert!(run.failed());
        assert!(!run.failed());
        assert!(!run.failed());
        assert_eq!(run.ended().map(|ended| ended.failures), Some(3));
        assert!(run.failed(), "a failure after a success begins a new run");
    }
}
