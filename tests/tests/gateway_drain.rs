//! SIGTERM one of three gateway nodes under traffic: it drains (hands every shard over
//! by RESUME) and exits 0; the streams then hold every dispatch exactly once.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use shardmesh_tests::{TestCluster, Timings, sim_config};
use tokio::time::Instant;

const SHARDS: u32 = 32;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);
/// How long a drain may take: close echo and confirms per shard, well under this.
const DRAIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_exits_zero_with_nothing_missing_and_nothing_twice() {
    let sim = sim_config(SHARDS, SHARDS, 200.0);
    let mut cluster = TestCluster::start("drain", sim, PARTITIONS, Timings::FAST).await;
    cluster.start_nodes(&["g1", "g2", "g3"]).await;
    let owners = cluster.wait_settled(11, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    cluster.wait_sessions_saved(5, WAIT).await;
    // A few seconds of traffic on every shard before the event.
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 600, WAIT)
        .await;
    let drained: BTreeSet<u32> = owners
        .iter()
        .filter(|(_, owner)| *owner == "g2")
        .map(|(shard, _)| *shard)
        .collect();
    assert!(!drained.is_empty(), "g2 owns nothing: {owners:?}");

    let drained_at = cluster.sim.stats().truth_records;
    let started = Instant::now();
    // The store keeps milliseconds.
    let since = SystemTime::now() - Duration::from_millis(1);
    let status = cluster.fleet.terminate("g2", DRAIN).await;
    let took = started.elapsed();
    println!(
        "drain: g2 handed {} shards over and exited in {took:?} ({status})",
        drained.len()
    );
    assert!(status.success(), "g2 exited with {status} after SIGTERM");
    let errors = cluster.fleet.ended("g2").error_lines();
    assert!(
        errors.is_empty(),
        "g2's clean drain logged errors: {errors:#?}"
    );
    cluster.wait_resumed(&drained, drained_at, WAIT).await;
    cluster.wait_settled(16, WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    cluster.sim.stop_traffic();

    let (truth, report) = cluster.stream_report("drain", WAIT).await;
    report.assert_complete();
    report.assert_no_repeats();

    let stats = cluster.sim.stats();
    assert_eq!(
        stats.identifies,
        u64::from(SHARDS),
        "the drain cost IDENTIFYs (sessions per shard: {:?})",
        truth.shards_with_new_sessions()
    );
    let actions = cluster.actions().await;
    let handed_over: BTreeSet<String> = actions
        .iter()
        .filter(|action| action.actor == "g2" && action.action == "hand_over" && action.at >= since)
        .map(|action| action.args.clone())
        .collect();
    let expected: BTreeSet<String> = drained
        .iter()
        .map(|shard| format!("shard/{shard}"))
        .collect();
    assert_eq!(
        handed_over, expected,
        "g2's hand_over actions vs the shards it held"
    );
    assert!(
        actions.iter().all(|action| action.action != "session_lost"),
        "session_lost in the action log: {actions:?}"
    );
    cluster.assert_no_lease_lost().await;
    cluster.finish().await;
}
