//! Lease keys, the state a lease carries, and lease rows.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// What a lease is for: one Discord shard, or one stream partition of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseKey {
    /// `shard/<n>`: held by the gateway node that runs shard `n`.
    Shard(u32),
    /// `partition/<group>/<p>`: held by the consumer node of `group` reading partition `p`.
    Partition {
        /// Consumer group name.
        group: String,
        /// Partition (stream index).
        partition: u32,
    },
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shard(shard) => write!(f, "shard/{shard}"),
            Self::Partition { group, partition } => write!(f, "partition/{group}/{partition}"),
        }
    }
}

/// A string that is not `shard/<n>` or `partition/<group>/<p>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lease key {0:?}: expected shard/<n> or partition/<group>/<p>")]
pub struct InvalidLeaseKey(pub String);

impl FromStr for LeaseKey {
    type Err = InvalidLeaseKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidLeaseKey(text.to_owned());
        match text.split('/').collect::<Vec<_>>().as_slice() {
            ["shard", n] => n.parse().map(Self::Shard).map_err(|_| invalid()),
            ["partition", group, p] if !group.is_empty() => Ok(Self::Partition {
                group: (*group).to_owned(),
                partition: p.parse().map_err(|_| invalid())?,
            }),
            _ => Err(invalid()),
        }
    }
}

/// Where a shard's Discord session stands, saved so the next owner can RESUME it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardSession {
    /// Discord session id; empty when the shard never identified.
    pub session_id: String,
    /// Last sequence number the broker confirmed; the next owner resumes from here.
    pub seq: u64,
    /// `resume_gateway_url` from READY.
    pub resume_url: String,
}

/// The newest event a consumer group has handled from one shard.
///
/// Ordering decides duplicates: a lower epoch is stale, the same session with
/// `seq <= mark.seq` is a repeat, a different session starts over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupMark {
    /// Lease epoch of the gateway owner that published the event.
    pub epoch: u64,
    /// Discord session id.
    pub session: String,
    /// Sequence number within the session.
    pub seq: u64,
}

/// How far a consumer group has read a partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Stream offset of the last handled message; reading resumes at `offset + 1`.
    /// `None` before anything was handled.
    pub offset: Option<u64>,
    /// High-water mark per shard.
    pub marks: BTreeMap<u32, DedupMark>,
}

/// The role state a lease carries, written on renew and release.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LeaseState {
    /// Nothing saved yet.
    #[default]
    Empty,
    /// A gateway shard's session.
    Shard(ShardSession),
    /// A consumer partition's checkpoint.
    Partition(Checkpoint),
}

/// One lease row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What the lease is for.
    pub key: LeaseKey,
    /// Node id of the holder; `None` once released.
    pub owner: Option<String>,
    /// Fencing epoch: raised by every acquire, never lowered, never expired.
    pub epoch: u64,
    /// When the lease lapses unless renewed (store clock).
    pub lease_until: SystemTime,
    /// The role state saved by the last renew or release.
    pub state: LeaseState,
}

/// Proof of holding a lease, returned by `acquire`; renew and release are
/// conditional on it (owner and epoch must still match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// What the lease is for.
    pub key: LeaseKey,
    /// This node's id.
    pub owner: String,
    /// The epoch this holder acquired.
    pub epoch: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_text() {
        for key in [
            LeaseKey::Shard(0),
            LeaseKey::Shard(4_095),
            LeaseKey::Partition {
                group: "bots".into(),
                partition: 15,
            },
        ] {
            assert_eq!(key.to_string().parse::<LeaseKey>().unwrap(), key);
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        for text in [
            "",
            "shard",
            "shard/x",
            "shard/1/2",
            "partition//1",
            "partition/g",
            "node/1",
        ] {
            assert!(text.parse::<LeaseKey>().is_err(), "{text}");
        }
    }
}
