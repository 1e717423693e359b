//! Each role's own section (`[gateway]`, `[consumer]`) is held to the same strictness as
//! the shared ones: a file value of another type than its key's, and a variable that
//! spells one of its keys with single underscores, are refused naming the key, line or
//! variable meant; the benchmarks' own `SHARDMESH_…` markers are not settings.

use std::io::Write as _;

use shardmesh_consumer::ConsumerConfig;
use shardmesh_gateway::GatewayConfig;
use shardmesh_mesh::{RoleSection, RoleSettings};

/// `R`'s section as loaded from a file holding `text` with `variables` set, or the
/// refusal with the file's path written `FILE`.
fn load<R: RoleSection>(text: &str, variables: &[(&str, &str)]) -> Result<R, String> {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let variables = variables
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()));
    RoleSettings::<R>::load_from(Some(file.path()), variables)
        .map(|settings| settings.role)
        .map_err(|error| {
            let path = file.path().display().to_string();
            error.to_string().replace(&path, "FILE")
        })
}

/// `[gateway]` with a token, then `lines`.
fn gateway(lines: &str, variables: &[(&str, &str)]) -> Result<GatewayConfig, String> {
    let text = format!("[gateway]\ntoken = \"t0ken\"\n{lines}\n");
    load::<GatewayConfig>(&text, variables)
}

/// `[consumer]` with `lines`.
fn consumer(lines: &str, variables: &[(&str, &str)]) -> Result<ConsumerConfig, String> {
    load::<ConsumerConfig>(&format!("[consumer]\n{lines}\n"), variables)
}

#[test]
fn a_role_value_of_another_type_than_its_key_is_refused_with_the_line() {
    for (refused, expected) in [
        (
            gateway("intents = \"513\"", &[]),
            "gateway.intents (from FILE line 3): expected an integer, found the string \"513\"",
        ),
        (
            gateway("publish_queue = 2.5", &[]),
            "gateway.publish_queue (from FILE line 3): expected an integer, found the number \
             2.5",
        ),
        (
            gateway("api_url = 8080", &[]),
            "gateway.api_url (from FILE line 3): expected a string, found the integer 8080",
        ),
    ] {
        assert_eq!(
            refused.unwrap_err(),
            format!("invalid configuration: {expected}")
        );
    }
    assert_eq!(
        consumer("group = \"bots\"\ncheckpoint_every_events = 2.5", &[]).unwrap_err(),
        "invalid configuration: consumer.checkpoint_every_events (from FILE line 3): expected \
         an integer, found the number 2.5"
    );
    assert_eq!(
        consumer("group = 7", &[]).unwrap_err(),
        "invalid configuration: consumer.group (from FILE line 2): expected a string, found \
         the integer 7"
    );

    // An optional key takes its value's type; digits stay a string when quoted in the
    // file, and always in the environment.
    let config = gateway("intents = 33281\napi_url = \"http://127.0.0.1:7100\"", &[]).unwrap();
    assert_eq!(config.intents, 33_281);
    assert_eq!(config.api_url.as_deref(), Some("http://127.0.0.1:7100"));
    assert_eq!(consumer("group = \"7\"", &[]).unwrap().group, "7");
    let group = [("SHARDMESH__CONSUMER__GROUP", "8")];
    assert_eq!(consumer("", &group).unwrap().group, "8");
}

#[test]
fn a_role_variable_with_single_underscores_is_refused_and_the_benchmarks_are_not() {
    let refused = gateway("", &[("SHARDMESH_GATEWAY_INTENTS", "33281")]).unwrap_err();
    assert!(
        refused.contains("did you mean SHARDMESH__GATEWAY__INTENTS?"),
        "{refused}"
    );
    let refused = consumer("", &[("SHARDMESH_CONSUMER_GROUP", "bots")]).unwrap_err();
    assert!(
        refused.contains("did you mean SHARDMESH__CONSUMER__GROUP?"),
        "{refused}"
    );
    // The markers the node and end-to-end benchmarks give their child processes.
    let markers = [
        ("SHARDMESH_GATEWAY_BENCH_SIM", "1"),
        ("SHARDMESH_CONSUMER_BENCH_NODE", "1"),
        ("SHARDMESH_CONSUMER_BENCH_SIM", "1"),
    ];
    assert_eq!(gateway("", &markers).unwrap().intents, 513);
    assert_eq!(consumer("", &markers).unwrap(), ConsumerConfig::default());
    // Each role leaves the other's section and variables alone.
    let both = "[gateway]\ntoken = \"t0ken\"\n[consumer]\ngroup = \"bots\"\n";
    let other_roles = [("SHARDMESH__GATEWAY__INTENTS", "1")];
    assert_eq!(
        load::<ConsumerConfig>(both, &other_roles).unwrap().group,
        "bots"
    );
}
