//! The error type of this crate.

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a valid message of the expected kind.
    #[error("malformed {message} message: {reason}")]
    Malformed {
        /// Which message kind was expected, e.g. `event batch`.
        message: &'static str,
        /// What the decoder found wrong.
        reason: String,
    },
    /// The message was written by a newer, incompatible version of shardmesh.
    #[error("{message} message has wire version {found}, this build reads up to {supported}")]
    UnsupportedVersion {
        /// Which message kind was decoded.
        message: &'static str,
        /// The version found in the message.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// A value could not be written as MessagePack.
    #[error("cannot encode {message} message: {reason}")]
    Encode {
        /// Which message kind was encoded.
        message: &'static str,
        /// What the encoder reported.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn messages_name_the_message_kind_and_the_cause() {
        let malformed = Error::Malformed {
            message: "event batch",
            reason: "invalid type".into(),
        };
        assert_eq!(
            malformed.to_string(),
            "malformed event batch message: invalid type"
        );
        let newer = Error::UnsupportedVersion {
            message: "announcement",
            found: 9,
            supported: 1,
        };
        assert_eq!(
            newer.to_string(),
            "announcement message has wire version 9, this build reads up to 1"
        );
    }
}
