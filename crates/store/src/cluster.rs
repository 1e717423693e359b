//! The cluster spec every node must agree on.

use crate::{Error, ErrorKind};

/// Numbers fixed when a cluster is created; a node with different ones refuses to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Discord shard count.
    pub shard_count: u32,
    /// Event stream partitions: the most consumer nodes one group can use in parallel.
    pub partitions: u32,
    /// Discord's `max_concurrency`: identify buckets are `shard % max_concurrency`.
    pub max_concurrency: u32,
}

/// The cluster's identity in one store: created by the first node that opens the
/// cluster there, the same for every node on that store. Nodes announce it, so a node
/// started on another store under the same cluster name is told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    /// A UUID (v7 text).
    pub id: String,
    /// When this store created it.
    pub created_at: std::time::SystemTime,
}

/// The error a node with a different spec gets: the cluster and, for each differing
/// field, both values.
pub(crate) fn spec_conflict(cluster: &str, recorded: ClusterSpec, proposed: ClusterSpec) -> Error {
    let fields = [
        ("shard_count", recorded.shard_count, proposed.shard_count),
        ("partitions", recorded.partitions, proposed.partitions),
        (
            "max_concurrency",
            recorded.max_concurrency,
            proposed.max_concurrency,
        ),
    ];
    let differences: Vec<String> = fields
        .iter()
        .filter(|(_, recorded, proposed)| recorded != proposed)
        .map(|(name, recorded, proposed)| {
            format!("{name} {recorded}, this node was given {proposed}")
        })
        .collect();
    Error::new(
        ErrorKind::SpecConflict,
        format!("cluster {cluster:?} has {}", differences.join("; ")),
    )
}
