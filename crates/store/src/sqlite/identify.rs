//! IDENTIFY pacing per bucket and the daily budget: the shared decision
//! ([`decide_grant`]) applied in one `BEGIN IMMEDIATE` transaction so concurrent processes cannot both take
//! the same slot.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use std::time::SystemTime;

use super::convert::{Failure, from_ms, now_ms, to_ms, to_ms_ceil};
use crate::identify::{StoredBudget, decide_grant};
use crate::{IdentifyBudget, IdentifyGrant};

/// The budget as the API reports it.
fn to_budget(row: StoredBudget) -> IdentifyBudget {
    IdentifyBudget {
        remaining: u32::try_from(row.remaining.max(0)).unwrap_or(u32::MAX),
        total: u32::try_from(row.total.max(0)).unwrap_or(u32::MAX),
        resets_at: from_ms(row.resets_at_ms),
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
    let now = SystemTime::now();
    let last_granted: Option<i64> = tx
        .prepare_cached(
            "SELECT last_granted_ms FROM identify_buckets WHERE cluster = ?1 AND bucket = ?2",
        )?
        .query_row((cluster, bucket), |row| row.get(0))
        .optional()?;
    let budget = read_budget(&tx, cluster)?;
    let decision = decide_grant(to_ms(now), last_granted, budget);
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
        // Rounded up: a stamp earlier than the grant would let the next one come up to
        // 1 ms less than 5 s after it.
        .execute((cluster, bucket, to_ms_ceil(now)))?;
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
    Ok(read_budget(conn, cluster)?.map(|row| to_budget(row.at(now))))
}

fn read_budget(conn: &Connection, cluster: &str) -> rusqlite::Result<Option<StoredBudget>> {
    conn.prepare_cached(
        "SELECT remaining, total, resets_at_ms FROM identify_budget WHERE cluster = ?1",
    )?
    .query_row([cluster], |row| {
        Ok(StoredBudget {
            remaining: row.get(0)?,
            total: row.get(1)?,
            resets_at_ms: row.get(2)?,
        })
    })
    .optional()
}
