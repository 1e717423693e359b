//! A lease row in CQL: how `leases` columns decode into a [`Lease`], and which columns a
//! renew or release binds for a [`LeaseState`].

use std::collections::BTreeMap;

use scylla::value::{CqlTimestamp, MaybeUnset};
use scylla::{DeserializeRow, DeserializeValue, SerializeValue};

use super::errors::invalid_data;
use super::values::{bigint, system_time, unsigned, unsigned32};
use crate::{Checkpoint, DedupMark, Error, Lease, LeaseKey, LeaseState, ShardSession};

/// `state_kind` values: which state columns hold the saved state.
const SHARD_STATE: &str = "shard";
const PARTITION_STATE: &str = "partition";

/// The `dedup_mark` user type.
#[derive(Debug, Clone, SerializeValue, DeserializeValue)]
pub(super) struct MarkValue {
    epoch: i64,
    session: String,
    seq: i64,
}

/// A lease row as `LEASE_SELECT` and `LEASES_SELECT_IN` return it.
#[derive(Debug, DeserializeRow)]
pub(super) struct LeaseRow {
    lease_key: String,
    owner: Option<String>,
    epoch: Option<i64>,
    lease_until: Option<CqlTimestamp>,
    state_kind: Option<String>,
    session_id: Option<String>,
    seq: Option<i64>,
    resume_url: Option<String>,
    stream_offset: Option<i64>,
    marks: Option<BTreeMap<i64, MarkValue>>,
}

/// A decoded lease row, with the raw values the conditional writes compare against.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) lease: Lease,
    pub(super) epoch: i64,
    pub(super) lease_until: CqlTimestamp,
}

impl Stored {
    pub(super) fn decode(row: LeaseRow) -> Result<Self, Error> {
        let what = format!("lease {}", row.lease_key);
        let key: LeaseKey = row
            .lease_key
            .parse()
            .map_err(|error| invalid_data("leases", error))?;
        let epoch = row
            .epoch
            .ok_or_else(|| invalid_data(&what, "epoch is null"))?;
        let lease_until = row.lease_until.unwrap_or(CqlTimestamp(0));
        let state = match row.state_kind.as_deref() {
            None => LeaseState::Empty,
            Some(SHARD_STATE) => LeaseState::Shard(ShardSession {
                session_id: row.session_id.unwrap_or_default(),
                seq: unsigned(row.seq.unwrap_or(0), &what)?,
                resume_url: row.resume_url.unwrap_or_default(),
            }),
            Some(PARTITION_STATE) => {
                let mut marks = BTreeMap::new();
                for (shard, mark) in row.marks.unwrap_or_default() {
                    let mark_of = format!("{what} mark of shard {shard}");
                    marks.insert(
                        unsigned32(shard, &mark_of)?,
                        DedupMark {
                            epoch: unsigned(mark.epoch, &mark_of)?,
                            session: mark.session,
                            seq: unsigned(mark.seq, &mark_of)?,
                        },
                    );
                }
                LeaseState::Partition(Checkpoint {
                    offset: row
                        .stream_offset
                        .map(|offset| unsigned(offset, &what))
                        .transpose()?,
                    marks,
                })
            }
            Some(other) => {
                return Err(invalid_data(&what, format!("unknown state_kind {other:?}")));
            }
        };
        Ok(Self {
            lease: Lease {
                key,
                owner: row.owner,
                epoch: unsigned(epoch, &what)?,
                lease_until: system_time(lease_until),
                state,
            },
            epoch,
            lease_until,
        })
    }

    /// Whether someone holds the lease at `now`: free (released) and expired rows can be
    /// taken.
    pub(super) fn held_at(&self, now: CqlTimestamp) -> bool {
        self.lease.owner.is_some() && self.lease_until.0 > now.0
    }
}

/// The state columns a renew or release binds. Columns of the other role stay unset (not
/// null): nothing is written to them, and `state_kind` says they are not current.
pub(super) struct StateBinds<'a> {
    pub(super) kind: Option<&'static str>,
    pub(super) session_id: MaybeUnset<&'a str>,
    pub(super) seq: MaybeUnset<i64>,
    pub(super) resume_url: MaybeUnset<&'a str>,
    pub(super) stream_offset: MaybeUnset<Option<i64>>,
    pub(super) marks: MaybeUnset<BTreeMap<i64, MarkValue>>,
}

impl<'a> StateBinds<'a> {
    pub(super) fn of(state: &'a LeaseState, what: &str) -> Result<Self, Error> {
        let unset = Self {
            kind: None,
            session_id: MaybeUnset::Unset,
            seq: MaybeUnset::Unset,
            resume_url: MaybeUnset::Unset,
            stream_offset: MaybeUnset::Unset,
            marks: MaybeUnset::Unset,
        };
        Ok(match state {
            LeaseState::Empty => unset,
            LeaseState::Shard(session) => Self {
                kind: Some(SHARD_STATE),
                session_id: MaybeUnset::Set(&session.session_id),
                seq: MaybeUnset::Set(bigint(session.seq, what)?),
                resume_url: MaybeUnset::Set(&session.resume_url),
                ..unset
            },
            LeaseState::Partition(checkpoint) => {
                let mut marks = BTreeMap::new();
                for (&shard, mark) in &checkpoint.marks {
                    marks.insert(
                        i64::from(shard),
                        MarkValue {
                            epoch: bigint(mark.epoch, what)?,
                            session: mark.session.clone(),
                            seq: bigint(mark.seq, what)?,
                        },
                    );
                }
                Self {
                    kind: Some(PARTITION_STATE),
                    stream_offset: MaybeUnset::Set(
                        checkpoint
                            .offset
                            .map(|offset| bigint(offset, what))
                            .transpose()?,
                    ),
                    marks: MaybeUnset::Set(marks),
                    ..unset
                }
            }
        })
    }
}
