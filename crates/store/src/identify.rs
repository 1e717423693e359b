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
