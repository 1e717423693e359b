//! IDENTIFY pacing per bucket and the daily budget: the arithmetic as a plain function,
//! applied in one `BEGIN IMMEDIATE` transaction so concurrent processes cannot both take
//! the same slot.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::convert::{Failure, duration_ms, from_ms, now_ms, to_ms};
use crate::{IDENTIFY_INTERVAL, IdentifyBudget, IdentifyGrant};

/// Discord refills the session-start budget once a day.
const DAY_MS: i64 = 24 * 60 * 60 * 1_000;

/// The budget row as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BudgetRow {
    remaining: i64,
    total: i64,
    resets_at_ms: i64,
}

impl BudgetRow {
    /// The budget as it stands at `now`: refilled to `total` once `resets_at` has passed,
    /// with the reset moved forward by whole days past `now`.
    fn at(self, now: i64) -> Self {
        if now < self.resets_at_ms {
            return self;
        }
        let days = (now - self.resets_at_ms) / DAY_MS + 1;
        Self {
            remaining: self.total,
            total: self.total,
            resets_at_ms: self
                .resets_at_ms
                .saturating_add(days.saturating_mul(DAY_MS)),
        }
    }

    fn to_budget(self) -> IdentifyBudget {
        IdentifyBudget {
            remaining: u32::try_from(self.remaining.max(0)).unwrap_or(u32::MAX),
            total: u32::try_from(self.total.max(0)).unwrap_or(u32::MAX),
            resets_at: from_ms(self.resets_at_ms),
        }
    }
}

/// What one request for a slot decides.
#[derive(Debug, PartialEq, Eq)]
struct Decision {
    answer: IdentifyGrant,
    /// The budget to write back (refilled and/or spent), if one is recorded.
    budget: Option<BudgetRow>,
}

/// Decides a request at `now` given the bucket's last grant and the recorded budget.
///
/// An exhausted budget wins over pacing: waiting 5 s would not help.
fn decide(now: i64, last_granted: Option<i64>, budget: Option<BudgetRow>) -> Decision {
    let budget = budget.map(|row| row.at(now));
    if let Some(row) = budget
        && row.remaining <= 0
    {
        return Decision {
            answer: IdentifyGrant::BudgetExhausted {
                until: from_ms(row.resets_at_ms),
            },
            budget,
        };
    }
    let interval = duration_ms(IDENTIFY_INTERVAL);
    if let Some(last) = last_granted {
        let next = last.saturating_add(interval);
        if now < next {
            // Capped at one interval: if the wall clock stepped back, callers keep asking
            // every 5 s rather than being told to sleep for the size of the step.
            let wait = (next - now).min(interval);
            return Decision {
                answer: IdentifyGrant::RetryAfter(Duration::from_millis(wait.unsigned_abs())),
                budget,
            };
        }
    }
    Decision {
        answer: IdentifyGrant::Granted,
        budget: budget.map(|row| BudgetRow {
            remaining: row.remaining - 1,
            ..row
        }),
    }
}

/// Asks for a slot in `bucket`; the read, the decision and the writes form one
/// transaction holding the file's write lock.
pub(super) fn grant(
    conn: &mut Connection,
    cluster: &str,
    bucket: u32,
) -> Result<IdentifyGrant, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read the clock under the lock: a grant stamped before waiting for the lock could
    // land less than 5 s after one stamped later by another process.
    let now = now_ms();
    let last_granted: Option<i64> = tx
        .prepare_cached(
            "SELECT last_granted_ms FROM identify_buckets WHERE cluster = ?1 AND bucket = ?2",
        )?
        .query_row((cluster, bucket), |row| row.get(0))
        .optional()?;
    let budget = read_budget(&tx, cluster)?;
    let decision = decide(now, last_granted, budget);
    if let Some(row) = decision.budget
        && Some(row) != budget
    {
        tx.prepare_cached(
            "UPDATE identify_budget SET remaining = ?2, resets_at_ms = ?3 WHERE cluster = ?1",
        )?
        .execute((cluster, row.remaining, row.resets_at_ms))?;
    }
    if decision.answer == IdentifyGrant::Granted {
        tx.prepare_cached(
            "INSERT INTO identify_buckets (cluster, bucket, last_granted_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (cluster, bucket) DO UPDATE SET last_granted_ms = excluded.last_granted_ms",
        )?
        .execute((cluster, bucket, now))?;
    }
    tx.commit()?;
    Ok(decision.answer)
}

/// Records the budget `GET /gateway/bot` reported; it replaces whatever was counted.
pub(super) fn set_budget(
    conn: &Connection,
    cluster: &str,
    budget: IdentifyBudget,
) -> Result<(), Failure> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO identify_budget (cluster, remaining, total, resets_at_ms)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute((
        cluster,
        budget.remaining,
        budget.total,
        to_ms(budget.resets_at),
    ))?;
    Ok(())
}

/// The recorded budget as it stands now (refilled if its reset time has passed).
pub(super) fn budget(conn: &Connection, cluster: &str) -> Result<Option<IdentifyBudget>, Failure> {
    let now = now_ms();
    Ok(read_budget(conn, cluster)?.map(|row| row.at(now).to_budget()))
}

fn read_budget(conn: &Connection, cluster: &str) -> rusqlite::Result<Option<BudgetRow>> {
    conn.prepare_cached(
        "SELECT remaining, total, resets_at_ms FROM identify_budget WHERE cluster = ?1",
    )?
    .query_row([cluster], |row| {
        Ok(BudgetRow {
            remaining: row.get(0)?,
            total: row.get(1)?,
            resets_at_ms: row.get(2)?,
        })
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn budget(remaining: i64, resets_at_ms: i64) -> BudgetRow {
        BudgetRow {
            remaining,
            total: 1_000,
            resets_at_ms,
        }
    }

    #[test]
    fn an_unused_bucket_without_budget_is_granted_uncounted() {
        assert_eq!(
            decide(NOW, None, None),
            Decision {
                answer: IdentifyGrant::Granted,
                budget: None
            }
        );
    }

    #[test]
    fn a_bucket_used_recently_answers_the_remaining_wait() {
        let decision = decide(NOW, Some(NOW - 1_500), Some(budget(10, NOW + DAY_MS)));
        assert_eq!(
            decision.answer,
            IdentifyGrant::RetryAfter(Duration::from_millis(3_500))
        );
        assert_eq!(decision.budget, Some(budget(10, NOW + DAY_MS)));
        assert_eq!(
            decide(NOW, Some(NOW - 5_000), None).answer,
            IdentifyGrant::Granted
        );
    }

    #[test]
    fn a_clock_step_back_never_asks_for_more_than_one_interval() {
        assert_eq!(
            decide(NOW, Some(NOW + 3_600_000), None).answer,
            IdentifyGrant::RetryAfter(IDENTIFY_INTERVAL)
        );
    }

    #[test]
    fn a_grant_spends_one_unit() {
        let decision = decide(NOW, None, Some(budget(10, NOW + 1)));
        assert_eq!(decision.answer, IdentifyGrant::Granted);
        assert_eq!(decision.budget, Some(budget(9, NOW + 1)));
    }

    #[test]
    fn a_spent_budget_refuses_until_its_reset() {
        let decision = decide(NOW, None, Some(budget(0, NOW + 60_000)));
        assert_eq!(
            decision.answer,
            IdentifyGrant::BudgetExhausted {
                until: from_ms(NOW + 60_000)
            }
        );
    }

    #[test]
    fn the_budget_refills_at_its_reset_and_moves_a_day_on() {
        let decision = decide(NOW, None, Some(budget(0, NOW)));
        assert_eq!(decision.answer, IdentifyGrant::Granted);
        assert_eq!(decision.budget, Some(budget(999, NOW + DAY_MS)));
        // Days without a request: the reset lands on the first future boundary.
        let later = budget(0, NOW - 3 * DAY_MS - 5).at(NOW);
        assert_eq!(later, budget(1_000, NOW + DAY_MS - 5));
    }
}
