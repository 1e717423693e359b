//! The cluster spec every node must agree on.

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
