//! The error type of this crate.

use std::fmt;

/// Why a store operation failed: what failed, where, and why.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct Error {
    kind: ErrorKind,
    detail: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The kind of a store [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The store could not be reached or opened (network, file permissions, wrong URI).
    Unreachable,
    /// The store answered with an error for one operation; the next attempt may succeed.
    Backend,
    /// A conditional write's outcome is unknown and reading it back failed too.
    OutcomeUnknown,
    /// The stored schema is not the one this build needs (missing table or column,
    /// newer schema version).
    SchemaMismatch,
    /// The SQLite file is damaged or is not a shardmesh store.
    Corrupt,
    /// The cluster was created with a different spec than this node was given.
    SpecConflict,
    /// A stored value cannot be decoded.
    InvalidData,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unreachable => "store unreachable",
            Self::Backend => "store operation failed",
            Self::OutcomeUnknown => "store write outcome unknown",
            Self::SchemaMismatch => "store schema mismatch",
            Self::Corrupt => "store file corrupt",
            Self::SpecConflict => "cluster spec conflict",
            Self::InvalidData => "invalid stored data",
        })
    }
}

impl ErrorKind {
    /// Whether trying the same operation again may succeed without anyone's help.
    pub fn is_retryable(self) -> bool {
        match self {
            Self::Unreachable | Self::Backend | Self::OutcomeUnknown => true,
            Self::SchemaMismatch | Self::Corrupt | Self::SpecConflict | Self::InvalidData => false,
        }
    }
}

impl Error {
    /// An error of `kind`; `detail` says what and where, lowercase, no trailing period.
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether trying again may succeed; see [`ErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_what_and_where() {
        let error = Error::new(
            ErrorKind::Unreachable,
            "sqlite file /var/lib/shardmesh/store.sqlite: permission denied",
        );
        assert_eq!(
            error.to_string(),
            "store unreachable: sqlite file /var/lib/shardmesh/store.sqlite: permission denied"
        );
        let conflict = Error::new(
            ErrorKind::SpecConflict,
            "cluster \"prod\" has shard_count 32, this node was given 64",
        );
        assert_eq!(
            conflict.to_string(),
            "cluster spec conflict: cluster \"prod\" has shard_count 32, this node was given 64"
        );
    }

    #[test]
    fn only_transient_kinds_are_retryable() {
        assert!(ErrorKind::Unreachable.is_retryable());
        assert!(ErrorKind::OutcomeUnknown.is_retryable());
        assert!(!ErrorKind::SpecConflict.is_retryable());
        assert!(!ErrorKind::Corrupt.is_retryable());
    }
}
