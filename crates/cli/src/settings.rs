//! Node configuration: defaults < file (`--config`) < environment (`SHARDMESH__SECTION__KEY`).
//!
//! Every part keeps its own settings struct (the store's lives in `shardmesh-store`);
//! this module layers the sources and turns every mistake into one line naming the key
//! and where the bad value came from (the file path or the environment variable).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use config::{Config, ConfigError, Environment, File, FileFormat, Value, ValueKind};
use serde::{Deserialize, Serialize};
use shardmesh_broker::BrokerConfig;
use shardmesh_consumer::ConsumerConfig;
use shardmesh_gateway::GatewayConfig;
use shardmesh_mesh::{LeaseConfig, MembershipConfig};
use shardmesh_store::StoreConfig;

/// Prefix of environment variables that override settings.
const ENV_PREFIX: &str = "SHARDMESH";
/// Separates the prefix and the levels of a key in an environment variable name.
const ENV_SEPARATOR: &str = "__";
/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &["store.scylla.nodes"];

/// Everything a node reads at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[cluster]`: which cluster the node joins and its fixed numbers.
    pub cluster: ClusterSettings,
    /// `[node]`: this process.
    pub node: NodeSettings,
    /// `[store]`: where ownership and state live.
    pub store: StoreConfig,
    /// `[broker]`: the RabbitMQ the node publishes to and reads from.
    pub broker: BrokerConfig,
    /// `[lease]`: timing of shard and partition leases.
    pub lease: LeaseConfig,
    /// `[membership]`: timing of announcements and assignment.
    pub membership: MembershipConfig,
    /// `[gateway]`: how a gateway node reaches Discord (read by `shardmesh gateway`).
    pub gateway: GatewayConfig,
    /// `[consumer]`: the consumer group and how it handles events (read by
    /// `shardmesh consumer`).
    pub consumer: ConsumerConfig,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Namespaces queues, exchanges and store rows. Default `default`; 1..=64 of
    /// `a-z 0-9 - _`.
    pub name: String,
    /// Event stream partitions, fixed when the cluster is created. Default 16; 1..=1024.
    pub partitions: u32,
    /// Discord shard count; 0 asks Discord (`GET /gateway/bot`). Default 0; 0..=65536.
    pub shard_count: u32,
    /// Identify buckets (Discord's `max_concurrency`); 0 asks Discord. Default 0;
    /// 0..=65536.
    pub max_concurrency: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            name: "default".into(),
            partitions: 16,
            shard_count: 0,
            max_concurrency: 0,
        }
    }
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Node id; empty means a fresh UUID v7 per process start, so a restarted node never
    /// inherits the leases of its previous life. Default empty.
    pub id: String,
    /// Weight in the assignment: a node with capacity 2 gets twice the keys. Default 1;
    /// 1..=1000.
    pub capacity: u32,
    /// Address of `/health`, `/ready` and `/metrics`. Default `127.0.0.1:9464`; port 0
    /// picks a free one.
    pub http_bind: String,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            id: String::new(),
            capacity: 1,
            http_bind: "127.0.0.1:9464".into(),
        }
    }
}

/// A setting that cannot be used, with the key and the source that set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}{from}: {problem}", from = Origin(origin.as_deref()))]
pub struct SettingsError {
    /// Full key, e.g. `lease.duration_ms`; empty when the problem is the file itself.
    pub key: String,
    /// Where the value came from: a file path, an environment variable, or `None` for
    /// a default.
    pub origin: Option<String>,
    /// What is wrong and what is allowed.
    pub problem: String,
}

struct Origin<'a>(Option<&'a str>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(source) => write!(f, " (from {source})"),
            None => f.write_str(" (default)"),
        }
    }
}

impl Settings {
    /// Loads settings from the defaults, `file`, and the process environment.
    ///
    /// # Errors
    ///
    /// A missing or unparsable file, an unknown key, a value of the wrong type, or a
    /// value out of range, each naming the key and its source.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Settings::load`], with the environment given (tests must not touch the
    /// process environment).
    fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
            .collect();
        let defaults = Config::try_from(&Self::default()).map_err(|error| SettingsError {
            key: String::new(),
            origin: None,
            problem: format!("the built-in defaults do not serialize: {error}"),
        })?;
        let mut builder = Config::builder().add_source(defaults.clone());
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let mut environment = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .list_separator(",")
            .source(Some(env.clone().into_iter().collect()));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let merged = builder
            .add_source(environment)
            .build()
            .map_err(|error| from_config_error(&error, file))?;

        let known = leaf_keys(&defaults);
        if let Some((key, value)) = leaf_values(&merged)
            .into_iter()
            .find(|(key, _)| !known.contains(key))
        {
            return Err(SettingsError {
                origin: Some(describe_origin(&key, value.origin(), &env, file)),
                problem: "unknown key".into(),
                key,
            });
        }

        let settings: Self = merged.clone().try_deserialize().map_err(|error| {
            let (key, problem) = match &error {
                ConfigError::Type {
                    key: Some(key),
                    unexpected,
                    expected,
                    ..
                } => (
                    key.clone(),
                    format!("expected {expected}, found {unexpected}"),
                ),
                other => (String::new(), other.to_string()),
            };
            SettingsError {
                origin: origin_of(&merged, &key, &env, file),
                key,
                problem,
            }
        })?;
        settings
            .validate()
            .map_err(|(key, problem)| SettingsError {
                origin: origin_of(&merged, key, &env, file),
                key: key.to_owned(),
                problem,
            })?;
        if let Some((key, problem)) = settings.part_problem() {
            return Err(SettingsError {
                origin: origin_of(&merged, &key, &env, file),
                key,
                problem,
            });
        }
        Ok(settings)
    }

    /// The first problem the parts' own checks find, as `(full key, problem)`.
    fn part_problem(&self) -> Option<(String, String)> {
        if let Err(error) = self.broker.validate() {
            return Some(match error {
                shardmesh_broker::Error::InvalidConfig { key, reason } => {
                    (format!("broker.{key}"), reason)
                }
                other => ("broker".to_owned(), other.to_string()),
            });
        }
        // The token is only needed by `shardmesh gateway`, which checks it itself; every
        // other gateway key is checked here, where its source is known.
        let mut gateway = self.gateway.clone();
        if gateway.token.expose().trim().is_empty() {
            gateway.token = shardmesh_gateway::BotToken::new("checked-by-the-gateway-command");
        }
        if let Err(error) = gateway.validate() {
            return Some(match error {
                shardmesh_gateway::Error::InvalidConfig { key, reason } => {
                    (format!("gateway.{key}"), reason)
                }
                other => ("gateway".to_owned(), other.to_string()),
            });
        }
        if let Err(error) = self.consumer.validate() {
            return Some(match error {
                shardmesh_consumer::Error::InvalidConfig { key, reason } => {
                    (format!("consumer.{key}"), reason)
                }
                other => ("consumer".to_owned(), other.to_string()),
            });
        }
        None
    }

    /// Checks the values that types cannot: ranges and relations between settings.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let range = |key: &'static str, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err((key, format!("{value} is outside {low}..={high}")))
            }
        };
        let name = &self.cluster.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err((
                "cluster.name",
                format!("{name:?} must be 1..=64 characters of a-z 0-9 - _"),
            ));
        }
        range(
            "cluster.partitions",
            self.cluster.partitions.into(),
            1,
            1024,
        )?;
        range(
            "cluster.shard_count",
            self.cluster.shard_count.into(),
            0,
            65_536,
        )?;
        range(
            "cluster.max_concurrency",
            self.cluster.max_concurrency.into(),
            0,
            65_536,
        )?;
        range("node.capacity", self.node.capacity.into(), 1, 1000)?;
        if self.node.http_bind.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "node.http_bind",
                format!("{:?} is not an ip:port address", self.node.http_bind),
            ));
        }
        self.lease.validate()?;
        self.membership.validate()?;
        self.store
            .validate()
            .map_err(|invalid| (invalid.key, invalid.problem))
    }
}

/// Turns a build error (file missing or unparsable, env value unparsable) into a line
/// naming the file.
fn from_config_error(error: &ConfigError, file: Option<&Path>) -> SettingsError {
    SettingsError {
        key: String::new(),
        origin: file.map(|path| path.display().to_string()),
        problem: error.to_string(),
    }
}

/// Where the value of `key` came from: its file, its environment variable, or `None`
/// when it is a default.
fn origin_of(
    merged: &Config,
    key: &str,
    env: &HashMap<String, String>,
    file: Option<&Path>,
) -> Option<String> {
    let (_, value) = leaf_values(merged)
        .into_iter()
        .find(|(leaf, _)| leaf == key)?;
    value
        .origin()
        .map(|origin| describe_origin(key, Some(origin), env, file))
}

/// Names a value's origin for a person: the environment variable rather than
/// "the environment", the file path otherwise.
fn describe_origin(
    key: &str,
    origin: Option<&str>,
    env: &HashMap<String, String>,
    file: Option<&Path>,
) -> String {
    let variable = env_var_name(key);
    if env.contains_key(&variable) {
        return format!("environment variable {variable}");
    }
    // The config crate rewrites file paths relative to the working directory; the path
    // as the user gave it is easier to recognise.
    match (origin, file) {
        (Some(_), Some(file)) => file.display().to_string(),
        (origin, _) => origin.unwrap_or("defaults").to_owned(),
    }
}

/// `store.sqlite.path` -> `SHARDMESH__STORE__SQLITE__PATH`.
fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{ENV_SEPARATOR}{}",
        key.replace('.', ENV_SEPARATOR).to_uppercase()
    )
}

fn leaf_keys(config: &Config) -> BTreeSet<String> {
    leaf_values(config)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// Every leaf of the configuration tree with its dotted key. Lists count as leaves.
fn leaf_values(config: &Config) -> Vec<(String, Value)> {
    fn walk(prefix: &str, value: Value, out: &mut Vec<(String, Value)>) {
        match value.kind {
            ValueKind::Table(table) => {
                for (name, child) in table {
                    let key = if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&key, child, out);
                }
            }
            _ => out.push((prefix.to_owned(), value)),
        }
    }
    let mut out = Vec::new();
    // `collect` keeps each value's origin; deserializing the tree would lose it.
    if let Ok(table) = config::Source::collect(config) {
        for (name, value) in table {
            walk(&name, value, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml")
    }

    #[test]
    fn defaults_load_without_file_or_environment() {
        assert_eq!(
            Settings::load_from(None, env(&[])).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let config = file("[cluster]\nname = \"from-file\"\npartitions = 8\n");
        let settings = Settings::load_from(
            Some(config.path()),
            env(&[
                ("SHARDMESH__CLUSTER__PARTITIONS", "4"),
                ("SHARDMESH__STORE__SQLITE__PATH", "/tmp/x.sqlite"),
                ("SHARDMESH__STORE__SCYLLA__NODES", "a:9042,b:9042"),
                ("UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.cluster.name, "from-file");
        assert_eq!(settings.cluster.partitions, 4);
        assert_eq!(settings.store.sqlite.path, PathBuf::from("/tmp/x.sqlite"));
        assert_eq!(settings.store.scylla.nodes, ["a:9042", "b:9042"]);
        assert_eq!(settings.lease, LeaseConfig::default());
    }

    #[test]
    fn unknown_key_in_file_names_key_and_file() {
        let config = file("[lease]\nduration = 10000\n");
        let error = Settings::load_from(Some(config.path()), env(&[])).unwrap_err();
        assert_eq!(error.key, "lease.duration");
        assert_eq!(error.problem, "unknown key");
        assert!(
            error
                .to_string()
                .contains(&config.path().display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn unknown_key_in_environment_names_the_variable() {
        let error = Settings::load_from(None, env(&[("SHARDMESH__STORE__SQLITE__PATHS", "x")]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: store.sqlite.paths (from environment variable \
             SHARDMESH__STORE__SQLITE__PATHS): unknown key"
        );
    }

    #[test]
    fn wrong_type_names_key_and_source() {
        let config = file("[cluster]\npartitions = \"many\"\n");
        let error = Settings::load_from(Some(config.path()), env(&[])).unwrap_err();
        assert_eq!(error.key, "cluster.partitions");
        assert_eq!(
            error.origin.as_deref(),
            Some(config.path().display().to_string().as_str())
        );
        let error = Settings::load_from(None, env(&[("SHARDMESH__LEASE__DURATION_MS", "soon")]))
            .unwrap_err();
        assert_eq!(error.key, "lease.duration_ms");
        assert_eq!(
            error.origin.as_deref(),
            Some("environment variable SHARDMESH__LEASE__DURATION_MS")
        );
    }

    #[test]
    fn lease_shorter_than_three_renewals_is_refused_with_its_source() {
        let error = Settings::load_from(None, env(&[("SHARDMESH__LEASE__DURATION_MS", "5000")]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: lease.duration_ms (from environment variable \
             SHARDMESH__LEASE__DURATION_MS): 5000 is shorter than 3 renew intervals \
             (3 x lease.renew_interval_ms = 9000)"
        );
    }

    #[test]
    fn impossible_values_are_refused() {
        for (name, value, key) in [
            ("SHARDMESH__CLUSTER__NAME", "Prod!", "cluster.name"),
            ("SHARDMESH__CLUSTER__PARTITIONS", "0", "cluster.partitions"),
            ("SHARDMESH__NODE__HTTP_BIND", "localhost", "node.http_bind"),
            (
                "SHARDMESH__LEASE__FENCE_MARGIN_MS",
                "7000",
                "lease.fence_margin_ms",
            ),
            (
                "SHARDMESH__MEMBERSHIP__NODE_TIMEOUT_MS",
                "1500",
                "membership.node_timeout_ms",
            ),
            (
                "SHARDMESH__STORE__SQLITE__BUSY_TIMEOUT_MS",
                "0",
                "store.sqlite.busy_timeout_ms",
            ),
        ] {
            let error = Settings::load_from(None, env(&[(name, value)])).unwrap_err();
            assert_eq!(error.key, key, "{name}={value}: {error}");
        }
    }

    #[test]
    fn missing_file_is_named() {
        let error = Settings::load_from(Some(Path::new("/nonexistent/shardmesh.toml")), env(&[]))
            .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/shardmesh.toml"),
            "{error}"
        );
    }

    #[test]
    fn example_file_documents_every_key_with_its_default() {
        let example = Config::builder()
            .add_source(File::from(example_path()).format(FileFormat::Toml))
            .build()
            .unwrap();
        let defaults = Config::try_from(&Settings::default()).unwrap();
        // Optional keys default to none, which TOML cannot write; the example shows them
        // commented out, so they are the only keys allowed to be missing.
        let optional: BTreeSet<String> = leaf_values(&defaults)
            .into_iter()
            .filter(|(_, value)| matches!(value.kind, ValueKind::Nil))
            .map(|(key, _)| key)
            .collect();
        let documented = leaf_keys(&example);
        let expected: BTreeSet<String> = leaf_keys(&defaults)
            .difference(&optional)
            .cloned()
            .collect();
        assert_eq!(documented, expected);
        let text = std::fs::read_to_string(example_path()).unwrap();
        for key in &optional {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.contains(&format!("# {leaf} = ")),
                "{key} is not shown in the example"
            );
        }
        assert_eq!(
            Settings::load_from(Some(&example_path()), env(&[])).unwrap(),
            Settings::default()
        );
    }
}
