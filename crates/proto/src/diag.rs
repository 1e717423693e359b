//! A node's answer to a diagnostics request: what it runs and how each piece of work
//! is doing, as the node itself sees it (the store only knows who holds which lease).

use serde::{Deserialize, Serialize};

use crate::{NodeRole, NodeState};

/// One node's state, for `shardmesh ctl diag` and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDiag {
    /// Gateway or consumer.
    pub role: NodeRole,
    /// Consumer group, for consumer nodes.
    pub group: Option<String>,
    /// The node's life-cycle state.
    pub state: NodeState,
    /// Milliseconds since the node process started its mesh loop.
    pub uptime_ms: u64,
    /// Lease keys it holds.
    pub owns: Vec<String>,
    /// The role's work, piece by piece.
    pub work: WorkDiag,
}

/// What a role reports about its work; a role fills in its own part and leaves the
/// other empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkDiag {
    /// A gateway node's shards, by shard id.
    pub shards: Vec<ShardDiag>,
    /// A gateway node's events handed to the publisher and not yet confirmed by the
    /// broker.
    pub publisher_backlog: u64,
    /// A consumer node's partitions, by partition.
    pub partitions: Vec<PartitionDiag>,
}

/// One shard on a gateway node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDiag {
    /// The shard id.
    pub shard: u32,
    /// `connecting`, `resuming`, `active`, `draining`, `fatally_closed` or `stopped`.
    pub phase: String,
    /// The Discord session; empty before the first READY.
    pub session_id: String,
    /// The last seq the broker confirmed in this session.
    pub seq: u64,
    /// Average heartbeat round trip to Discord, ms; nil before the first ack.
    pub latency_ms: Option<u64>,
    /// Unix ms of the last dispatch received; nil before the first one on this node.
    pub last_event_at_ms: Option<u64>,
    /// Unix ms of the READY or RESUMED that made the connection active on this node.
    pub active_since_ms: Option<u64>,
}

/// One partition on a consumer node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDiag {
    /// The partition (the stream's number).
    pub partition: u32,
    /// The last stream offset the handler finished (what the next checkpoint saves);
    /// nil before the first.
    pub handled_offset: Option<u64>,
}
