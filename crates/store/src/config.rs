//! Store configuration: which backend and how to reach it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shardmesh_proto::{InvalidConfig, check_range};

/// Which store backend a node uses and how to reach it (`[store]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (default: one host, nothing to run) or `scylla` (many hosts).
    pub backend: Backend,
    /// Settings of the SQLite backend.
    pub sqlite: SqliteConfig,
    /// Settings of the ScyllaDB backend.
    pub scylla: ScyllaConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            sqlite: SqliteConfig::default(),
            scylla: ScyllaConfig::default(),
        }
    }
}

/// The store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// [`SqliteStore`](crate::SqliteStore).
    Sqlite,
    /// [`ScyllaStore`](crate::ScyllaStore).
    Scylla,
}

/// `[store.sqlite]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// Database file, shared by every node on the host. Default
    /// [`DEFAULT_SQLITE_PATH`]: under the user's home, so every process of the user
    /// finds the same file whatever directory it starts in. `~/` is the home directory
    /// (`$HOME`); a relative path is taken from the working directory and made absolute
    /// when the store opens.
    pub path: PathBuf,
    /// How long a write waits for another process's lock, in ms. Default 5000; 1..=60000.
    pub busy_timeout_ms: u64,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_SQLITE_PATH),
            busy_timeout_ms: 5_000,
        }
    }
}

/// The default `store.sqlite.path`.
pub const DEFAULT_SQLITE_PATH: &str = "~/.local/state/shardmesh/shardmesh.sqlite";

impl SqliteConfig {
    /// The file [`SqliteConfig::path`] names, absolute: `~/` expanded to `$HOME`, a
    /// relative path joined to the working directory.
    ///
    /// # Errors
    ///
    /// A message naming the setting when `~/` is used and `HOME` is not set, or the
    /// working directory cannot be read.
    pub fn resolved_path(&self) -> Result<PathBuf, String> {
        let path = match self.path.strip_prefix("~") {
            Ok(under_home) => {
                let home = std::env::var_os("HOME").filter(|home| !home.is_empty());
                let home = home.ok_or_else(|| {
                    format!(
                        "store.sqlite.path {} starts with ~ but HOME is not set: give an \
                         absolute path",
                        self.path.display()
                    )
                })?;
                PathBuf::from(home).join(under_home)
            }
            Err(_) => self.path.clone(),
        };
        std::path::absolute(&path).map_err(|error| {
            format!(
                "store.sqlite.path {}: cannot make it absolute: {error}",
                self.path.display()
            )
        })
    }
}

/// `[store.scylla]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`. Default `["127.0.0.1:9042"]`; at least one.
    pub nodes: Vec<String>,
    /// Keyspace holding the tables of `schema.cql`. Default `shardmesh`.
    pub keyspace: String,
    /// User name, when the cluster requires authentication. Default none.
    pub username: Option<String>,
    /// Password for `username`. Default none.
    pub password: Option<Secret>,
    /// Connection timeout in ms. Default 5000; 100..=60000.
    pub connect_timeout_ms: u64,
    /// Per-request timeout in ms. Default 5000; 100..=60000. Keep it below the lease
    /// renew interval so a slow store is noticed before a lease lapses.
    pub request_timeout_ms: u64,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "shardmesh".into(),
            username: None,
            password: None,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 5_000,
        }
    }
}

/// A value that must not reach logs: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl StoreConfig {
    /// Checks every value against the range its doc comment gives.
    ///
    /// # Errors
    ///
    /// The first setting that is out of range, by key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.sqlite.path.as_os_str().is_empty() {
            return Err(InvalidConfig::new("store.sqlite.path", "must not be empty"));
        }
        check_range(
            "store.sqlite.busy_timeout_ms",
            self.sqlite.busy_timeout_ms,
            1,
            60_000,
        )?;
        if self.scylla.nodes.is_empty() {
            return Err(InvalidConfig::new(
                "store.scylla.nodes",
                "needs at least one host:port",
            ));
        }
        if self.scylla.keyspace.is_empty()
            || !self
                .scylla
                .keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(InvalidConfig::new(
                "store.scylla.keyspace",
                format!("{:?} is not a plain CQL identifier", self.scylla.keyspace),
            ));
        }
        check_range(
            "store.scylla.connect_timeout_ms",
            self.scylla.connect_timeout_ms,
            100,
            60_000,
        )?;
        check_range(
            "store.scylla.request_timeout_ms",
            self.scylla.request_timeout_ms,
            100,
            60_000,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let config = ScyllaConfig {
            password: Some(Secret::new("hunter2")),
            ..ScyllaConfig::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn defaults_are_valid() {
        StoreConfig::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_value_names_its_key() {
        let mut config = StoreConfig::default();
        config.sqlite.busy_timeout_ms = 0;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "store.sqlite.busy_timeout_ms: 0 is outside 1..=60000"
        );
    }
}
