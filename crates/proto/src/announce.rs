//! Node announcements on the announce exchange.

use serde::{Deserialize, Serialize};

use crate::{WIRE_VERSION, WireMessage};

/// What kind of work a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Holds Discord shards and publishes their events.
    Gateway,
    /// Reads event streams for a consumer group.
    Consumer,
}

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Connected, not yet taking work.
    Starting,
    /// Taking work.
    Ready,
    /// Handing its work over; gets no new work.
    Draining,
    /// About to disconnect; its work is already handed over.
    Leaving,
}

impl NodeState {
    /// The state as the wire spells it: `starting`, `ready`, `draining`, `leaving`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Leaving => "leaving",
        }
    }
}

/// A node telling the mesh who it is and what it owns: sent on join, every heartbeat
/// interval, and on leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Wire version, [`WIRE_VERSION`] when written by this build.
    pub v: u16,
    /// The node's id (a UUID v7 per process start).
    pub node: String,
    /// Gateway or consumer.
    pub role: NodeRole,
    /// Consumer group, for consumer nodes; nodes only share work within a group.
    pub group: Option<String>,
    /// Life-cycle state; only `ready` nodes are assigned work.
    pub state: NodeState,
    /// Relative weight in the assignment; a node with twice the capacity gets twice the keys.
    pub capacity: u32,
    /// Lease keys the node holds right now (`shard/3`, `partition/bots/5`).
    pub owns: Vec<String>,
    /// Sender's wall clock, Unix milliseconds (diagnostics only: liveness uses arrival time).
    pub sent_at_ms: u64,
    /// The cluster as the sender's store knows it; absent from nodes built before it
    /// (they are taken to share the store). Not encoded when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreIdentity>,
}

/// Which store a node keeps the cluster in: every node on one store announces the same
/// `cluster_id`, so a node started on another store (another SQLite file, another
/// keyspace) under the same cluster name is told apart before it takes any work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    /// The cluster's id in that store (a UUID, created with the cluster's first row).
    pub cluster_id: String,
    /// When that store created it, Unix ms (for people telling two stores apart).
    pub created_at_ms: u64,
    /// Where the store is, for people: `sqlite file /var/lib/shardmesh/shardmesh.sqlite
    /// on host-a`, `scylla keyspace shardmesh at 10.0.0.5:9042`.
    pub location: String,
}

impl Announcement {
    /// An announcement at the current wire version.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: impl Into<String>,
        role: NodeRole,
        group: Option<String>,
        state: NodeState,
        capacity: u32,
        owns: Vec<String>,
        sent_at_ms: u64,
    ) -> Self {
        Self {
            v: WIRE_VERSION,
            node: node.into(),
            role,
            group,
            state,
            capacity,
            owns,
            sent_at_ms,
            store: None,
        }
    }

    /// The announcement, saying which store the node keeps the cluster in.
    #[must_use]
    pub fn with_store(mut self, store: StoreIdentity) -> Self {
        self.store = Some(store);
        self
    }
}

impl WireMessage for Announcement {
    const NAME: &'static str = "announcement";

    fn version(&self) -> u16 {
        self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::to_hex;
    use crate::{Error, decode, encode};

    fn sample() -> Announcement {
        Announcement::new(
            "n1",
            NodeRole::Consumer,
            Some("bots".into()),
            NodeState::Ready,
            1,
            vec!["partition/bots/0".into()],
            1_700_000_000_000,
        )
    }

    #[test]
    fn announcement_bytes_match_the_documented_layout() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(to_hex(&bytes), GOLDEN_ANNOUNCEMENT);
        assert_eq!(decode::<Announcement>(&bytes).unwrap(), sample());
    }

    #[test]
    fn the_store_is_encoded_only_when_known_and_old_announcements_still_decode() {
        let with_store = sample().with_store(StoreIdentity {
            cluster_id: "c1".into(),
            created_at_ms: 5,
            location: "sqlite file /s on h".into(),
        });
        let bytes = encode(&with_store).unwrap();
        assert_eq!(decode::<Announcement>(&bytes).unwrap(), with_store);
        // Golden bytes of a node that announces no store: still an announcement.
        let golden: Vec<u8> = (0..GOLDEN_ANNOUNCEMENT.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&GOLDEN_ANNOUNCEMENT[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(decode::<Announcement>(&golden).unwrap().store, None);
    }

    #[test]
    fn unknown_state_is_malformed() {
        let hex = to_hex(&encode(&sample()).unwrap());
        // "ready" -> "ready" is 0xa5 72 65 61 64 79; corrupt it to "readx".
        let corrupted = hex.replacen("a57265616479", "a57265616478", 1);
        let bytes: Vec<u8> = (0..corrupted.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&corrupted[i..i + 2], 16).unwrap())
            .collect();
        assert!(matches!(
            decode::<Announcement>(&bytes),
            Err(Error::Malformed {
                message: "announcement",
                ..
            })
        ));
    }

    const GOLDEN_ANNOUNCEMENT: &str = concat!(
        "88a17601a46e6f6465a26e31a4726f6c65a8636f6e73756d6572a567726f7570",
        "a4626f7473a57374617465a57265616479a8636170616369747901a46f776e73",
        "91b0706172746974696f6e2f626f74732f30aa73656e745f61745f6d73cf0000",
        "018bcfe56800"
    );
}
