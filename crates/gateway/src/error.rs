//! The error type of this crate.

/// Why the gateway's publishing or configuration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`GatewayConfig`](crate::GatewayConfig) value is out of range.
    #[error("invalid gateway config `gateway.{key}`: {reason}")]
    InvalidConfig {
        /// The offending key inside `[gateway]`, e.g. `publish_queue`.
        key: &'static str,
        /// What is wrong with it and what is allowed.
        reason: String,
    },
    /// The broker refused publishing in a way retrying cannot fix (a stream exists with
    /// other arguments, the publisher was shut down); shards stop publishing.
    #[error("publishing stopped: {0}")]
    Publish(#[source] shardmesh_broker::Error),
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
            Self::InvalidConfig { .. } | Self::Encode { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_key_or_the_shard() {
        let invalid = Error::InvalidConfig {
            key: "publish_queue",
            reason: "0 is outside 1..=1000000".into(),
        };
        assert_eq!(
            invalid.to_string(),
            "invalid gateway config `gateway.publish_queue`: 0 is outside 1..=1000000"
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
