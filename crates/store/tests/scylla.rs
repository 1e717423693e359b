//! `ScyllaStore`: the conformance suite against a real ScyllaDB, and the errors a user
//! sees when none answers.
//!
//! No ScyllaDB can run where CI runs, so the suite's tests are `#[ignore]`d: `cargo test`
//! lists each of them as ignored with the reason, rather than passing without checking
//! anything. With a ScyllaDB at hand:
//!
//! ```sh
//! docker compose up -d scylla     # or any ScyllaDB / Cassandra 4+
//! SHARDMESH_SCYLLA_URI=127.0.0.1:9042 \
//!     cargo test -p shardmesh-store --test scylla -- --include-ignored
//! ```
//!
//! `SHARDMESH_SCYLLA_URI` is a comma-separated list of `host:port` contact points;
//! `SHARDMESH_SCYLLA_KEYSPACE` (default `shardmesh_test`) names the keyspace the suite
//! creates with `init_schema` and then uses. Each check uses its own cluster names, so
//! runs can share a keyspace. When the variable is set but the ignored tests were not
//! asked for, [`scylla_suite_runs_when_a_scylladb_is_configured`] fails, so setting it is
//! never a silent no-op.

mod conformance;

use std::io::Write;
use std::sync::Arc;

use shardmesh_store::{ErrorKind, ScyllaConfig, ScyllaStore};
use tokio::sync::OnceCell;

const URI_VARIABLE: &str = "SHARDMESH_SCYLLA_URI";
const KEYSPACE_VARIABLE: &str = "SHARDMESH_SCYLLA_KEYSPACE";

/// The ScyllaDB the environment names, if any.
fn configured() -> Option<ScyllaConfig> {
    let uri = std::env::var(URI_VARIABLE).ok()?;
    let nodes: Vec<String> = uri
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(str::to_owned)
        .collect();
    if nodes.is_empty() {
        return None;
    }
    Some(ScyllaConfig {
        nodes,
        keyspace: std::env::var(KEYSPACE_VARIABLE).unwrap_or_else(|_| "shardmesh_test".into()),
        ..ScyllaConfig::default()
    })
}

/// A handle on `cluster`. The schema is applied once per test binary; the session is
/// made once per test, because the driver runs its connection tasks on the runtime that
/// connected and each test has its own.
async fn open(cluster: String, session: Arc<OnceCell<ScyllaStore>>) -> ScyllaStore {
    static SCHEMA: OnceCell<()> = OnceCell::const_new();
    let config = configured()
        .unwrap_or_else(|| panic!("{URI_VARIABLE} is not set: this test needs a ScyllaDB"));
    SCHEMA
        .get_or_init(|| async {
            ScyllaStore::init_schema(&config)
                .await
                .expect("apply schema.cql");
        })
        .await;
    session
        .get_or_init(|| async {
            ScyllaStore::connect(&config, "unused")
                .await
                .expect("connect to ScyllaDB")
        })
        .await
        .for_cluster(&cluster)
}

conformance::conformance_suite!(
    #[ignore = "needs a ScyllaDB: set SHARDMESH_SCYLLA_URI and pass --include-ignored"]
    {
        let session = Arc::new(OnceCell::new());
        move |cluster: String| open(cluster, Arc::clone(&session))
    }
);

/// Says loudly whether the suite above ran: skipped (no ScyllaDB named), or fails when a
/// ScyllaDB is named but the ignored tests were left out.
#[test]
fn scylla_suite_runs_when_a_scylladb_is_configured() {
    let asked_for_ignored =
        std::env::args().any(|arg| arg == "--ignored" || arg == "--include-ignored");
    match configured() {
        None => {
            // Straight to the stream: the test harness captures `eprintln!` of passing
            // tests, and this line is the point of the test.
            let _ = writeln!(
                std::io::stderr(),
                "scylla conformance skipped: {URI_VARIABLE} is not set"
            );
        }
        Some(config) => assert!(
            asked_for_ignored,
            "{URI_VARIABLE} names {:?}, but the Scylla conformance suite is #[ignore]d: \
             run `cargo test -p shardmesh-store --test scylla -- --include-ignored`",
            config.nodes
        ),
    }
}

/// Nothing listens on port 1: connecting fails at once with one line that names the
/// contact point, and the kind says the store could not be reached.
#[tokio::test]
async fn a_cluster_nobody_answers_for_is_unreachable_and_named() {
    let config = ScyllaConfig {
        nodes: vec!["127.0.0.1:1".into()],
        connect_timeout_ms: 1_000,
        ..ScyllaConfig::default()
    };
    let error = ScyllaStore::connect(&config, "default")
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(error.kind(), ErrorKind::Unreachable);
    let message = error.to_string();
    assert!(
        message.starts_with("store unreachable: scylla at 127.0.0.1:1: "),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    let error = ScyllaStore::init_schema(&config)
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(error.kind(), ErrorKind::Unreachable);
}

#[tokio::test]
async fn init_refuses_a_keyspace_that_is_not_a_plain_identifier() {
    let config = ScyllaConfig {
        keyspace: "mesh; DROP".into(),
        ..ScyllaConfig::default()
    };
    let error = ScyllaStore::init_schema(&config)
        .await
        .expect_err("the name would need quoting");
    assert!(
        error.to_string().contains("store.scylla.keyspace"),
        "{error}"
    );
}
