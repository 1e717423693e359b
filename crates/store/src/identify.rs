//! Cluster-wide IDENTIFY pacing and the daily session-start budget.

use std::time::{Duration, SystemTime};

/// Discord allows one IDENTIFY per bucket (`shard % max_concurrency`) per this interval.
pub const IDENTIFY_INTERVAL: Duration = Duration::from_secs(5);

/// The daily session-start budget, as `GET /gateway/bot` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyBudget {
    /// Session starts left until `resets_at`.
    pub remaining: u32,
    /// Session starts per day; `remaining` returns to this at `resets_at`.
    pub total: u32,
    /// When Discord refills the budget.
    pub resets_at: SystemTime,
}

/// The answer to a request for an IDENTIFY slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifyGrant {
    /// Identify now; the slot and one unit of budget are spent.
    Granted,
    /// The bucket was used less than [`IDENTIFY_INTERVAL`] ago: ask again after this long.
    RetryAfter(Duration),
    /// The daily budget is spent: no identify before this time.
    BudgetExhausted {
        /// When the budget refills.
        until: SystemTime,
    },
}

/// Discord refills the session-start budget once a day.
pub(crate) const DAY_MS: i64 = 24 * 60 * 60 * 1_000;

/// The budget in the units both backends store: counts and Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredBudget {
    pub(crate) remaining: i64,
    pub(crate) total: i64,
    pub(crate) resets_at_ms: i64,
}

impl StoredBudget {
    /// The budget as it stands at `now_ms`: refilled to `total` once the reset has
    /// passed, with the reset moved forward by whole days past `now_ms`.
    pub(crate) fn at(self, now_ms: i64) -> Self {
        if now_ms < self.resets_at_ms {
            return self;
        }
        let days = (now_ms - self.resets_at_ms) / DAY_MS + 1;
        Self {
            remaining: self.total,
            total: self.total,
            resets_at_ms: self
                .resets_at_ms
                .saturating_add(days.saturating_mul(DAY_MS)),
        }
    }
}

/// What one request for an identify slot decides.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct GrantDecision {
    pub(crate) answer: IdentifyGrant,
    /// The budget to write back (refilled and/or spent), when one is recorded.
    pub(crate) budget: Option<StoredBudget>,
}

/// Decides a request at `now_ms` given the bucket's last grant and the recorded budget;
/// the one rule both backends apply inside their atomic write.
///
/// An exhausted budget wins over pacing: waiting 5 s would not help.
pub(crate) fn decide_grant(
    now_ms: i64,
    last_grant_ms: Option<i64>,
    budget: Option<StoredBudget>,
) -> GrantDecision {
    let budget = budget.map(|stored| stored.at(now_ms));
    if let Some(current) = budget
        && current.remaining <= 0
    {
        return GrantDecision {
            answer: IdentifyGrant::BudgetExhausted {
                until: SystemTime::UNIX_EPOCH
                    + Duration::from_millis(current.resets_at_ms.max(0).unsigned_abs()),
            },
            budget,
        };
    }
    let interval = i64::try_from(IDENTIFY_INTERVAL.as_millis()).unwrap_or(i64::MAX);
    if let Some(last) = last_grant_ms {
        let next = last.saturating_add(interval);
        if now_ms < next {
            // Capped at one interval: if a clock stepped back (or another node's runs
            // ahead), callers keep asking every 5 s rather than sleeping for the skew.
            let wait = (next - now_ms).min(interval);
            return GrantDecision {
                answer: IdentifyGrant::RetryAfter(Duration::from_millis(wait.unsigned_abs())),
                budget,
            };
        }
    }
    GrantDecision {
        answer: IdentifyGrant::Granted,
        budget: budget.map(|current| StoredBudget {
            remaining: current.remaining - 1,
            ..current
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn budget(remaining: i64, resets_at_ms: i64) -> StoredBudget {
        StoredBudget {
            remaining,
            total: 1_000,
            resets_at_ms,
        }
    }

    #[test]
    fn an_unused_bucket_without_budget_is_granted_uncounted() {
        assert_eq!(
            decide_grant(NOW, None, None),
            GrantDecision {
                answer: IdentifyGrant::Granted,
                budget: None
            }
        );
    }

    #[test]
    fn a_bucket_used_recently_answers_the_remaining_wait() {
        let decision = decide_grant(NOW, Some(NOW - 1_500), Some(budget(10, NOW + DAY_MS)));
        assert_eq!(
            decision.answer,
            IdentifyGrant::RetryAfter(Duration::from_millis(3_500))
        );
        assert_eq!(decision.budget, Some(budget(10, NOW + DAY_MS)));
        assert_eq!(
            decide_grant(NOW, Some(NOW - 5_000), None).answer,
            IdentifyGrant::Granted
        );
    }

    #[test]
    fn a_clock_step_back_never_asks_for_more_than_one_interval() {
        assert_eq!(
            decide_grant(NOW, Some(NOW + 3_600_000), None).answer,
            IdentifyGrant::RetryAfter(IDENTIFY_INTERVAL)
        );
    }

    #[test]
    fn a_grant_spends_one_unit() {
        let decision = decide_grant(NOW, Some(NOW - 5_000), Some(budget(10, NOW + DAY_MS)));
        assert_eq!(decision.answer, IdentifyGrant::Granted);
        assert_eq!(decision.budget, Some(budget(9, NOW + DAY_MS)));
    }

    #[test]
    fn a_spent_budget_refuses_until_its_reset_even_when_paced() {
        let decision = decide_grant(NOW, Some(NOW - 1_000), Some(budget(0, NOW + 60_000)));
        assert_eq!(
            decision.answer,
            IdentifyGrant::BudgetExhausted {
                until: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_060)
            }
        );
    }

    #[test]
    fn a_passed_reset_refills_and_moves_on_by_whole_days() {
        let stored = budget(0, NOW - 2 * DAY_MS - 1);
        assert_eq!(stored.at(NOW), budget(1_000, NOW + DAY_MS - 1));
        let decision = decide_grant(NOW, None, Some(stored));
        assert_eq!(decision.answer, IdentifyGrant::Granted);
        assert_eq!(decision.budget, Some(budget(999, NOW + DAY_MS - 1)));
        assert_eq!(budget(0, NOW).at(NOW), budget(1_000, NOW + DAY_MS));
    }
}
