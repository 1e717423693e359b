//! The one error type of the simulator.

use std::error::Error as StdError;
use std::fmt;

/// Why a simulator could not be configured or started.
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
}

impl Error {
    pub(crate) fn invalid_config(key: &'static str, reason: &'static str) -> Self {
        Self {
            kind: ErrorKind::InvalidConfig { key, reason },
            source: None,
        }
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
            ErrorKind::InvalidConfig { .. } => false,
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
    }
}
