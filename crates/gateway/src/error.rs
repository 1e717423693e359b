//! The error type of this crate.

/// Why a gateway node could not start, or its publishing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`GatewayConfig`](crate::GatewayConfig) value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] shardmesh_proto::InvalidConfig),
    /// The broker refused publishing in a way retrying cannot fix (a stream exists with
    /// other arguments, the publisher was shut down); shards stop publishing.
    #[error("publishing stopped: {0}")]
    Publish(#[source] shardmesh_broker::Error),
    /// The node's shared start-up failed (store, broker, HTTP face).
    #[error(transparent)]
    Node(#[from] shardmesh_mesh::Error),
    /// `GET /gateway/bot` failed while the shard count had to come from Discord, or
    /// Discord's answer cannot be used.
    #[error("GET {url}: {reason}")]
    Discord {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The task owning the publisher panicked (a bug); the node drained first.
    #[error("the publish loop panicked: {0}")]
    PublishPanicked(String),
    /// An event batch could not be encoded.
    #[error("cannot encode an event batch of shard {shard}: {source}")]
    Encode {
        /// The shard whose batch it was.
        shard: u32,
        /// What the encoder reported.
        #[source]
        source: shardmesh_proto::Error,
    },
}

impl Error {
    /// Whether running the same thing again later may succeed without anyone's help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Publish(error) => error.is_retryable(),
            Self::Node(error) => error.is_retryable(),
            Self::Discord { .. } => true,
            Self::InvalidConfig(_) | Self::Encode { .. } | Self::PublishPanicked(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_key_or_the_shard() {
        let invalid = Error::InvalidConfig(shardmesh_proto::InvalidConfig::new(
            "gateway.publish_queue",
            "0 is outside 1..=1000000",
        ));
        assert_eq!(
            invalid.to_string(),
            "invalid configuration: gateway.publish_queue: 0 is outside 1..=1000000"
        );
        let stopped = Error::Publish(shardmesh_broker::Error::Cancelled);
        assert_eq!(
            stopped.to_string(),
            "publishing stopped: cancelled by shutdown"
        );
        assert!(!stopped.is_retryable());
        assert!(!invalid.is_retryable());
    }
}
