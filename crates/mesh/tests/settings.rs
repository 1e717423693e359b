//! The layered settings every node loads: precedence, and refusals that name the key
//! and where its value came from.

use std::io::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shardmesh_mesh::{LeaseConfig, MeshSettings, RoleSection, RoleSettings};
use shardmesh_proto::{InvalidConfig, check_range};

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

/// A role section as a role crate writes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Role {
    group: String,
    attempts: u32,
}

impl Default for Role {
    fn default() -> Self {
        Self {
            group: "default".into(),
            attempts: 5,
        }
    }
}

impl RoleSection for Role {
    const SECTION: &'static str = "consumer";

    fn validate(&self) -> Result<(), InvalidConfig> {
        check_range("consumer.attempts", self.attempts, 1, 100)
    }
}

#[test]
fn defaults_load_without_file_or_environment() {
    assert_eq!(
        MeshSettings::load_from(None, env(&[])).unwrap(),
        MeshSettings::default()
    );
}

#[test]
fn environment_overrides_file_which_overrides_defaults() {
    let config = file("[cluster]\nname = \"from-file\"\npartitions = 8\n");
    let settings = MeshSettings::load_from(
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
fn unknown_key_in_file_names_key_file_line_and_the_key_meant() {
    let config = file("[lease]\nduration = 10000\n");
    let error = MeshSettings::load_from(Some(config.path()), env(&[])).unwrap_err();
    assert_eq!(error.key, "lease.duration");
    assert_eq!(
        error.problem,
        "unknown key; did you mean lease.duration_ms?"
    );
    assert_eq!(
        error.origin,
        Some(format!("{} line 2", config.path().display()))
    );
}

#[test]
fn unknown_key_in_environment_names_the_variable_and_the_one_meant() {
    let error = MeshSettings::load_from(None, env(&[("SHARDMESH__STORE__SQLITE__PATHS", "x")]))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid configuration: store.sqlite.paths (from environment variable \
         SHARDMESH__STORE__SQLITE__PATHS): unknown key; did you mean \
         SHARDMESH__STORE__SQLITE__PATH?"
    );
}

#[test]
fn wrong_type_names_key_and_source() {
    let config = file("[cluster]\npartitions = \"many\"\n");
    let error = MeshSettings::load_from(Some(config.path()), env(&[])).unwrap_err();
    assert_eq!(error.key, "cluster.partitions");
    assert_eq!(
        error.origin,
        Some(format!("{} line 2", config.path().display()))
    );
    let error = MeshSettings::load_from(None, env(&[("SHARDMESH__LEASE__DURATION_MS", "soon")]))
        .unwrap_err();
    assert_eq!(error.key, "lease.duration_ms");
    assert_eq!(
        error.origin.as_deref(),
        Some("environment variable SHARDMESH__LEASE__DURATION_MS")
    );
}

#[test]
fn lease_shorter_than_three_renewals_is_refused_with_its_source() {
    let error = MeshSettings::load_from(None, env(&[("SHARDMESH__LEASE__DURATION_MS", "5000")]))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid configuration: lease.duration_ms (from environment variable \
         SHARDMESH__LEASE__DURATION_MS): 5000 is shorter than 3 renew intervals \
         (3 x lease.renew_interval_ms = 9000)"
    );
}

#[test]
fn impossible_values_are_refused_naming_the_full_key() {
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
        ("SHARDMESH__BROKER__URL", "rabbit", "broker.url"),
    ] {
        let error = MeshSettings::load_from(None, env(&[(name, value)])).unwrap_err();
        assert_eq!(error.key, key, "{name}={value}: {error}");
        assert_eq!(
            error.origin.as_deref(),
            Some(format!("environment variable {name}").as_str()),
            "{error}"
        );
    }
}

#[test]
fn a_role_section_loads_beside_the_shared_ones_and_is_checked_with_its_source() {
    let config = file("[cluster]\nname = \"bots\"\n[consumer]\ngroup = \"replies\"\n");
    let RoleSettings { mesh, role } = RoleSettings::<Role>::load_from(
        Some(config.path()),
        env(&[("SHARDMESH__CONSUMER__ATTEMPTS", "7")]),
    )
    .unwrap();
    assert_eq!(mesh.cluster.name, "bots");
    assert_eq!(
        role,
        Role {
            group: "replies".into(),
            attempts: 7
        }
    );

    let error = RoleSettings::<Role>::load_from(
        Some(config.path()),
        env(&[("SHARDMESH__CONSUMER__ATTEMPTS", "0")]),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid configuration: consumer.attempts (from environment variable \
         SHARDMESH__CONSUMER__ATTEMPTS): 0 is outside 1..=100"
    );
    let error = RoleSettings::<Role>::load_from(None, env(&[("SHARDMESH__CONSUMER__GROPU", "x")]))
        .unwrap_err();
    assert_eq!(error.key, "consumer.gropu");
    assert_eq!(
        error.problem,
        "unknown key; did you mean SHARDMESH__CONSUMER__GROUP?"
    );
}

#[test]
fn one_file_serves_every_role_each_reading_its_own_section() {
    // A host's file holds [gateway] and [consumer]; a consumer leaves [gateway] alone and
    // a node reading only the shared sections (ctl) leaves both alone.
    let config = file("[gateway]\ntoken = \"secret\"\n[consumer]\ngroup = \"replies\"\n");
    let role = RoleSettings::<Role>::load_from(Some(config.path()), env(&[]))
        .unwrap()
        .role;
    assert_eq!(role.group, "replies");
    assert_eq!(
        MeshSettings::load_from(Some(config.path()), env(&[])).unwrap(),
        MeshSettings::default()
    );
    // A section no role reads is a mistake, not someone else's settings.
    let typo = file("[gatway]\ntoken = \"secret\"\n");
    let error = MeshSettings::load_from(Some(typo.path()), env(&[])).unwrap_err();
    assert_eq!(error.key, "gatway.token");
}
