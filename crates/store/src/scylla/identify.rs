//! IDENTIFY pacing and the daily budget: read the cluster's identify partition, decide
//! with the shared rule ([`decide_grant`]), then write the grant with one LWT whose conditions are the
//! values read. A failed condition means another grant (or a budget update) landed in
//! between, or the read was stale; either way the loop reads again and decides again, so
//! a stale read costs a retry, never a wrong grant.

use std::collections::BTreeMap;
use std::time::SystemTime;

use scylla::DeserializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlTimeuuid};

use super::ScyllaStore;
use super::errors::{execution_error, invalid_data};
use super::lwt::{Cas, back_off, cas, read_back_failed};
use super::values::{system_time, timestamp, timestamp_ceil, timeuuid, unsigned32};
use crate::identify::{StoredBudget, decide_grant};
use crate::{Error, ErrorKind, IdentifyBudget, IdentifyGrant, Store};

/// How often a grant or a budget update re-reads after losing a race. Every loss means
/// someone else's write landed; with a counted budget each grant in any bucket changes
/// the budget, so this is sized for every bucket of a large bot asking at once.
const ATTEMPTS: usize = 32;

#[derive(Debug, DeserializeRow)]
pub(super) struct IdentifyRow {
    bucket: Option<i64>,
    last_grant: Option<CqlTimestamp>,
    grant_id: Option<CqlTimeuuid>,
    remaining: Option<i64>,
    total: Option<i64>,
    resets_at: Option<CqlTimestamp>,
}

/// The budget as the API reports it.
fn to_budget(stored: StoredBudget) -> Result<IdentifyBudget, Error> {
    Ok(IdentifyBudget {
        remaining: unsigned32(stored.remaining, "identify remaining")?,
        total: unsigned32(stored.total, "identify total")?,
        resets_at: system_time(CqlTimestamp(stored.resets_at_ms)),
    })
}

/// The cluster's identify partition.
#[derive(Debug, Default)]
struct Partition {
    budget: Option<StoredBudget>,
    /// Per bucket: when it was last granted, and the id of that grant.
    buckets: BTreeMap<i64, (i64, CqlTimeuuid)>,
}

impl ScyllaStore {
    pub(super) async fn grant_identify_slot(&self, bucket: u32) -> Result<IdentifyGrant, Error> {
        let what = format!("grant identify in bucket {bucket}");
        let bucket = i64::from(bucket);
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                back_off(attempt.min(4)).await;
            }
            let partition = self.read_identify(&what).await?;
            let now = SystemTime::now();
            // The stamp is rounded up and the time compared against it rounded down, so
            // millisecond precision never lets two grants come less than 5 s apart.
            let stamp = timestamp_ceil(now);
            let last = partition.buckets.get(&bucket).copied();
            let decision = decide_grant(timestamp(now).0, last.map(|(at, _)| at), partition.budget);
            if decision.answer != IdentifyGrant::Granted {
                return Ok(decision.answer);
            }
            let grant_id = timeuuid(now);
            let last_id = last.map(|(_, id)| id);
            let outcome = if let (Some(stored), Some(after)) = (partition.budget, decision.budget) {
                let values = (
                    stamp,
                    grant_id,
                    after.remaining,
                    CqlTimestamp(after.resets_at_ms),
                    self.cluster(),
                    bucket,
                    last_id,
                    stored.remaining,
                    CqlTimestamp(stored.resets_at_ms),
                );
                let statement = &self.statements().identify_grant_counted;
                cas(self.session(), statement, values, &what).await?
            } else {
                let values = (stamp, grant_id, self.cluster(), bucket, last_id);
                let statement = &self.statements().identify_grant_paced;
                cas(self.session(), statement, values, &what).await?
            };
            let granted = match outcome {
                Cas::Decided(applied) => applied,
                Cas::Unknown(error) => {
                    let after = match self.read_identify_serial(&what).await {
                        Ok(after) => after,
                        Err(read) => return Err(read_back_failed(&what, &error, read)),
                    };
                    after.buckets.get(&bucket).map(|&(_, id)| id) == Some(grant_id)
                }
            };
            if granted {
                return Ok(IdentifyGrant::Granted);
            }
        }
        Err(contended(&what))
    }

    pub(super) async fn record_identify_budget(&self, budget: IdentifyBudget) -> Result<(), Error> {
        let what = "set identify budget";
        let wanted = StoredBudget {
            remaining: i64::from(budget.remaining),
            total: i64::from(budget.total),
            resets_at_ms: timestamp(budget.resets_at).0,
        };
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                back_off(attempt.min(4)).await;
            }
            let stored = self.read_identify(what).await?.budget;
            let values = (
                wanted.remaining,
                wanted.total,
                CqlTimestamp(wanted.resets_at_ms),
                self.cluster(),
                stored.map(|old| old.remaining),
                stored.map(|old| old.total),
                stored.map(|old| CqlTimestamp(old.resets_at_ms)),
            );
            let statement = &self.statements().identify_set_budget;
            let written = match cas(self.session(), statement, values, what).await? {
                Cas::Decided(applied) => applied,
                Cas::Unknown(error) => match self.read_identify_serial(what).await {
                    Ok(after) => after.budget == Some(wanted),
                    Err(read) => return Err(read_back_failed(what, &error, read)),
                },
            };
            if written {
                return Ok(());
            }
        }
        Err(contended(what))
    }

    pub(super) async fn current_identify_budget(&self) -> Result<Option<IdentifyBudget>, Error> {
        let now = timestamp(SystemTime::now()).0;
        self.read_identify("read identify budget")
            .await?
            .budget
            .map(|stored| to_budget(stored.at(now)))
            .transpose()
    }

    /// Deletes the identify partition row by row: its rows are written with LWT only.
    pub(super) async fn delete_identify(&self) -> Result<(), Error> {
        let what = "delete identify state";
        let partition = self.read_identify(what).await?;
        for &bucket in partition.buckets.keys() {
            let statement = &self.statements().identify_delete_bucket;
            if let Cas::Unknown(error) =
                cas(self.session(), statement, (self.cluster(), bucket), what).await?
            {
                return Err(execution_error(what, *error));
            }
        }
        if partition.budget.is_some() {
            let statement = &self.statements().identify_delete_budget;
            if let Cas::Unknown(error) =
                cas(self.session(), statement, (self.cluster(),), what).await?
            {
                return Err(execution_error(what, *error));
            }
        }
        Ok(())
    }

    /// The cluster's identify partition at `LOCAL_QUORUM`: what a conditional write is
    /// conditioned on.
    async fn read_identify(&self, what: &str) -> Result<Partition, Error> {
        self.read_identify_with(&self.statements().identify_select, what)
            .await
    }

    /// The cluster's identify partition at `LOCAL_SERIAL`, after an unknown outcome: the
    /// serial read completes any Paxos round left half-done, so what it shows is final.
    async fn read_identify_serial(&self, what: &str) -> Result<Partition, Error> {
        self.read_identify_with(&self.statements().identify_select_serial, what)
            .await
    }

    async fn read_identify_with(
        &self,
        statement: &PreparedStatement,
        what: &str,
    ) -> Result<Partition, Error> {
        let rows = self
            .session()
            .execute_unpaged(statement, (self.cluster(),))
            .await
            .map_err(|error| execution_error(what, error))?
            .into_rows_result()
            .map_err(|error| invalid_data(what, error))?;
        let mut partition = Partition::default();
        for row in rows
            .rows::<IdentifyRow>()
            .map_err(|error| invalid_data(what, error))?
        {
            let row = row.map_err(|error| invalid_data(what, error))?;
            // Static columns repeat on every row; a recorded budget has all three.
            if let (Some(remaining), Some(total), Some(resets_at)) =
                (row.remaining, row.total, row.resets_at)
            {
                partition.budget = Some(StoredBudget {
                    remaining,
                    total,
                    resets_at_ms: resets_at.0,
                });
            }
            if let (Some(bucket), Some(last_grant), Some(grant_id)) =
                (row.bucket, row.last_grant, row.grant_id)
            {
                partition.buckets.insert(bucket, (last_grant.0, grant_id));
            }
        }
        Ok(partition)
    }
}

fn contended(what: &str) -> Error {
    Error::new(
        ErrorKind::Backend,
        format!("scylla {what}: lost the race {ATTEMPTS} times in a row"),
    )
}
