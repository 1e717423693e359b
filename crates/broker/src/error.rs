//! The error type of this crate.

use std::time::Duration;

/// Why a broker operation failed.
///
/// [`Error::is_retryable`] says whether trying again later can succeed; the crate's own
/// reconnect loops already retry the retryable ones where that is safe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`BrokerConfig`](crate::BrokerConfig) value, a name or a partition number is
    /// out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] shardmesh_proto::InvalidConfig),
    /// The broker could not be reached (refused, unresolvable, handshake failed or timed
    /// out).
    #[error("cannot connect to the broker: {reason}")]
    Unreachable {
        /// What the connection attempt reported; never contains the password.
        reason: String,
    },
    /// An established connection or channel went away; work in flight on it is lost or
    /// handed back.
    #[error("broker connection lost during {operation}: {reason}")]
    ConnectionLost {
        /// The AMQP operation that noticed, e.g. `basic.publish`.
        operation: &'static str,
        /// What lapin reported.
        reason: String,
    },
    /// The broker refused an operation (access refused, precondition failed, ...).
    #[error("broker refused {operation} on `{name}`: {reason}")]
    Refused {
        /// The AMQP operation, e.g. `queue.bind`.
        operation: &'static str,
        /// The queue or exchange it was about.
        name: String,
        /// The broker's reply text.
        reason: String,
    },
    /// A queue already exists with arguments other than the ones this node declares;
    /// it is not used.
    #[error(
        "queue `{queue}` exists with a different `{argument}` than configured (broker says: {reason})"
    )]
    InequivalentArgument {
        /// The queue that was declared.
        queue: String,
        /// The argument that differs, e.g. `x-max-age`.
        argument: String,
        /// The broker's full reply text.
        reason: String,
    },
    /// A queue or exchange does not exist (for instance a passive declare of a node queue
    /// whose node is gone).
    #[error("`{name}` does not exist on the broker")]
    NotFound {
        /// The queue or exchange name.
        name: String,
    },
    /// A stream message could not be decoded; reading goes on after it.
    #[error("cannot decode the message at offset {offset}: {source}")]
    Decode {
        /// The message's stream offset, so it can be skipped or dead-lettered.
        offset: u64,
        /// What the decoder reported.
        source: shardmesh_proto::Error,
    },
    /// A message could not be encoded.
    #[error("cannot encode a message: {0}")]
    Encode(shardmesh_proto::Error),
    /// No answer arrived before the deadline.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What was waited for, e.g. `control request to node.n1`.
        operation: String,
        /// How long it was waited for.
        after: Duration,
    },
    /// The shutdown token was cancelled while waiting.
    #[error("cancelled by shutdown")]
    Cancelled,
    /// The component was closed and cannot be used any more.
    #[error("the {0} is closed")]
    Closed(&'static str),
}

impl Error {
    /// Whether the same operation can succeed when tried again (after a reconnect).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::ConnectionLost { .. } | Self::Timeout { .. } => true,
            Self::InvalidConfig(_)
            | Self::Refused { .. }
            | Self::InequivalentArgument { .. }
            | Self::NotFound { .. }
            | Self::Decode { .. }
            | Self::Encode(_)
            | Self::Cancelled
            | Self::Closed(_) => false,
        }
    }

    /// Classifies a lapin error from `operation` on the queue or exchange `name`.
    pub(crate) fn amqp(operation: &'static str, name: &str, error: &lapin::Error) -> Self {
        use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
        if let lapin::ErrorKind::ProtocolError(amqp) = error.kind() {
            let reason = amqp.get_message().to_string();
            match amqp.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
                    if reason.contains("inequivalent arg") =>
                {
                    return Self::InequivalentArgument {
                        queue: name.to_owned(),
                        argument: quoted_after(&reason, "inequivalent arg")
                            .unwrap_or("unknown")
                            .to_owned(),
                        reason,
                    };
                }
                AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) if !reason.contains("home node") => {
                    return Self::NotFound {
                        name: name.to_owned(),
                    };
                }
                AMQPErrorKind::Soft(
                    AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::RESOURCELOCKED,
                ) => {
                    return Self::Refused {
                        operation,
                        name: name.to_owned(),
                        reason,
                    };
                }
                _ => {}
            }
        }
        Self::ConnectionLost {
            operation,
            reason: error.to_string(),
        }
    }
}

/// The first `'...'`-quoted word after `marker` in a broker reply text.
fn quoted_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let start = rest.find('\'')? + 1;
    let end = start + rest[start..].find('\'')?;
    Some(&rest[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_culprit() {
        let cases = [
            (
                Error::InvalidConfig(shardmesh_proto::InvalidConfig::new(
                    "broker.confirm_window",
                    "must be 1..=65535",
                )),
                "invalid configuration: broker.confirm_window: must be 1..=65535",
            ),
            (
                Error::InequivalentArgument {
                    queue: "shardmesh.c.events.0".into(),
                    argument: "x-max-age".into(),
                    reason: "r".into(),
                },
                "queue `shardmesh.c.events.0` exists with a different `x-max-age` than configured (broker says: r)",
            ),
            (
                Error::NotFound { name: "q".into() },
                "`q` does not exist on the broker",
            ),
            (Error::Cancelled, "cancelled by shutdown"),
            (Error::Closed("publisher"), "the publisher is closed"),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn inequivalent_argument_is_parsed_from_the_reply_text() {
        let text = "PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue 'q' in vhost '/': \
                    received the value '1h' of type 'longstr' but current is '24h'";
        assert_eq!(quoted_after(text, "inequivalent arg"), Some("x-max-age"));
        assert_eq!(quoted_after("nothing here", "inequivalent arg"), None);
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        assert!(
            Error::ConnectionLost {
                operation: "basic.publish",
                reason: String::new()
            }
            .is_retryable()
        );
        assert!(!Error::Cancelled.is_retryable());
        assert!(!Error::NotFound { name: "q".into() }.is_retryable());
    }
}
