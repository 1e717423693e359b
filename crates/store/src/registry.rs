//! Rows of the node registry and the action log.

use std::time::SystemTime;

use shardmesh_proto::{NodeRole, NodeState};

/// A node's row in the registry; it expires unless the node writes it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node id (UUID v7 text).
    pub node: String,
    /// Gateway or consumer.
    pub role: NodeRole,
    /// Consumer group, for consumer nodes.
    pub group: Option<String>,
    /// Life-cycle state when last written.
    pub state: NodeState,
    /// `host:port` of the node's health and metrics endpoint, if it serves one.
    pub address: Option<String>,
    /// When the process started.
    pub started_at: SystemTime,
    /// When the row was last written.
    pub seen_at: SystemTime,
}

/// One entry of the append-only action log: who did what, with what, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Node id, or `ctl` for the command-line tool.
    pub actor: String,
    /// What was done, e.g. `handover`, `session_lost`, `identify_refused`.
    pub action: String,
    /// The arguments in words, e.g. `shard/3 to 0190..`.
    pub args: String,
    /// The outcome in words, e.g. `ok` or an error message.
    pub result: String,
    /// When it happened.
    pub at: SystemTime,
}
