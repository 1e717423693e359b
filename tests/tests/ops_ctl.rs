//! The operator's commands against three gateway node processes and a consumer under
//! traffic: `ctl drain` moves every shard of a node elsewhere by RESUME and `undrain`
//! gives it work again; `restart-shard` reconnects a shard by RESUME, and with
//! `--new-session --yes` (refused without `--yes`) by one IDENTIFY; `diag` names a node
//! stopped with SIGSTOP as silent within its deadline while the others answer; `lag`
//! gives each partition's tail and checkpoint; bad input gets a clear error; and `log`
//! lists every action with who asked. Nothing is lost or doubled on the way.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use shardmesh_sim::SimConfig;
use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::ctl::ctl;
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{
    ConsumerTuning, TestCluster, Timings, Truth, broker_url, eventually, finish, sim_config,
    spawn_command, wait_until,
};
use tokio::time::Instant;

const SHARDS: u32 = 32;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);
const CTL: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn ctl_drains_restarts_and_diagnoses_without_losing_an_event() {
    // Heartbeats every 4 s, so the nodes have latencies to report, while the 2 s that
    // g3 is frozen below stay shorter than one interval (Discord ends a session that
    // misses its heartbeat).
    let sim = SimConfig {
        heartbeat_interval_ms: 4_000,
        ..sim_config(SHARDS, SHARDS, 200.0)
    };
    let mut cluster = TestCluster::start("ops", sim, PARTITIONS, Timings::FAST).await;
    cluster.start_nodes(&["g1", "g2", "g3"]).await;
    let owners = cluster.wait_settled(11, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    let sink = Sink::start(None).await;
    let mut consumers =
        ConsumerNodes::new(&cluster, sink, ConsumerTuning::PER_EVENT, &broker_url());
    consumers.start(&[("c1", "a")]).await;
    consumers.wait_settled("a", WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 600, WAIT)
        .await;
    let config = cluster.write_config(&cluster.node_config("ctl"));

    // Drain g2: every shard it held resumes on g1 or g3; it stays up, owning nothing.
    let drained: BTreeSet<u32> = owners
        .iter()
        .filter(|(_, owner)| *owner == "g2")
        .map(|(shard, _)| *shard)
        .collect();
    let cursor = cluster.sim.stats().truth_records;
    let asked = Instant::now();
    let drain = ctl(&config, &["drain", "g2"], CTL).await;
    assert!(
        drain.status.success(),
        "ctl drain g2: {}{}",
        drain.stdout,
        drain.stderr
    );
    cluster.wait_resumed(&drained, cursor, WAIT).await;
    println!(
        "drain of {} shards: ctl returned after {:?}, every RESUMED seen {:?} after the command: {}",
        drained.len(),
        drain.took,
        asked.elapsed(),
        drain.stdout.trim()
    );
    let owners = cluster.owners().await.expect("read the owners");
    assert!(
        owners.values().all(|owner| owner != "g2"),
        "g2 still owns shards after its drain: {owners:?}"
    );
    assert!(
        cluster
            .fleet
            .node_mut("g2")
            .is_some_and(|node| node.try_exit().is_none()),
        "g2 exited although drained without --exit"
    );

    // Undrain it: it takes its share again.
    let undrain = ctl(&config, &["undrain", "g2"], CTL).await;
    assert!(
        undrain.status.success(),
        "ctl undrain g2: {}{}",
        undrain.stdout,
        undrain.stderr
    );
    cluster.wait_settled(11, WAIT).await;
    let again = ctl(&config, &["undrain", "g2"], CTL).await;
    assert!(
        !again.status.success() && again.stderr.contains("not draining"),
        "a second undrain says g2 is not draining: {}",
        again.stderr
    );

    // Restart a shard by RESUME: no IDENTIFY.
    let identifies = cluster.sim.stats().identifies;
    let cursor = cluster.sim.stats().truth_records;
    let restart = ctl(&config, &["restart-shard", "3"], CTL).await;
    assert!(
        restart.status.success(),
        "ctl restart-shard 3: {}{}",
        restart.stdout,
        restart.stderr
    );
    assert!(
        Truth::read(&cluster.sim).resumed_since(cursor).contains(&3),
        "shard 3 did not RESUME after restart-shard: {}",
        restart.stdout
    );
    assert_eq!(
        cluster.sim.stats().identifies,
        identifies,
        "restart-shard 3 cost an IDENTIFY"
    );

    // A new session costs one IDENTIFY, and says so unless confirmed.
    let unconfirmed = ctl(&config, &["restart-shard", "5", "--new-session"], CTL).await;
    assert!(
        !unconfirmed.status.success() && unconfirmed.stderr.contains("--yes"),
        "restart-shard --new-session without --yes is refused, naming --yes: {}",
        unconfirmed.stderr
    );
    let fresh = ctl(
        &config,
        &["restart-shard", "5", "--new-session", "--yes"],
        CTL,
    )
    .await;
    assert!(
        fresh.status.success(),
        "ctl restart-shard 5 --new-session --yes: {}{}",
        fresh.stdout,
        fresh.stderr
    );
    assert_eq!(
        cluster.sim.stats().identifies,
        identifies + 1,
        "a new session for shard 5 costs exactly one IDENTIFY"
    );

    // Bad input: unknown node and shard.
    let unknown = ctl(&config, &["drain", "g9"], CTL).await;
    assert!(
        !unknown.status.success()
            && unknown.stderr.contains("no live node is called \"g9\"")
            && unknown.stderr.contains("g1"),
        "drain of an unknown node names it and the live ones: {}",
        unknown.stderr
    );
    let no_shard = ctl(&config, &["restart-shard", "99"], CTL).await;
    assert!(
        !no_shard.status.success() && no_shard.stderr.contains("has 32 shards"),
        "restart-shard of a shard outside the count says the count: {}",
        no_shard.stderr
    );

    // Lag: every partition of group a, with its tail.
    let lag = ctl(&config, &["lag", "--json"], CTL).await;
    assert!(
        lag.status.success(),
        "ctl lag: {}{}",
        lag.stdout,
        lag.stderr
    );
    let rows: Vec<Value> = serde_json::from_str(&lag.stdout).expect("ctl lag --json is JSON");
    assert_eq!(
        rows.len(),
        PARTITIONS as usize,
        "one row per partition: {rows:?}"
    );
    assert!(
        rows.iter()
            .all(|row| row["group"] == "a" && row["tail"].is_u64()),
        "every partition has a tail: {rows:?}"
    );
    println!("ctl lag:\n{}", ctl(&config, &["lag"], CTL).await.stdout);

    // Diag with g3 frozen: g3 named silent within the deadline, g1 and g2 answer.
    cluster.fleet.node("g3").freeze();
    let diag = ctl(&config, &["diag", "--json", "--timeout-ms", "1000"], CTL).await;
    cluster.fleet.node("g3").thaw();
    assert!(
        diag.status.success(),
        "ctl diag: {}{}",
        diag.stdout,
        diag.stderr
    );
    let report: Value = serde_json::from_str(&diag.stdout).expect("ctl diag --json is JSON");
    let answered: BTreeSet<&str> = report["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|node| node["node"].as_str())
        .collect();
    let silent: BTreeSet<&str> = report["silent"]
        .as_array()
        .expect("silent")
        .iter()
        .filter_map(|node| node["node"].as_str())
        .collect();
    assert_eq!(
        silent,
        BTreeSet::from(["g3"]),
        "diag's silent nodes: {report:#}"
    );
    assert!(
        ["g1", "g2", "c1"]
            .iter()
            .all(|node| answered.contains(node)),
        "g1, g2 and c1 answer diag: {answered:?}"
    );
    assert!(
        diag.took < Duration::from_secs(10),
        "diag with a silent node took {:?} for a 1 s deadline",
        diag.took
    );
    let shards: Vec<Value> = report["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .flat_map(|node| {
            node["diag"]["work"]["shards"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let live = shards
        .iter()
        .filter(|shard| shard["phase"] == "active" && shard["last_event_at_ms"].is_u64())
        .count();
    // A shard reports a latency from its connection's first heartbeat ack on: the
    // ones moved or restarted just before may not have one yet.
    let timed = shards
        .iter()
        .filter(|shard| shard["latency_ms"].is_u64())
        .count();
    assert!(
        live >= 16 && timed > 0,
        "g1 and g2 report their shards active with a last event ({live}), and latencies ({timed}): {report:#}"
    );
    println!("diag with g3 frozen took {:?} (deadline 1 s)", diag.took);
    let text = ctl(&config, &["diag"], CTL).await;
    println!("ctl diag:\n{}", text.stdout);

    // A node that dies during its drain: c2 (group b) is stuck in a 30 s handler call,
    // so its drain waits; SIGKILL it then, and ctl says it went silent mid-drain.
    consumers.start(&[("c2", "b")]).await;
    consumers.wait_settled("b", WAIT).await;
    consumers.sink().set_delay("c2", Duration::from_secs(30));
    let stuck = consumers.sink().count();
    eventually("c2 in a slow handler call", WAIT, || async {
        let in_flight = consumers
            .sink()
            .posts_since(stuck)
            .iter()
            .any(|post| post.node == "c2");
        if in_flight {
            Ok(())
        } else {
            Err("no call yet".to_owned())
        }
    })
    .await;
    // c2 is group b's only node: ctl refuses to leave b's partitions without an owner
    // unless told to.
    let alone = ctl(&config, &["drain", "c2"], CTL).await;
    assert!(
        !alone.status.success()
            && alone.stderr.contains("only ready consumer node")
            && alone.stderr.contains("--force"),
        "draining the last node of a group needs --force: {}",
        alone.stderr
    );
    let draining = spawn_command(&config, &["ctl", "drain", "c2", "--force"], &[]);
    wait_until("c2 asked to drain", WAIT, || {
        let log = consumers.fleet.node("c2").log();
        if log.contains("drain asked for") {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await;
    consumers.fleet.kill("c2").await;
    let died = finish(draining, CTL).await;
    assert!(
        !died.status.success() && died.stderr.contains("node c2 went silent during the drain"),
        "a drain whose node dies says so: {}{}",
        died.stdout,
        died.stderr
    );

    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    cluster.sim.stop_traffic();
    let (_, streams) = cluster.stream_report("ops", WAIT).await;
    streams.assert_complete();
    // The frozen node's shards moved when its leases expired: the streams may hold
    // exact copies of what it published unsaved (the oracle rejects inexact ones);
    // the consumer group handles each dispatch once.
    let group = consumers
        .group_report(&cluster.sim, "a", "ops, group a", WAIT)
        .await;
    group.assert_complete();
    group.assert_no_repeats();
    // A new session by request is not a loss: the action log says why.
    let log = ctl(&config, &["log", "--last", "200"], CTL).await;
    assert!(log.status.success(), "ctl log: {}", log.stderr);
    for action in [
        "drain g2",
        "undrain g2",
        "restart_shard shard/3",
        "restart_shard shard/5 new session",
    ] {
        assert!(
            log.stdout
                .lines()
                .any(|line| line.contains(" ctl:") && line.contains(action)),
            "ctl log lists {action:?} by ctl:\n{}",
            log.stdout
        );
    }
    assert!(
        log.stdout.contains("drain g9: failed: no live node"),
        "the refused drain is in the log too:\n{}",
        log.stdout
    );
    let actions = cluster.actions().await;
    assert!(
        actions.iter().all(|action| action.action != "session_lost"),
        "session_lost in the action log: {actions:#?}"
    );

    // A rolling restart with nobody to restart the nodes stops after the first one,
    // naming the nodes left as they were, and the log says so.
    let unsupervised = ctl(
        &config,
        &[
            "rolling-restart",
            "--role",
            "gateway",
            "--step-timeout-secs",
            "3",
        ],
        CTL,
    )
    .await;
    assert!(
        !unsupervised.status.success()
            && unsupervised
                .stderr
                .contains("g1 exited but no replacement joined within 3 s")
            && unsupervised.stderr.contains("not restarted: g2, g3"),
        "an unsupervised rolling restart stops at g1, naming g2 and g3: {}{}",
        unsupervised.stdout,
        unsupervised.stderr
    );
    let stopped = cluster.actions().await;
    assert!(
        stopped
            .iter()
            .any(|action| action.action == "rolling_restart"
                && action.result.starts_with("stopped: ")
                && action.result.contains("not restarted: g2, g3")),
        "the stopped rolling restart is in the action log: {stopped:#?}"
    );
    drop(consumers);
    cluster.finish().await;
}
