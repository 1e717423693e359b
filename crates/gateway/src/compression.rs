//! Transport compression between Discord and the node's shards.
//!
//! twilight-gateway decides it when it is compiled, not per connection: with its
//! `zstd` feature every shard asks for `compress=zstd-stream`, with `zlib` for
//! `zlib-stream`, with neither for none. This crate's features of the same names pick
//! it (`zstd` is the default), and `gateway.compression` states what the operator
//! expects, so a node built one way and configured another refuses to start instead
//! of silently speaking something else.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `gateway.compression`: how Discord compresses what it sends to the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// One zstd stream per connection (Discord's `compress=zstd-stream`).
    #[serde(rename = "zstd-stream")]
    ZstdStream,
    /// One zlib stream per connection (Discord's `compress=zlib-stream`).
    #[serde(rename = "zlib-stream")]
    ZlibStream,
    /// Plain JSON text frames.
    #[serde(rename = "none")]
    None,
}

impl Compression {
    /// What this build's shards ask Discord for (twilight-gateway prefers zstd when
    /// both features are on).
    pub const BUILT: Self = if cfg!(feature = "zstd") {
        Self::ZstdStream
    } else if cfg!(feature = "zlib") {
        Self::ZlibStream
    } else {
        Self::None
    };

    /// The `cargo build` flags that produce a binary speaking `self`.
    pub(crate) const fn build_flags(self) -> &'static str {
        match self {
            Self::ZstdStream => "the default features",
            Self::ZlibStream => "`--no-default-features --features zlib`",
            Self::None => "`--no-default-features`",
        }
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self::BUILT
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZstdStream => "zstd-stream",
            Self::ZlibStream => "zlib-stream",
            Self::None => "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_discords() {
        for (compression, name) in [
            (Compression::ZstdStream, "zstd-stream"),
            (Compression::ZlibStream, "zlib-stream"),
            (Compression::None, "none"),
        ] {
            assert_eq!(compression.to_string(), name);
            let quoted = format!("{name:?}");
            assert_eq!(
                serde_json::from_str::<Compression>(&quoted).unwrap(),
                compression
            );
        }
    }

    #[test]
    fn the_default_build_speaks_zstd() {
        assert_eq!(Compression::BUILT, Compression::ZstdStream);
    }
}
