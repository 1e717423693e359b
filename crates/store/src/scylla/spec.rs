//! The cluster spec and the cluster's identity: first writer wins with
//! `INSERT ... IF NOT EXISTS`.

use std::time::SystemTime;

use scylla::DeserializeRow;

use super::ScyllaStore;
use super::errors::{execution_error, invalid_data};
use super::lwt::{Cas, UNKNOWN_OUTCOME_ATTEMPTS, back_off, cas};
use super::values::{system_time, timestamp, unsigned32};
use crate::cluster::spec_conflict;
use crate::{ClusterIdentity, ClusterSpec, Error, ErrorKind, Store};

#[derive(Debug, DeserializeRow)]
pub(super) struct SpecRow {
    shard_count: Option<i64>,
    partitions: Option<i64>,
    max_concurrency: Option<i64>,
}

#[derive(Debug, DeserializeRow)]
pub(super) struct IdentityRow {
    id: String,
    created_at: scylla::value::CqlTimestamp,
}

impl ScyllaStore {
    pub(super) async fn claim_cluster_identity(&self) -> Result<ClusterIdentity, Error> {
        let what = "claim cluster identity";
        for attempt in 0..UNKNOWN_OUTCOME_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            // Read first: every node but the cluster's first finds it there, without
            // a Paxos round.
            if let Some(recorded) = self.recorded_cluster_identity().await? {
                return Ok(recorded);
            }
            let proposed = ClusterIdentity {
                id: uuid::Uuid::now_v7().to_string(),
                created_at: SystemTime::now(),
            };
            let values = (
                self.cluster(),
                proposed.id.as_str(),
                timestamp(proposed.created_at),
            );
            let outcome = cas(
                self.session(),
                &self.statements().cluster_identity_insert,
                values,
                what,
            )
            .await?;
            if matches!(outcome, Cas::Decided(true)) {
                return Ok(ClusterIdentity {
                    // As stored: to the millisecond.
                    created_at: system_time(timestamp(proposed.created_at)),
                    ..proposed
                });
            }
            // Not applied (another node won) or unknown: the read gives the winner.
        }
        if let Some(recorded) = self.recorded_cluster_identity().await? {
            return Ok(recorded);
        }
        Err(Error::new(
            ErrorKind::OutcomeUnknown,
            format!(
                "scylla {what}: the identity stayed unwritten over {UNKNOWN_OUTCOME_ATTEMPTS} attempts"
            ),
        ))
    }

    async fn recorded_cluster_identity(&self) -> Result<Option<ClusterIdentity>, Error> {
        let what = "read cluster identity";
        let rows = self
            .session()
            .execute_unpaged(
                &self.statements().cluster_identity_select,
                (self.cluster(),),
            )
            .await
            .map_err(|error| execution_error(what, error))?
            .into_rows_result()
            .map_err(|error| invalid_data(what, error))?;
        Ok(rows
            .maybe_first_row::<IdentityRow>()
            .map_err(|error| invalid_data(what, error))?
            .map(|row| ClusterIdentity {
                id: row.id,
                created_at: system_time(row.created_at),
            }))
    }

    pub(super) async fn delete_cluster_identity(&self) -> Result<(), Error> {
        let statement = &self.statements().cluster_identity_delete;
        self.delete_cluster_row(statement, "delete cluster identity")
            .await
    }

    pub(super) async fn agree_cluster_spec(
        &self,
        proposed: ClusterSpec,
    ) -> Result<ClusterSpec, Error> {
        let what = "agree cluster spec";
        for attempt in 0..UNKNOWN_OUTCOME_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let values = (
                self.cluster(),
                i64::from(proposed.shard_count),
                i64::from(proposed.partitions),
                i64::from(proposed.max_concurrency),
                timestamp(SystemTime::now()),
            );
            let outcome = cas(self.session(), &self.statements().spec_insert, values, what).await?;
            if matches!(outcome, Cas::Decided(true)) {
                return Ok(proposed);
            }
            // Not applied, or unknown: either way the recorded spec is the answer. A
            // timed-out insert that is still missing on a serial read never applied.
            if let Some(recorded) = self.cluster_spec().await? {
                return if recorded == proposed {
                    Ok(recorded)
                } else {
                    Err(spec_conflict(self.cluster(), recorded, proposed))
                };
            }
        }
        Err(Error::new(
            ErrorKind::OutcomeUnknown,
            format!(
                "scylla {what}: the spec stayed unwritten over {UNKNOWN_OUTCOME_ATTEMPTS} attempts"
            ),
        ))
    }

    pub(super) async fn cluster_spec(&self) -> Result<Option<ClusterSpec>, Error> {
        let what = "read cluster spec";
        let rows = self
            .session()
            .execute_unpaged(&self.statements().spec_select, (self.cluster(),))
            .await
            .map_err(|error| execution_error(what, error))?
            .into_rows_result()
            .map_err(|error| invalid_data(what, error))?;
        let Some(row) = rows
            .maybe_first_row::<SpecRow>()
            .map_err(|error| invalid_data(what, error))?
        else {
            return Ok(None);
        };
        let field = |value: Option<i64>, name: &str| {
            unsigned32(value.unwrap_or(-1), &format!("cluster_spec {name}"))
        };
        Ok(Some(ClusterSpec {
            shard_count: field(row.shard_count, "shard_count")?,
            partitions: field(row.partitions, "partitions")?,
            max_concurrency: field(row.max_concurrency, "max_concurrency")?,
        }))
    }

    pub(super) async fn delete_cluster_spec(&self) -> Result<(), Error> {
        let statement = &self.statements().spec_delete;
        self.delete_cluster_row(statement, "delete cluster spec")
            .await
    }

    /// Runs the LWT delete `statement` of this cluster's one row.
    async fn delete_cluster_row(
        &self,
        statement: &scylla::statement::prepared::PreparedStatement,
        what: &str,
    ) -> Result<(), Error> {
        match cas(self.session(), statement, (self.cluster(),), what).await? {
            Cas::Decided(_) => Ok(()),
            Cas::Unknown(error) => Err(execution_error(what, *error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_names_each_differing_field_with_both_values() {
        let recorded = ClusterSpec {
            shard_count: 32,
            partitions: 16,
            max_concurrency: 1,
        };
        let proposed = ClusterSpec {
            shard_count: 64,
            partitions: 8,
            ..recorded
        };
        let error = spec_conflict("prod", recorded, proposed);
        assert_eq!(error.kind(), ErrorKind::SpecConflict);
        assert_eq!(
            error.to_string(),
            "cluster spec conflict: cluster \"prod\" has shard_count 32, this node was given \
             64; partitions 16, this node was given 8"
        );
    }
}
