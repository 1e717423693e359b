//! Lease rows: acquire, renew, release and reads, with the role state in readable columns.
//!
//! Every write is one conditional statement, which SQLite runs atomically under the
//! file's write lock, so processes sharing the file cannot interleave inside it.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, named_params};
use serde::{Deserialize, Serialize};

use super::convert::{Failure, duration_ms, from_ms, from_sql_int, now_ms, to_sql_int};
use crate::{
    Checkpoint, DedupMark, Error, ErrorKind, Lease, LeaseGrant, LeaseKey, LeaseState, ShardSession,
};

/// The columns [`read_lease`] expects, in order.
const COLUMNS: &str =
    "key, owner, epoch, lease_until_ms, session_id, seq, resume_url, stream_offset, marks";

/// Takes `key` when it was never held, was released, or lapsed before now.
pub(super) fn acquire(
    conn: &Connection,
    cluster: &str,
    key: &LeaseKey,
    owner: &str,
    duration: Duration,
) -> Result<Option<Lease>, Failure> {
    let now = now_ms();
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO leases (cluster, key, owner, epoch, lease_until_ms)
         VALUES (:cluster, :key, :owner, 1, :until)
         ON CONFLICT (cluster, key) DO UPDATE
             SET owner = excluded.owner,
                 epoch = leases.epoch + 1,
                 lease_until_ms = excluded.lease_until_ms
             WHERE leases.owner IS NULL OR leases.lease_until_ms < :now
         RETURNING {COLUMNS}"
    ))?;
    let lease = stmt
        .query_row(
            named_params! {
                ":cluster": cluster,
                ":key": key.to_string(),
                ":owner": owner,
                ":until": now.saturating_add(duration_ms(duration)),
                ":now": now,
            },
            read_lease,
        )
        .optional()?;
    Ok(lease)
}

/// Extends the lease and saves `state` if `grant` still matches owner and epoch.
pub(super) fn renew(
    conn: &Connection,
    cluster: &str,
    grant: &LeaseGrant,
    duration: Duration,
    state: &LeaseState,
) -> Result<bool, Failure> {
    let until = now_ms().saturating_add(duration_ms(duration));
    write_fenced(
        conn,
        cluster,
        grant,
        Some(grant.owner.as_str()),
        until,
        state,
    )
}

/// Saves the final `state` and frees the lease if `grant` still matches; the epoch stays.
pub(super) fn release(
    conn: &Connection,
    cluster: &str,
    grant: &LeaseGrant,
    state: &LeaseState,
) -> Result<bool, Failure> {
    write_fenced(conn, cluster, grant, None, now_ms(), state)
}

/// The conditional write shared by renew and release: changes nothing unless the row
/// still has the grant's owner and epoch.
fn write_fenced(
    conn: &Connection,
    cluster: &str,
    grant: &LeaseGrant,
    new_owner: Option<&str>,
    until: i64,
    state: &LeaseState,
) -> Result<bool, Failure> {
    let columns = StateColumns::encode(state)?;
    let mut stmt = conn.prepare_cached(
        "UPDATE leases
         SET owner = :new_owner, lease_until_ms = :until,
             session_id = :session_id, seq = :seq, resume_url = :resume_url,
             stream_offset = :offset, marks = :marks
         WHERE cluster = :cluster AND key = :key AND owner = :owner AND epoch = :epoch",
    )?;
    let changed = stmt.execute(named_params! {
        ":new_owner": new_owner,
        ":until": until,
        ":session_id": columns.session_id,
        ":seq": columns.seq,
        ":resume_url": columns.resume_url,
        ":offset": columns.offset,
        ":marks": columns.marks,
        ":cluster": cluster,
        ":key": grant.key.to_string(),
        ":owner": grant.owner,
        ":epoch": to_sql_int("epoch", grant.epoch)?,
    })?;
    Ok(changed == 1)
}

/// One lease row.
pub(super) fn lease(
    conn: &Connection,
    cluster: &str,
    key: &LeaseKey,
) -> Result<Option<Lease>, Failure> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM leases WHERE cluster = ?1 AND key = ?2"
    ))?;
    Ok(stmt
        .query_row((cluster, key.to_string()), read_lease)
        .optional()?)
}

/// Every lease row of the cluster, in [`LeaseKey`] order (numeric, not textual).
pub(super) fn leases(conn: &Connection, cluster: &str) -> Result<Vec<Lease>, Failure> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM leases WHERE cluster = ?1"))?;
    let mut leases = stmt
        .query_map([cluster], read_lease)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    leases.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(leases)
}

/// Decodes a row selected with [`COLUMNS`].
fn read_lease(row: &Row<'_>) -> rusqlite::Result<Lease> {
    let key_text: String = row.get(0)?;
    let key = key_text
        .parse::<LeaseKey>()
        .map_err(|error| conversion(0, error))?;
    let columns = StateColumns {
        session_id: row.get(4)?,
        seq: row.get(5)?,
        resume_url: row.get(6)?,
        offset: row.get(7)?,
        marks: row.get(8)?,
    };
    Ok(Lease {
        key,
        owner: row.get(1)?,
        epoch: from_sql_int(row.get(2)?, 2)?,
        lease_until: from_ms(row.get(3)?),
        state: columns.decode()?,
    })
}

fn conversion(
    column: usize,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(error))
}

/// The role state as the lease table's columns: the shard columns are set for a shard
/// session, `marks` (at least `{}`) for a checkpoint, nothing for [`LeaseState::Empty`].
#[derive(Debug, Default, PartialEq, Eq)]
struct StateColumns {
    session_id: Option<String>,
    seq: Option<i64>,
    resume_url: Option<String>,
    offset: Option<i64>,
    marks: Option<String>,
}

/// One dedup mark as JSON, so `sqlite3` shows `{"3":{"epoch":2,"session":"..","seq":41}}`.
#[derive(Serialize, Deserialize)]
struct MarkJson {
    epoch: u64,
    session: String,
    seq: u64,
}

impl StateColumns {
    fn encode(state: &LeaseState) -> Result<Self, Error> {
        Ok(match state {
            LeaseState::Empty => Self::default(),
            LeaseState::Shard(session) => Self {
                session_id: Some(session.session_id.clone()),
                seq: Some(to_sql_int("seq", session.seq)?),
                resume_url: Some(session.resume_url.clone()),
                ..Self::default()
            },
            LeaseState::Partition(checkpoint) => {
                let marks: BTreeMap<u32, MarkJson> = checkpoint
                    .marks
                    .iter()
                    .map(|(shard, mark)| {
                        let json = MarkJson {
                            epoch: mark.epoch,
                            session: mark.session.clone(),
                            seq: mark.seq,
                        };
                        (*shard, json)
                    })
                    .collect();
                let marks = serde_json::to_string(&marks).map_err(|error| {
                    Error::new(
                        ErrorKind::InvalidData,
                        format!("cannot encode dedup marks: {error}"),
                    )
                })?;
                Self {
                    offset: checkpoint
                        .offset
                        .map(|offset| to_sql_int("offset", offset))
                        .transpose()?,
                    marks: Some(marks),
                    ..Self::default()
                }
            }
        })
    }

    fn decode(self) -> rusqlite::Result<LeaseState> {
        if let Some(session_id) = self.session_id {
            return Ok(LeaseState::Shard(ShardSession {
                session_id,
                seq: from_sql_int(self.seq.unwrap_or(0), 5)?,
                resume_url: self.resume_url.unwrap_or_default(),
            }));
        }
        let Some(marks) = self.marks else {
            return Ok(LeaseState::Empty);
        };
        let marks: BTreeMap<u32, MarkJson> =
            serde_json::from_str(&marks).map_err(|error| conversion(8, error))?;
        Ok(LeaseState::Partition(Checkpoint {
            offset: self
                .offset
                .map(|offset| from_sql_int(offset, 7))
                .transpose()?,
            marks: marks
                .into_iter()
                .map(|(shard, mark)| {
                    let mark = DedupMark {
                        epoch: mark.epoch,
                        session: mark.session,
                        seq: mark.seq,
                    };
                    (shard, mark)
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(state: &LeaseState) -> LeaseState {
        StateColumns::encode(state).unwrap().decode().unwrap()
    }

    #[test]
    fn every_state_survives_its_columns() {
        let checkpoint = Checkpoint {
            offset: Some(41),
            marks: BTreeMap::from([(
                3,
                DedupMark {
                    epoch: 2,
                    session: "abc".into(),
                    seq: 9,
                },
            )]),
        };
        for state in [
            LeaseState::Empty,
            LeaseState::Shard(ShardSession::default()),
            LeaseState::Shard(ShardSession {
                session_id: "s".into(),
                seq: 12,
                resume_url: "wss://resume".into(),
            }),
            LeaseState::Partition(Checkpoint::default()),
            LeaseState::Partition(checkpoint),
        ] {
            assert_eq!(round_trip(&state), state);
        }
    }

    #[test]
    fn marks_are_readable_json() {
        let state = LeaseState::Partition(Checkpoint {
            offset: None,
            marks: BTreeMap::from([(
                3,
                DedupMark {
                    epoch: 2,
                    session: "abc".into(),
                    seq: 41,
                },
            )]),
        });
        let columns = StateColumns::encode(&state).unwrap();
        assert_eq!(
            columns.marks.as_deref(),
            Some(r#"{"3":{"epoch":2,"session":"abc","seq":41}}"#)
        );
        assert_eq!(columns.offset, None);
    }
}
