//! The one error type of the simulator.

use std::error::Error as StdError;
use std::fmt;

/// Why a simulator could not be configured or started, or refused a request made
/// through its Rust API (such as [`Simulator::post_as_user`](crate::Simulator::post_as_user)).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// What kind of [`Error`] happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A [`SimConfig`](crate::SimConfig) field is out of its documented range.
    InvalidConfig {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The listening socket could not be bound.
    Bind,
    /// The HTTP server stopped with an I/O error.
    Serve,
    /// No channel of the simulated world has this id (Discord's 10003).
    UnknownChannel {
        /// The id asked for.
        channel: u64,
    },
    /// A message had neither content nor embeds (Discord's 50006).
    EmptyMessage,
    /// A field of a post breaks one of Discord's rules (Discord's 50035).
    InvalidPost {
        /// The offending field, as named in the JSON body (`author.username`).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) const fn invalid_config(key: &'static str, reason: &'static str) -> Self {
        Self::of(ErrorKind::InvalidConfig { key, reason })
    }

    const fn of(kind: ErrorKind) -> Self {
        Self { kind, source: None }
    }

    pub(crate) const fn unknown_channel(channel: u64) -> Self {
        Self::of(ErrorKind::UnknownChannel { channel })
    }

    pub(crate) const fn empty_message() -> Self {
        Self::of(ErrorKind::EmptyMessage)
    }

    pub(crate) const fn invalid_post(field: &'static str, reason: &'static str) -> Self {
        Self::of(ErrorKind::InvalidPost { field, reason })
    }

    pub(crate) fn io(kind: ErrorKind, source: std::io::Error) -> Self {
        Self {
            kind,
            source: Some(Box::new(source)),
        }
    }

    /// What went wrong.
    pub const fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Whether trying again unchanged could succeed.
    pub const fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::InvalidConfig { .. }
            | ErrorKind::UnknownChannel { .. }
            | ErrorKind::EmptyMessage
            | ErrorKind::InvalidPost { .. } => false,
            ErrorKind::Bind | ErrorKind::Serve => true,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::InvalidConfig { key, reason } => {
                write!(f, "invalid simulator config key `{key}`: {reason}")
            }
            ErrorKind::Bind => f.write_str("could not bind the simulator's listener"),
            ErrorKind::Serve => f.write_str("the simulator's server failed"),
            ErrorKind::UnknownChannel { channel } => write!(f, "unknown channel {channel}"),
            ErrorKind::EmptyMessage => f.write_str("cannot send an empty message"),
            ErrorKind::InvalidPost { field, reason } => {
                write!(f, "invalid post field `{field}`: {reason}")
            }
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_ref()
            .map(|source| &**source as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_strings() {
        let config = Error::invalid_config("shards", "must be 1..=65535");
        assert_eq!(
            config.to_string(),
            "invalid simulator config key `shards`: must be 1..=65535"
        );
        assert!(!config.is_retryable());
        let bind = Error::io(ErrorKind::Bind, std::io::Error::other("in use"));
        assert_eq!(bind.to_string(), "could not bind the simulator's listener");
        assert_eq!(bind.source().unwrap().to_string(), "in use");
        assert!(bind.is_retryable());
        let channel = Error::unknown_channel(42);
        assert_eq!(channel.to_string(), "unknown channel 42");
        assert!(!channel.is_retryable());
        assert_eq!(
            Error::empty_message().to_string(),
            "cannot send an empty message"
        );
        assert_eq!(
            Error::invalid_post("author.username", "must be 1..=80 characters").to_string(),
            "invalid post field `author.username`: must be 1..=80 characters"
        );
    }
}
