//! The error type of this crate.

/// Why a consumer could not be built, or an event not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`ConsumerConfig`](crate::ConsumerConfig) value is out of range.
    #[error("invalid consumer config `consumer.{key}`: {reason}")]
    InvalidConfig {
        /// The offending key inside `[consumer]`, e.g. `handler_attempts`.
        key: &'static str,
        /// What is wrong with it and what is allowed.
        reason: String,
    },
    /// The [`BrokerConfig`](shardmesh_broker::BrokerConfig) given is invalid.
    #[error("consumer cannot use the broker config: {0}")]
    Broker(#[source] shardmesh_broker::Error),
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
            Self::Broker(error) => error.is_retryable(),
            Self::InvalidConfig { .. } | Self::Event { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_key_or_the_event_type() {
        let invalid = Error::InvalidConfig {
            key: "handler_attempts",
            reason: "0 is outside 1..=100".into(),
        };
        assert_eq!(
            invalid.to_string(),
            "invalid consumer config `consumer.handler_attempts`: 0 is outside 1..=100"
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
