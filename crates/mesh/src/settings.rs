//! Node settings: defaults < file (`--config`) < environment (`SHARDMESH__SECTION__KEY`).
//!
//! Every part keeps its own settings struct (`StoreConfig` in the store, `BrokerConfig`
//! in the broker, `GatewayConfig` and `ConsumerConfig` in the role crates) and checks it
//! itself, reporting [`InvalidConfig`] with the full key. This module layers the sources
//! and adds to every mistake where the bad value came from (the file and line, or the
//! environment variable), so the binary and a Rust bot load configuration the same way.
//! It reads and parses the file itself ([`mod@file`]) to hold its values to their keys'
//! types, and decides which `SHARDMESH…` variables are settings ([`names`]).

mod file;
mod names;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use config::{Config, ConfigError, Environment, File, FileFormat, Value, ValueKind};
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use shardmesh_broker::BrokerConfig;
use shardmesh_proto::{InvalidConfig, check_range};
use shardmesh_store::StoreConfig;

use crate::{LeaseConfig, MembershipConfig};
use file::SettingsFile;
use names::{
    ENV_PREFIX, ENV_SEPARATOR, closest_key, env_var_name, refuse_misspelled_variables, setting_key,
};

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &["store.scylla.nodes"];
/// The sections only one role reads (`sim` is `shardmesh sim`'s). A file may hold all
/// of them, so one file serves every process of a host; each role checks its own and
/// leaves the others alone.
const ROLE_SECTIONS: &[&str] = &["gateway", "consumer", "sim"];

/// The sections every node reads, whatever its role. Unknown keys are refused by the
/// loader, which knows which role sections the node reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MeshSettings {
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
    /// picks a free one; empty serves nothing.
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

impl NodeSettings {
    /// The configured node id, or a fresh UUID v7: a restarted node never inherits the
    /// leases of its previous life.
    pub fn node_id(&self) -> String {
        if self.id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            self.id.clone()
        }
    }
}

/// A role's own section (`[gateway]`, `[consumer]`), loaded beside [`MeshSettings`].
pub trait RoleSection: Serialize + DeserializeOwned + Default {
    /// The section's name in the file, e.g. `gateway`.
    const SECTION: &'static str;

    /// Checks what types cannot (ranges, relations), naming the full key.
    ///
    /// # Errors
    ///
    /// The first key that cannot be used.
    fn validate(&self) -> Result<(), InvalidConfig>;
}

/// Everything a node of one role reads at start-up: the sections every node shares and
/// the role's own (`[gateway]` for `GatewaySettings`, `[consumer]` for
/// `ConsumerSettings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSettings<R> {
    /// `[cluster]`, `[node]`, `[store]`, `[broker]`, `[lease]`, `[membership]`.
    pub mesh: MeshSettings,
    /// The role's section, `R::SECTION`.
    pub role: R,
}

impl<R: RoleSection> RoleSettings<R> {
    /// Loads defaults < `file` < `SHARDMESH__SECTION__KEY` environment variables.
    ///
    /// # Errors
    ///
    /// A missing or unparsable file, an unknown key, a value of the wrong type, or a
    /// value out of range, each naming the key and its source.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`RoleSettings::load`], with the environment given.
    ///
    /// # Errors
    ///
    /// As [`RoleSettings::load`].
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let role_defaults =
            Config::try_from(&R::default()).map_err(|error| defaults_error(&error))?;
        let layers = Layers::read(file, env, Some((R::SECTION, role_defaults)))?;
        let mesh = layers.mesh()?;
        let RoleOnly(role) = layers.deserialize::<RoleOnly<R>>()?;
        role.validate().map_err(|invalid| layers.refusal(invalid))?;
        Ok(Self { mesh, role })
    }
}

/// A setting that cannot be used, with the key and the source that set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", Described(self))]
pub struct SettingsError {
    /// Full key, e.g. `lease.duration_ms`; empty when the problem is the file itself
    /// (missing, not TOML) or a variable that names no setting.
    pub key: String,
    /// Where the value came from: the file path as given and the line
    /// (`shardmesh.toml line 12`; with the column for a TOML syntax error), an
    /// environment variable (`environment variable SHARDMESH__NODE__CAPACITY`), or
    /// `None` for a default.
    pub origin: Option<String>,
    /// What is wrong and what is allowed.
    pub problem: String,
}

struct Described<'a>(&'a SettingsError);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self.0;
        match (error.key.is_empty(), &error.origin) {
            (false, Some(origin)) => write!(f, "{} (from {origin})", error.key)?,
            (false, None) => write!(f, "{} (default)", error.key)?,
            (true, Some(origin)) => write!(f, "{origin}")?,
            (true, None) => f.write_str("defaults")?,
        }
        write!(f, ": {}", error.problem)
    }
}

impl MeshSettings {
    /// Loads the shared sections from the defaults, `file`, and the process
    /// environment, leaving the role sections alone (`shardmesh ctl` reads these).
    ///
    /// # Errors
    ///
    /// A missing or unparsable file, an unknown key, a value of the wrong type, or a
    /// value out of range, each naming the key and its source.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`MeshSettings::load`], with the environment given.
    ///
    /// # Errors
    ///
    /// As [`MeshSettings::load`].
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let layers = Layers::read(file, env, None)?;
        layers.mesh()
    }

    /// Checks the values that types cannot: ranges and relations between settings.
    ///
    /// # Errors
    ///
    /// The first key that cannot be used.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let name = &self.cluster.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(InvalidConfig::new(
                "cluster.name",
                format!("{name:?} must be 1..=64 characters of a-z 0-9 - _"),
            ));
        }
        check_range("cluster.partitions", self.cluster.partitions, 1, 1024)?;
        check_range("cluster.shard_count", self.cluster.shard_count, 0, 65_536)?;
        check_range(
            "cluster.max_concurrency",
            self.cluster.max_concurrency,
            0,
            65_536,
        )?;
        check_range("node.capacity", self.node.capacity, 1, 1000)?;
        if !self.node.http_bind.is_empty()
            && self.node.http_bind.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(InvalidConfig::new(
                "node.http_bind",
                format!(
                    "{:?} is not an ip:port address (or empty for none)",
                    self.node.http_bind
                ),
            ));
        }
        self.lease.validate()?;
        self.membership.validate()?;
        self.store.validate()?;
        self.broker.validate()
    }
}

/// The merged sources, kept so every refusal can name where its value came from.
struct Layers {
    merged: Config,
    /// The variable that set each key, by key.
    variable_by_key: HashMap<String, String>,
    file: Option<SettingsFile>,
}

impl Layers {
    fn read(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        role: Option<(&str, Config)>,
    ) -> Result<Self, SettingsError> {
        let defaults =
            Config::try_from(&MeshSettings::default()).map_err(|error| defaults_error(&error))?;
        let mut known = leaf_keys(&defaults);
        let mut builder = Config::builder().add_source(defaults);
        if let Some((section, role_defaults)) = role {
            known.extend(
                leaf_keys(&role_defaults)
                    .into_iter()
                    .map(|key| format!("{section}.{key}")),
            );
            for (key, value) in leaf_values(&role_defaults) {
                builder = builder
                    .set_default(format!("{section}.{key}"), value)
                    .map_err(|error| defaults_error(&error))?;
            }
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        refuse_misspelled_variables(env.iter().map(|(name, _)| name.as_str()), &known)?;
        let setting_variables: HashMap<String, String> = env
            .into_iter()
            .filter(|(name, _)| setting_key(name).is_some())
            .collect();
        let variable_by_key = setting_variables
            .keys()
            .filter_map(|name| Some((setting_key(name)?, name.clone())))
            .collect();
        let file = file.map(SettingsFile::read).transpose()?;
        if let Some(file) = &file {
            builder = builder.add_source(File::from_str(file.text(), FileFormat::Toml));
        }
        let mut environment = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .list_separator(",")
            .source(Some(setting_variables.into_iter().collect()));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let merged = builder
            .add_source(environment)
            .build()
            .map_err(|error| SettingsError {
                key: String::new(),
                origin: None,
                problem: format!("the sources do not merge: {error}"),
            })?;
        let layers = Self {
            merged,
            variable_by_key,
            file,
        };
        let unknown = leaf_values(&layers.merged)
            .into_iter()
            .map(|(key, _)| key)
            .find(|key| !known.contains(key) && !is_other_role(key, &known));
        if let Some(key) = unknown {
            return Err(layers.unknown_key(key, &known));
        }
        Ok(layers)
    }

    /// An unknown key, with the one probably meant written as it was set: a variable
    /// for a variable, a key for the file.
    fn unknown_key(&self, key: String, known: &BTreeSet<String>) -> SettingsError {
        let written = |meant: &str| {
            if self.variable_by_key.contains_key(&key) {
                env_var_name(meant)
            } else {
                meant.to_owned()
            }
        };
        let section = format!("{key}.");
        let problem = if let Some(inner) = known.iter().find(|leaf| leaf.starts_with(&section)) {
            format!(
                "is a section, not a value; set its keys, e.g. {}",
                written(inner)
            )
        } else if let Some(meant) = closest_key(&key, known) {
            format!("unknown key; did you mean {}?", written(meant))
        } else {
            "unknown key".to_owned()
        };
        SettingsError {
            origin: self.origin_of(&key),
            problem,
            key,
        }
    }

    fn mesh(&self) -> Result<MeshSettings, SettingsError> {
        let mesh: MeshSettings = self.deserialize()?;
        mesh.validate().map_err(|invalid| self.refusal(invalid))?;
        Ok(mesh)
    }

    /// Deserializes the whole tree into `T`; a value of the wrong type is refused with
    /// its full key (deserializing one section would only name the section). The file
    /// is checked alone first: the merged tree no longer knows a file's `"2"` from the
    /// environment's, and only the environment's may be read as a number.
    fn deserialize<T: DeserializeOwned>(&self) -> Result<T, SettingsError> {
        if let Some(file) = &self.file {
            file.check_types::<T>()?;
        }
        self.merged.clone().try_deserialize::<T>().map_err(|error| {
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
                origin: self.origin_of(&key),
                key,
                problem,
            }
        })
    }

    fn refusal(&self, invalid: InvalidConfig) -> SettingsError {
        SettingsError {
            origin: self.origin_of(invalid.key),
            key: invalid.key.to_owned(),
            problem: invalid.problem,
        }
    }

    /// Where the value of `key` came from, for a person: its environment variable
    /// (which wins over the file), its file and line, or `None` when it is a default.
    fn origin_of(&self, key: &str) -> Option<String> {
        if let Some(variable) = self.variable_by_key.get(key) {
            return Some(format!("environment variable {variable}"));
        }
        self.file.as_ref()?.locate(key)
    }
}

/// A key of a role section this load does not read (another role's settings).
fn is_other_role(key: &str, known: &BTreeSet<String>) -> bool {
    ROLE_SECTIONS.iter().any(|section| {
        key.split('.').next() == Some(section)
            && !known
                .iter()
                .any(|leaf| leaf.starts_with(&format!("{section}.")))
    })
}

/// A role's section out of the whole tree, the other sections skipped, so type errors
/// carry the full key as the config crate tracks it.
struct RoleOnly<R>(R);

impl<'de, R: RoleSection> Deserialize<'de> for RoleOnly<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Sections<R>(PhantomData<R>);

        impl<'de, R: RoleSection> Visitor<'de> for Sections<R> {
            type Value = RoleOnly<R>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a table of sections, [{}] among them", R::SECTION)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut role = None;
                while let Some(section) = map.next_key::<String>()? {
                    if section == R::SECTION {
                        role = Some(map.next_value::<R>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(RoleOnly(role.unwrap_or_default()))
            }
        }

        deserializer.deserialize_map(Sections(PhantomData))
    }
}

fn defaults_error(error: &ConfigError) -> SettingsError {
    SettingsError {
        key: String::new(),
        origin: None,
        problem: format!("the built-in defaults do not serialize: {error}"),
    }
}

/// Every dotted leaf key of a configuration tree; what a complete example file lists.
pub fn leaf_keys(config: &Config) -> BTreeSet<String> {
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
