//! `shardmesh ctl` as a user runs it: a real process reading a real SQLite file that
//! the store API filled the way nodes do, and the real RabbitMQ for the commands.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use shardmesh_proto::{NodeRole, NodeState};
use shardmesh_store::{
    Action, Checkpoint, ClusterSpec, LeaseGrant, LeaseKey, LeaseState, NodeRecord, ShardSession,
    SqliteConfig, SqliteStore, Store,
};

const LEASE: Duration = Duration::from_secs(60);

/// Where no broker listens: the store-only tests must not depend on one.
const NO_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

fn shardmesh(dir: &Path, args: &[&str]) -> Output {
    shardmesh_in("prod", NO_BROKER, dir, args)
}

/// `shardmesh ARGS` for cluster `cluster` with its broker at `broker`.
fn shardmesh_in(cluster: &str, broker: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardmesh"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .env("SHARDMESH__STORE__SQLITE__PATH", "store.sqlite")
        .env("SHARDMESH__CLUSTER__NAME", cluster)
        .env("SHARDMESH__BROKER__URL", broker)
        .output()
        .expect("the shardmesh binary runs")
}

/// A successful `ctl status`'s output, its lines with the columns' padding squeezed
/// to one space.
struct Report {
    stdout: String,
    lines: Vec<String>,
}

impl Report {
    fn of(status: &Output) -> Self {
        let stdout = String::from_utf8_lossy(&status.stdout).into_owned();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let lines = stdout
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        Self { stdout, lines }
    }

    /// The first line starting with `start`.
    fn line(&self, start: &str) -> String {
        self.lines
            .iter()
            .find(|line| line.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{}", self.stdout))
            .clone()
    }
}

/// What two gateway nodes and a consumer node of cluster "prod" leave in the store.
async fn fill(path: &Path) {
    fill_cluster(path, "prod").await;
}

async fn fill_cluster(path: &Path, cluster: &str) {
    let config = SqliteConfig {
        path: path.to_owned(),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(&config, cluster).await.unwrap();
    store
        .agree_spec(ClusterSpec {
            shard_count: 3,
            partitions: 2,
            max_concurrency: 1,
        })
        .await
        .unwrap();
    for (shard, owner, seq) in [(0, "gateway-a", 120), (1, "gateway-b", 7)] {
        let key = LeaseKey::Shard(shard);
        let lease = store.acquire(&key, owner, LEASE).await.unwrap().unwrap();
        let grant = LeaseGrant {
            key,
            owner: owner.into(),
            epoch: lease.epoch,
        };
        let saved = LeaseState::Shard(ShardSession {
            session_id: format!("session-{shard}"),
            seq,
            resume_url: "wss://resume.example".into(),
        });
        assert!(store.renew(&grant, LEASE, &saved).await.unwrap());
    }
    let key = LeaseKey::Partition {
        group: "bot".into(),
        partition: 1,
    };
    let lease = store
        .acquire(&key, "consumer-a", LEASE)
        .await
        .unwrap()
        .unwrap();
    let grant = LeaseGrant {
        key,
        owner: "consumer-a".into(),
        epoch: lease.epoch,
    };
    let checkpoint = LeaseState::Partition(Checkpoint {
        offset: Some(4_711),
        ..Checkpoint::default()
    });
    assert!(store.release(&grant, &checkpoint).await.unwrap());
    let now = std::time::SystemTime::now();
    store
        .register_node(
            &NodeRecord {
                node: "gateway-a".into(),
                role: NodeRole::Gateway,
                group: None,
                state: NodeState::Ready,
                address: None,
                started_at: now,
                seen_at: now,
            },
            LEASE,
        )
        .await
        .unwrap();
    store
        .log_action(&Action {
            actor: "gateway-b".into(),
            action: "session_lost".into(),
            args: "shard/1".into(),
            result: "identified again".into(),
            at: now,
        })
        .await
        .unwrap();
}

#[test]
fn status_shows_owners_sessions_checkpoints_and_actions() {
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fill(&dir.path().join("store.sqlite")));

    let report = Report::of(&shardmesh(dir.path(), &["ctl", "status"]));
    let line = |start: &str| report.line(start);
    let stdout = &report.stdout;
    assert_eq!(
        line("cluster"),
        "cluster prod: 3 shards, 2 partitions, max_concurrency 1"
    );
    // The relative path of the configuration, made absolute: which file was read.
    let store = dir.path().canonicalize().unwrap().join("store.sqlite");
    assert!(
        line("store:").starts_with(&format!("store: sqlite file {} on ", store.display())),
        "{stdout}"
    );
    assert!(line("gateway-a").starts_with("gateway-a gateway - ready"));
    assert_eq!(
        line("shards:"),
        "shards: 2 of 3 owned (gateway-a 1, gateway-b 1)"
    );
    assert!(line("0 ").starts_with("0 gateway-a 1 session-0 120 expires in"));
    assert!(line("1 gateway-b").starts_with("1 gateway-b 1 session-1 7 expires in"));
    assert_eq!(line("2 "), "2 - - - - never held ?");
    assert!(
        line("command backlog not read:").contains("127.0.0.1:1"),
        "{stdout}"
    );
    assert_eq!(
        line("partitions of group bot"),
        "partitions of group bot: 0 of 2 owned"
    );
    assert_eq!(line("1 - 1 4711"), "1 - 1 4711 0 released");
    let action = report
        .lines
        .iter()
        .find(|line| line.contains("session_lost"))
        .unwrap_or_else(|| panic!("no action line in:\n{stdout}"));
    assert!(
        action.ends_with("ago gateway-b session_lost shard/1 identified again"),
        "{action}"
    );
}

#[test]
fn status_of_an_unreadable_store_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("store.sqlite"), [0x5a_u8; 8192]).unwrap();
    let status = shardmesh(dir.path(), &["ctl", "status"]);
    assert!(!status.status.success());
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let file = dir.path().canonicalize().unwrap().join("store.sqlite");
    assert!(
        stderr.starts_with(&format!(
            "error: store file corrupt: sqlite file {} is not a sqlite database",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn send_refuses_a_bad_command_by_field_before_reaching_any_broker() {
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fill(&dir.path().join("store.sqlite")));
    let cases: [(&[&str], &str); 4] = [
        (
            &["--op", "2", "--d", "{}", "--shard", "0"],
            "op: 2 is not a gateway command",
        ),
        (
            &["--op", "3", "--d", "[1]", "--shard", "0"],
            "d: must be a JSON object",
        ),
        (
            &["--op", "3", "--d", "{}", "--shard", "3"],
            "shard: 3 is outside the cluster's shards 0..3",
        ),
        (
            &["--op", "3", "--d", "{}"],
            "guild_id: a command without a guild needs a `shard`",
        ),
    ];
    for (args, expected) in cases {
        let output = shardmesh(dir.path(), &[&["ctl", "send"][..], args].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn send_without_a_cluster_spec_says_no_gateway_started() {
    let dir = tempfile::tempdir().unwrap();
    let output = shardmesh(
        dir.path(),
        &["ctl", "send", "--op", "3", "--d", "{}", "--shard", "0"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no gateway node has started"), "{stderr}");
}

#[test]
fn status_shows_the_commands_waiting_for_each_shard() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let broker = runtime.block_on(shardmesh_harness::require_broker());
    let cluster = shardmesh_harness::unique_name("ctl-backlog");
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(fill_cluster(&dir.path().join("store.sqlite"), &cluster));
    let ctl = |args: &[&str]| shardmesh_in(&cluster, &broker, dir.path(), args);
    for shard in ["2", "2", "2", "0"] {
        let sent = ctl(&["ctl", "send", "--op", "3", "--d", "{}", "--shard", shard]);
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
    }

    let report = Report::of(&ctl(&["ctl", "status"]));
    let line = |start: &str| report.line(start);
    let stdout = &report.stdout;
    // Nobody subscribes (no gateway node runs): the commands wait, and it says so.
    assert!(
        line("0 gateway-a").ends_with("1 waiting, no reader"),
        "{stdout}"
    );
    assert!(line("1 gateway-b").ends_with(" -"), "{stdout}");
    assert!(
        line("2 ").ends_with("never held 3 waiting, no reader"),
        "{stdout}"
    );
    assert!(!stdout.contains("command backlog not read"), "{stdout}");

    let config = shardmesh_broker::BrokerConfig {
        url: shardmesh_broker::BrokerUrl::new(&broker),
        ..shardmesh_broker::BrokerConfig::default()
    };
    runtime
        .block_on(
            shardmesh_broker::Topology::new(&cluster, 2, &config)
                .unwrap()
                .with_command_queues(3)
                .delete(&config),
        )
        .unwrap();
}
