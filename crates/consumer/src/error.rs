//! The error type of this crate.

/// Why a consumer node could not start, or an event not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`ConsumerConfig`](crate::ConsumerConfig) value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] shardmesh_proto::InvalidConfig),
    /// The node's shared start-up failed (store, broker, HTTP face).
    #[error(transparent)]
    Node(#[from] shardmesh_mesh::Error),
    /// `consumer.commands_bind` could not be served (port in use, address not local).
    #[error("serving consumer.commands_bind {bind}: {source}")]
    CommandApi {
        /// The configured address.
        bind: String,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A delivery's payload is not a gateway dispatch twilight-model can parse (an
    /// event type newer than twilight-model, or a corrupt payload). The raw payload
    /// is still there: [`Delivery::payload`](crate::Delivery::payload).
    #[error("cannot decode {event_type} dispatch: {reason}")]
    Event {
        /// The dispatch name from the envelope.
        event_type: String,
        /// What the parser reported.
        reason: String,
    },
}

impl Error {
    /// Whether doing the same thing again later may succeed without anyone's help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Node(error) => error.is_retryable(),
            // As the probes' port: another process may free it.
            Self::CommandApi { .. } => true,
            Self::InvalidConfig(_) | Self::Event { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_key_or_the_event_type() {
        let invalid = Error::InvalidConfig(shardmesh_proto::InvalidConfig::new(
            "consumer.handler_attempts",
            "0 is outside 1..=100",
        ));
        assert_eq!(
            invalid.to_string(),
            "invalid configuration: consumer.handler_attempts: 0 is outside 1..=100"
        );
        let event = Error::Event {
            event_type: "MESSAGE_CREATE".into(),
            reason: "missing field `id`".into(),
        };
        assert_eq!(
            event.to_string(),
            "cannot decode MESSAGE_CREATE dispatch: missing field `id`"
        );
        assert!(!invalid.is_retryable() && !event.is_retryable());
    }
}
