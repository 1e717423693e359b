//! The error type of this crate: why a node could not start.

/// Why a node's shared start-up failed. Waiting for an unreachable broker or store is
/// not an error: the node retries until it answers or the node is stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting cannot be used.
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] shardmesh_proto::InvalidConfig),
    /// The store refused in a way waiting cannot fix (schema mismatch, corrupt data).
    #[error("{step}: {source}")]
    Store {
        /// What the node was doing, e.g. `opening the store`.
        step: String,
        /// What the store reported.
        #[source]
        source: shardmesh_store::Error,
    },
    /// The broker refused in a way waiting cannot fix (a stream exists with other
    /// arguments, another process holds this node's queue).
    #[error("{step}: {source}")]
    Broker {
        /// What the node was doing, e.g. `declaring the event streams on amqp://…`.
        step: String,
        /// What the broker reported.
        #[source]
        source: shardmesh_broker::Error,
    },
    /// `node.http_bind` could not be served (port in use, address not local).
    #[error("serving node.http_bind {bind}: {source}")]
    Http {
        /// The configured address.
        bind: String,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// The node's store is not the one the cluster's live nodes use (two SQLite files
    /// or two keyspaces, each holding a cluster of this name): working from both would
    /// give the same shard or partition two owners, so this node, which heard of the
    /// other before it took any work, takes none.
    #[error(
        "this node's store is not the cluster's: it uses {ours} (cluster id {our_id}), \
         while live node {node} uses {theirs} (cluster id {their_id}); this node takes no \
         work: point store.* at the cluster's store, or give this cluster another \
         cluster.name"
    )]
    ForeignStore {
        /// Where this node's store is.
        ours: String,
        /// The cluster id this node's store holds.
        our_id: String,
        /// A live node of the cluster on the other store.
        node: String,
        /// Where that node's store is.
        theirs: String,
        /// The cluster id that store holds.
        their_id: String,
    },
    /// The node was stopped before it finished starting; nothing was acquired.
    #[error("stopped while starting")]
    Stopped,
}

impl Error {
    /// Whether starting again later may succeed without anyone's help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store { source, .. } => source.is_retryable(),
            Self::Broker { source, .. } => source.is_retryable(),
            Self::Http { .. } => true,
            Self::InvalidConfig(_) | Self::ForeignStore { .. } | Self::Stopped => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_the_step_and_the_cause() {
        let broker = Error::Broker {
            step: "joining the node bus".into(),
            source: shardmesh_broker::Error::Cancelled,
        };
        assert_eq!(
            broker.to_string(),
            "joining the node bus: cancelled by shutdown"
        );
        assert!(!Error::Stopped.is_retryable());
        let invalid = Error::from(shardmesh_proto::InvalidConfig::new("node.capacity", "0"));
        assert_eq!(
            invalid.to_string(),
            "invalid configuration: node.capacity: 0"
        );
    }
}
