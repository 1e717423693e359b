//! Leases: acquire, renew and release as LWTs on one partition per lease key.
//!
//! Every write to a lease row is conditional, so Paxos orders them all; a plain write
//! would carry a client timestamp that Paxos ballots can overtake. A write whose outcome
//! is unknown is settled by reading the row at `LOCAL_SERIAL`, which also completes any
//! Paxos round left half-done.

use std::time::{Duration, SystemTime};

use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use super::ScyllaStore;
use super::errors::{execution_error, invalid_data};
use super::lease_row::{LeaseRow, StateBinds, Stored};
use super::lwt::{Cas, UNKNOWN_OUTCOME_ATTEMPTS, back_off, cas, outcome_unknown, read_back_failed};
use super::values::{add, bigint, system_time, timestamp, unsigned};
use crate::{Error, ErrorKind, Lease, LeaseGrant, LeaseKey, LeaseState, Store};

/// How often acquire re-reads a row that changed under it before giving up. Each retry
/// means another node wrote the row, so a handful covers any real contention.
const ACQUIRE_ATTEMPTS: usize = 8;

/// How many keys one listing query asks for: a multi-partition `IN` fans out from the
/// coordinator, so it is kept small.
const LIST_CHUNK: usize = 100;

/// What a serial read after an unknown outcome says about a write.
enum Settled {
    /// The row shows the write.
    Applied,
    /// The row shows the write did not happen and cannot happen any more.
    NotApplied,
    /// The write did not happen, but its condition still holds: try it again.
    Retry,
}

impl ScyllaStore {
    pub(super) async fn acquire_lease(
        &self,
        key: &LeaseKey,
        owner: &str,
        duration: Duration,
    ) -> Result<Option<Lease>, Error> {
        let key_text = key.to_string();
        let what = format!("acquire {key_text}");
        for attempt in 0..ACQUIRE_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let row = self.read_lease(&key_text).await?;
            let now = timestamp(SystemTime::now());
            let until = add(now, duration);
            let (take, epoch, state) = match &row {
                None => {
                    // The index entry goes first, so no lease row exists that `leases()`
                    // and `delete_cluster()` cannot find.
                    self.session()
                        .execute_unpaged(
                            &self.statements().lease_key_insert,
                            (self.cluster(), &key_text),
                        )
                        .await
                        .map_err(|error| execution_error(&what, error))?;
                    (Take::Create, 1, LeaseState::Empty)
                }
                Some(stored) if stored.held_at(now) => return Ok(None),
                Some(stored) => (
                    Take::Update {
                        epoch: stored.epoch,
                        lease_until: stored.lease_until,
                    },
                    stored.epoch + 1,
                    stored.lease.state.clone(),
                ),
            };
            let outcome = match take {
                Take::Create => {
                    cas(
                        self.session(),
                        &self.statements().lease_create,
                        (self.cluster(), &key_text, owner, epoch, until),
                        &what,
                    )
                    .await?
                }
                Take::Update {
                    epoch: read_epoch,
                    lease_until: read_until,
                } => {
                    cas(
                        self.session(),
                        &self.statements().lease_take,
                        (
                            owner,
                            epoch,
                            until,
                            self.cluster(),
                            &key_text,
                            read_epoch,
                            read_until,
                        ),
                        &what,
                    )
                    .await?
                }
            };
            let won = match outcome {
                Cas::Decided(applied) => applied,
                Cas::Unknown(error) => {
                    let now_row = self
                        .read_back(&key_text)
                        .await
                        .map_err(|read| read_back_failed(&what, &error, read))?;
                    now_row.is_some_and(|stored| {
                        stored.lease.owner.as_deref() == Some(owner)
                            && stored.epoch == epoch
                            && stored.lease_until == until
                    })
                }
            };
            if won {
                return Ok(Some(Lease {
                    key: key.clone(),
                    owner: Some(owner.to_owned()),
                    epoch: unsigned(epoch, &what)?,
                    lease_until: system_time(until),
                    state,
                }));
            }
            // Someone else wrote the row between the read and the write: read it again.
        }
        Err(Error::new(
            ErrorKind::Backend,
            format!("scylla {what}: the row kept changing over {ACQUIRE_ATTEMPTS} attempts"),
        ))
    }

    pub(super) async fn renew_lease(
        &self,
        grant: &LeaseGrant,
        duration: Duration,
        state: &LeaseState,
    ) -> Result<bool, Error> {
        let key_text = grant.key.to_string();
        let what = format!("renew {key_text}");
        let binds = StateBinds::of(state, &what)?;
        let epoch = bigint(grant.epoch, &what)?;
        let mut last_error = None;
        for attempt in 0..UNKNOWN_OUTCOME_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let until = add(timestamp(SystemTime::now()), duration);
            let values = (
                until,
                binds.kind,
                &binds.session_id,
                &binds.seq,
                &binds.resume_url,
                &binds.stream_offset,
                &binds.marks,
                self.cluster(),
                &key_text,
                &grant.owner,
                epoch,
            );
            match cas(
                self.session(),
                &self.statements().lease_renew,
                values,
                &what,
            )
            .await?
            {
                Cas::Decided(applied) => return Ok(applied),
                Cas::Unknown(error) => {
                    let row = match self.read_back(&key_text).await {
                        Ok(row) => row,
                        Err(read) => return Err(read_back_failed(&what, &error, read)),
                    };
                    match settle_renew(row.as_ref(), grant, epoch, until) {
                        Settled::Applied => return Ok(true),
                        Settled::NotApplied => return Ok(false),
                        Settled::Retry => last_error = Some(error),
                    }
                }
            }
        }
        Err(outcome_unknown(
            &what,
            last_error.expect("set by every retrying attempt"),
        ))
    }

    pub(super) async fn release_lease(
        &self,
        grant: &LeaseGrant,
        state: &LeaseState,
    ) -> Result<bool, Error> {
        let key_text = grant.key.to_string();
        let what = format!("release {key_text}");
        let binds = StateBinds::of(state, &what)?;
        let epoch = bigint(grant.epoch, &what)?;
        let mut last_error = None;
        for attempt in 0..UNKNOWN_OUTCOME_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let values = (
                binds.kind,
                &binds.session_id,
                &binds.seq,
                &binds.resume_url,
                &binds.stream_offset,
                &binds.marks,
                self.cluster(),
                &key_text,
                &grant.owner,
                epoch,
            );
            match cas(
                self.session(),
                &self.statements().lease_release,
                values,
                &what,
            )
            .await?
            {
                Cas::Decided(applied) => return Ok(applied),
                Cas::Unknown(error) => {
                    let row = match self.read_back(&key_text).await {
                        Ok(row) => row,
                        Err(read) => return Err(read_back_failed(&what, &error, read)),
                    };
                    match settle_release(row.as_ref(), grant, epoch) {
                        Settled::Applied => return Ok(true),
                        Settled::NotApplied => return Ok(false),
                        Settled::Retry => last_error = Some(error),
                    }
                }
            }
        }
        Err(outcome_unknown(
            &what,
            last_error.expect("set by every retrying attempt"),
        ))
    }

    pub(super) async fn lease_row(&self, key: &LeaseKey) -> Result<Option<Lease>, Error> {
        Ok(self
            .read_lease(&key.to_string())
            .await?
            .map(|stored| stored.lease))
    }

    pub(super) async fn all_leases(&self) -> Result<Vec<Lease>, Error> {
        let what = "list leases";
        let keys: Vec<String> = self
            .session()
            .execute_unpaged(&self.statements().lease_keys_select, (self.cluster(),))
            .await
            .map_err(|error| execution_error(what, error))?
            .into_rows_result()
            .map_err(|error| invalid_data(what, error))?
            .rows::<(String,)>()
            .map_err(|error| invalid_data(what, error))?
            .map(|row| row.map(|(key,)| key))
            .collect::<Result<_, _>>()
            .map_err(|error| invalid_data(what, error))?;
        let mut leases = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(LIST_CHUNK) {
            let rows = self
                .session()
                .execute_unpaged(&self.statements().leases_select_in, (self.cluster(), chunk))
                .await
                .map_err(|error| execution_error(what, error))?
                .into_rows_result()
                .map_err(|error| invalid_data(what, error))?;
            for row in rows
                .rows::<LeaseRow>()
                .map_err(|error| invalid_data(what, error))?
            {
                let row = row.map_err(|error| invalid_data(what, error))?;
                leases.push(Stored::decode(row)?.lease);
            }
        }
        // Text order would put shard/10 before shard/2; the trait promises key order.
        leases.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(leases)
    }

    /// Deletes every lease row of the cluster and its key index.
    pub(super) async fn delete_leases(&self) -> Result<(), Error> {
        let what = "delete leases";
        let rows = self
            .session()
            .execute_unpaged(&self.statements().lease_keys_select, (self.cluster(),))
            .await
            .map_err(|error| execution_error(what, error))?
            .into_rows_result()
            .map_err(|error| invalid_data(what, error))?;
        for row in rows
            .rows::<(String,)>()
            .map_err(|error| invalid_data(what, error))?
        {
            let (key,) = row.map_err(|error| invalid_data(what, error))?;
            let delete = cas(
                self.session(),
                &self.statements().lease_delete,
                (self.cluster(), &key),
                what,
            )
            .await?;
            if let Cas::Unknown(error) = delete {
                return Err(execution_error(what, *error));
            }
        }
        self.session()
            .execute_unpaged(&self.statements().lease_keys_delete, (self.cluster(),))
            .await
            .map_err(|error| execution_error(what, error))?;
        Ok(())
    }

    /// The row of `key` at `LOCAL_QUORUM`: what a conditional write is conditioned on.
    async fn read_lease(&self, key: &str) -> Result<Option<Stored>, Error> {
        self.read_lease_with(&self.statements().lease_select, key)
            .await
    }

    async fn read_lease_with(
        &self,
        statement: &PreparedStatement,
        key: &str,
    ) -> Result<Option<Stored>, Error> {
        let what = format!("read lease {key}");
        let rows = self
            .session()
            .execute_unpaged(statement, (self.cluster(), key))
            .await
            .map_err(|error| execution_error(&what, error))?
            .into_rows_result()
            .map_err(|error| invalid_data(&what, error))?;
        rows.maybe_first_row::<LeaseRow>()
            .map_err(|error| invalid_data(&what, error))?
            .map(Stored::decode)
            .transpose()
    }

    /// The row of `key` at `LOCAL_SERIAL`, after an unknown outcome: the serial read
    /// completes any Paxos round left half-done, so what it shows is final. It may meet
    /// the same contention that timed the write out, so it is tried a few times.
    async fn read_back(&self, key: &str) -> Result<Option<Stored>, Error> {
        let mut attempt = 0;
        loop {
            let statement = &self.statements().lease_select_serial;
            match self.read_lease_with(statement, key).await {
                Ok(row) => return Ok(row),
                Err(error) if error.is_retryable() && attempt + 1 < UNKNOWN_OUTCOME_ATTEMPTS => {
                    attempt += 1;
                    back_off(attempt).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Which conditional write takes a key: the very first one creates its row.
enum Take {
    Create,
    Update {
        epoch: i64,
        lease_until: CqlTimestamp,
    },
}

fn settle_renew(
    row: Option<&Stored>,
    grant: &LeaseGrant,
    epoch: i64,
    until: CqlTimestamp,
) -> Settled {
    match row {
        Some(stored)
            if stored.lease.owner.as_deref() == Some(grant.owner.as_str())
                && stored.epoch == epoch =>
        {
            if stored.lease_until == until {
                Settled::Applied
            } else {
                Settled::Retry
            }
        }
        _ => Settled::NotApplied,
    }
}

fn settle_release(row: Option<&Stored>, grant: &LeaseGrant, epoch: i64) -> Settled {
    match row {
        // Only the holder of an epoch can release it, so a free row at our epoch is ours.
        Some(stored) if stored.epoch == epoch && stored.lease.owner.is_none() => Settled::Applied,
        Some(stored)
            if stored.epoch == epoch
                && stored.lease.owner.as_deref() == Some(grant.owner.as_str()) =>
        {
            Settled::Retry
        }
        _ => Settled::NotApplied,
    }
}
