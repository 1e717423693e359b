//! `config.example.toml` documents every key of every section with its default, and
//! each role loads it as its defaults.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use config::{Config, File, FileFormat, Value, ValueKind};
use shardmesh_consumer::{ConsumerConfig, ConsumerSettings};
use shardmesh_gateway::{GatewayConfig, GatewaySettings};
use shardmesh_mesh::MeshSettings;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml")
}

/// Every leaf with its dotted key, `prefix.` prepended.
fn leaves(prefix: &str, config: &Config) -> Vec<(String, Value)> {
    fn walk(key: String, value: Value, out: &mut Vec<(String, Value)>) {
        match value.kind {
            ValueKind::Table(table) => {
                for (name, child) in table {
                    walk(format!("{key}.{name}"), child, out);
                }
            }
            _ => out.push((key, value)),
        }
    }
    let mut out = Vec::new();
    for (name, value) in config::Source::collect(config).unwrap() {
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        walk(key, value, &mut out);
    }
    out
}

#[test]
fn example_file_documents_every_key_with_its_default() {
    let example = Config::builder()
        .add_source(File::from(example_path()).format(FileFormat::Toml))
        .build()
        .unwrap();
    let mut defaults = leaves("", &Config::try_from(&MeshSettings::default()).unwrap());
    defaults.extend(leaves(
        "gateway",
        &Config::try_from(&GatewayConfig::default()).unwrap(),
    ));
    defaults.extend(leaves(
        "consumer",
        &Config::try_from(&ConsumerConfig::default()).unwrap(),
    ));
    // Optional keys default to none, which TOML cannot write; the example shows them
    // commented out, so they are the only keys allowed to be missing.
    let optional: BTreeSet<String> = defaults
        .iter()
        .filter(|(_, value)| matches!(value.kind, ValueKind::Nil))
        .map(|(key, _)| key.clone())
        .collect();
    let expected: BTreeSet<String> = defaults
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| !optional.contains(key))
        .collect();
    let documented: BTreeSet<String> = leaves("", &example)
        .into_iter()
        .map(|(key, _)| key)
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
}

#[test]
fn every_role_loads_the_example_as_its_defaults() {
    let example = example_path();
    assert_eq!(
        MeshSettings::load_from(Some(&example), []).unwrap(),
        MeshSettings::default()
    );
    let consumer = ConsumerSettings::load_from(Some(&example), []).unwrap();
    assert_eq!(consumer.role, ConsumerConfig::default());
    // The example leaves the token empty: a gateway node refuses it, naming the key.
    let error = GatewaySettings::load_from(Some(&example), []).unwrap_err();
    assert_eq!(error.key, "gateway.token");
    let token = [("SHARDMESH__GATEWAY__TOKEN".to_owned(), "t0ken".to_owned())];
    let gateway = GatewaySettings::load_from(Some(&example), token).unwrap();
    assert_eq!(gateway.role.token.expose(), "t0ken");
    assert_eq!(gateway.mesh, MeshSettings::default());
}
