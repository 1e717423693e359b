//! Gateway nodes starting: a cold start of three nodes spreads 32 shards evenly with
//! identifies paced as Discord requires and no slower than it allows, every connection
//! on zstd-stream (the default compression); bad input at
//! start stops cleanly (an invalid token stops the shards once; an unusable store path
//! is one `error:` line and a non-zero exit); an unreachable broker is waited for, one
//! WARN line per attempt, and SIGTERM still stops the node at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardmesh_tests::{
    FaultProxy, NodeProcess, TestCluster, Timings, broker_url, get, holds_for, run_to_exit,
    sim_config, unique_name, wait_until,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

/// When the simulator granted its first IDENTIFY and its 32nd, seen by polling
/// `GET /_sim/stats` every 20 ms from the moment the nodes are spawned (the simulator
/// keeps no timestamps). A successful IDENTIFY is answered with READY at once.
#[derive(Debug, Default, Clone, Copy)]
struct IdentifyClock {
    first: Option<Instant>,
    all: Option<Instant>,
}

fn watch_identifies(
    sim: SocketAddr,
    shards: u64,
    stop: CancellationToken,
) -> Arc<Mutex<IdentifyClock>> {
    let clock = Arc::new(Mutex::new(IdentifyClock::default()));
    let shared = Arc::clone(&clock);
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            if let Ok(response) = get(sim, "/_sim/stats").await {
                let stats: serde_json::Value =
                    serde_json::from_str(&response.body).unwrap_or_default();
                let identifies = stats["identifies"].as_u64().unwrap_or(0);
                let now = Instant::now();
                // A std mutex, never held across an await.
                let mut clock = shared.lock().unwrap();
                if identifies > 0 && clock.first.is_none() {
                    clock.first = Some(now);
                }
                if identifies >= shards && clock.all.is_none() {
                    clock.all = Some(now);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    clock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_cold_start_32_shards_paced_evenly_and_near_the_ideal_time() {
    const SHARDS: u32 = 32;
    const MAX_CONCURRENCY: u32 = 4;
    // (32 / 4 − 1) × 5 s, +10 %.
    let ideal = Duration::from_secs(u64::from(SHARDS / MAX_CONCURRENCY - 1) * 5);
    let bound = ideal + ideal / 10;
    let sim = sim_config(SHARDS, MAX_CONCURRENCY, 0.0);
    let mut cluster = TestCluster::start("cold", sim, 4, Timings::DEFAULT).await;
    // g1 asks `GET /gateway/bot` for the shard count and max_concurrency; g2 and g3 are
    // told. All must agree on the same spec.
    let mut asks = cluster.node_config("g1");
    asks.shard_count = 0;
    asks.max_concurrency = 0;
    let configs = vec![asks, cluster.node_config("g2"), cluster.node_config("g3")];
    let stop = CancellationToken::new();
    let clock = watch_identifies(cluster.sim.addr(), u64::from(SHARDS), stop.clone());
    cluster.start_nodes_with(configs).await;

    cluster.wait_ready_at_sim(ideal * 3).await;
    let owners = cluster.wait_settled(11, WAIT).await;
    let (first, all) = wait_until(
        "the identify clock to see the first and the last IDENTIFY",
        Duration::from_secs(5),
        || match *clock.lock().unwrap() {
            IdentifyClock {
                first: Some(first),
                all: Some(all),
            } => Ok((first, all)),
            seen => Err(format!("{seen:?}")),
        },
    )
    .await;
    stop.cancel();
    let took = all - first;
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for owner in owners.values() {
        *per_node.entry(owner).or_default() += 1;
    }
    println!(
        "cold start: all {SHARDS} READY {took:?} after the first IDENTIFY (ideal {ideal:?}); shards per node {per_node:?}"
    );

    let stats = cluster.sim.stats();
    assert_eq!(stats.pacing_violations, 0, "IDENTIFYs broke the 5 s pacing");
    assert_eq!(
        stats.identifies,
        u64::from(SHARDS),
        "expected one IDENTIFY per shard"
    );
    // The default `gateway.compression`: every connection asked for zstd-stream.
    assert_eq!(
        (stats.zstd_connections, stats.zlib_connections),
        (stats.connections, 0),
        "every node connection should use zstd-stream"
    );
    assert!(
        took <= bound,
        "last READY came {took:?} after the first IDENTIFY; expected at most {bound:?} \
         (ideal {ideal:?} + 10%)"
    );
    // Exactly one owner per shard (one lease row each) and every node's own count agrees
    // (checked by wait_settled); none over ⌈32/3⌉.
    assert_eq!(owners.len(), SHARDS as usize);
    assert!(per_node.values().all(|count| *count <= 11), "{per_node:?}");
    assert_eq!(
        cluster
            .count_sum("shardmesh_gateway_shards_owned")
            .await
            .unwrap(),
        u64::from(SHARDS)
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_token_stops_the_shards_once_with_a_log_line_and_an_action() {
    const SHARDS: u32 = 2;
    let timings = Timings::FAST;
    let mut cluster =
        TestCluster::start("token", sim_config(SHARDS, SHARDS, 0.0), 1, timings).await;
    // Counting gateway connections: each is one IDENTIFY attempt.
    let upstream = cluster.sim.addr().to_string();
    let gateway = FaultProxy::start(&upstream).await;
    let mut config = cluster.node_config("g1");
    config.token = "not-the-bots-token".into();
    config.gateway_url = format!("ws://{}", gateway.addr());
    cluster.start_nodes_with(vec![config]).await;

    let fatal = wait_until_fatal(&cluster, SHARDS).await;
    let attempts = gateway.accepted();
    println!("token: {attempts} connection attempts; actions {fatal:?}");
    let log = cluster.fleet.node("g1").log();
    assert!(
        log.lines()
            .any(|line| line.contains("ERROR") && line.contains("4004")),
        "expected an ERROR log line naming close code 4004"
    );
    assert!(
        attempts <= SHARDS as usize,
        "{attempts} gateway connections for {SHARDS} shards: an IDENTIFY was retried"
    );
    // Long enough for a lease to lapse and be taken again, and for a paced retry.
    let period = Duration::from_millis(2 * timings.lease_ms) + Duration::from_secs(5);
    holds_for(
        "no further connection attempt; the node stays up",
        period,
        || async {
            cluster
                .fleet
                .node("g1")
                .get("/health")
                .await
                .and_then(|health| {
                    if health.status != 200 {
                        return Err(format!("/health answered {}", health.status));
                    }
                    if gateway.accepted() > attempts {
                        return Err(format!("{} connection attempts", gateway.accepted()));
                    }
                    Ok(())
                })
        },
    )
    .await;
    assert_eq!(cluster.sim.stats().identifies, 0);
    let ready = cluster.fleet.node("g1").get("/ready").await.unwrap();
    assert_eq!(
        ready.status, 503,
        "/ready with every shard stopped: {ready:?}"
    );
    cluster.finish().await;
}

/// Waits for an action-log entry per shard saying it stopped for good.
async fn wait_until_fatal(cluster: &TestCluster, shards: u32) -> Vec<String> {
    shardmesh_tests::eventually(
        &format!("an action-log entry for each of the {shards} shards stopped by close 4004"),
        WAIT,
        || async {
            let actions = cluster.actions().await;
            let fatal: Vec<String> = actions
                .iter()
                .filter(|action| action.action.contains("fatal") || action.result.contains("4004"))
                .map(|action| {
                    format!(
                        "{} {} {}: {}",
                        action.actor, action.action, action.args, action.result
                    )
                })
                .collect();
            let covered = (0..shards).all(|shard| {
                fatal.iter().any(|entry| {
                    entry.contains(&format!("shard/{shard}:"))
                        || entry.contains(&format!("shard/{shard} "))
                })
            });
            if covered {
                Ok(fatal)
            } else {
                Err(format!(
                    "actions: {:?}",
                    actions
                        .iter()
                        .map(|action| format!(
                            "{} {} {}: {}",
                            action.actor, action.action, action.args, action.result
                        ))
                        .collect::<Vec<_>>()
                ))
            }
        },
    )
    .await
}

/// A start-up that must fail: one `error:` line on stderr, naming `subject`, a non-zero
/// exit, quickly.
fn assert_one_error_line(finished: &shardmesh_tests::Finished, subject: &[&str], limit: Duration) {
    assert!(
        !finished.status.success(),
        "expected a non-zero exit, got {} (stderr {:?})",
        finished.status,
        finished.stderr
    );
    assert!(
        finished.took <= limit,
        "took {:?} to give up; expected within {limit:?}",
        finished.took
    );
    let lines: Vec<&str> = finished.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got {:?}",
        finished.stderr
    );
    let line = lines[0].to_lowercase();
    assert!(line.starts_with("error: "), "{:?}", lines[0]);
    assert!(
        subject
            .iter()
            .all(|word| line.contains(&word.to_lowercase())),
        "expected the error to name {subject:?}: {:?}",
        lines[0]
    );
}

/// A config file for a node whose start-up must fail; nothing else runs.
fn lone_config(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut shardmesh_tests::NodeConfig),
) -> std::path::PathBuf {
    let mut config = shardmesh_tests::NodeConfig {
        cluster: unique_name("bad"),
        partitions: 1,
        shard_count: 1,
        max_concurrency: 1,
        node_id: "g1".into(),
        store_path: dir.join("store.sqlite"),
        broker_url: broker_url(),
        broker_connect_timeout_ms: 1_000,
        broker_backoff_max_ms: 1_000,
        timings: Timings::FAST,
        token: "sim-token".into(),
        intents: 513,
        // Nothing listens there: these nodes must fail before any shard connects.
        gateway_url: "ws://127.0.0.1:9".into(),
        api_url: "http://127.0.0.1:9".into(),
        consumer: None,
    };
    edit(&mut config);
    let path = dir.join("node.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    path
}

/// A port nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_at_start_is_waited_for_and_sigterm_still_stops_at_once() {
    // A node started before RabbitMQ (a compose file, a replacement during an outage)
    // must stay and wait, saying so, rather than exit; the password never reaches logs.
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let config = lone_config(dir.path(), |config| {
        config.broker_url = format!("amqp://guest:secret-password@127.0.0.1:{port}/%2f");
    });
    let mut node = NodeProcess::gateway("g1", &config, &dir.path().join("g1.log"), &[]).await;
    let warnings = || {
        node.log()
            .lines()
            .filter(|line| line.contains(" WARN ") && line.contains("not reachable yet"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_until(
        "three WARN lines about the unreachable broker",
        WAIT,
        || {
            let seen = warnings();
            if seen.len() >= 3 {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    )
    .await;
    for line in warnings() {
        assert!(
            line.contains(&format!("127.0.0.1:{port}")),
            "the WARN line should name the broker: {line}"
        );
    }
    assert!(
        !node.log().contains("secret-password"),
        "the broker password reached the log"
    );
    assert!(
        node.error_lines().is_empty(),
        "waiting logged errors: {:#?}",
        node.error_lines()
    );
    let ready = node
        .get("/ready")
        .await
        .expect("/ready answers while waiting");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains(&format!("127.0.0.1:{port}")),
        "/ready should say what it waits on: {:?}",
        ready.body
    );

    let waited = warnings().len();
    let asked = Instant::now();
    let status = node.terminate(Duration::from_secs(10)).await;
    println!(
        "broker: waited with {} WARN lines, exit {status} {:?} after SIGTERM",
        waited,
        asked.elapsed()
    );
    assert!(
        status.success(),
        "SIGTERM while waiting should be a clean stop: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_store_path_at_start_is_one_error_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("store.sqlite");
    let config = lone_config(dir.path(), |config| config.store_path.clone_from(&missing));
    let finished = run_to_exit(&config, &[], WAIT).await;
    println!(
        "store: exit {} after {:?}: {}",
        finished.status,
        finished.took,
        finished.stderr.trim()
    );
    assert_one_error_line(
        &finished,
        &["store", &missing.display().to_string()],
        Duration::from_secs(15),
    );
}
