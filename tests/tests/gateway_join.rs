//! A fourth gateway node joins three under traffic: it takes its share of the shards by
//! RESUME, so the simulator sees no IDENTIFY beyond the first 32, and every dispatch
//! the simulator sent is in the streams with no gap (repeats, if any, exact).

use std::collections::BTreeSet;
use std::time::Duration;

use shardmesh_tests::{TestCluster, Timings, sim_config};

const SHARDS: u32 = 32;
const PARTITIONS: u32 = 4;
/// Any single wait of the scenario.
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_its_share_by_resume_with_no_identify_and_nothing_lost() {
    // max_concurrency = shards: the first start is not what this scenario is about.
    let sim = sim_config(SHARDS, SHARDS, 200.0);
    let mut cluster = TestCluster::start("join", sim, PARTITIONS, Timings::FAST).await;
    cluster.start_nodes(&["g1", "g2", "g3"]).await;
    cluster.wait_settled(11, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    cluster.wait_sessions_saved(5, WAIT).await;
    // A few seconds of traffic on every shard before the event.
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 600, WAIT)
        .await;
    assert_eq!(cluster.sim.stats().identifies, u64::from(SHARDS));

    let joined_at = cluster.sim.stats().truth_records;
    cluster.start_nodes(&["g4"]).await;
    let owners = cluster.wait_settled(8, WAIT).await;
    let moved: BTreeSet<u32> = owners
        .iter()
        .filter(|(_, owner)| *owner == "g4")
        .map(|(shard, _)| *shard)
        .collect();
    assert_eq!(
        moved.len(),
        8,
        "g4 should hold 32/4 shards; owners {owners:?}"
    );
    cluster.wait_resumed(&moved, joined_at, WAIT).await;
    // Traffic goes on for a while on the new owner before the books are closed.
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    cluster.sim.stop_traffic();

    let (truth, report) = cluster.stream_report("join", WAIT).await;
    report.assert_complete();
    report.assert_repeats_exact();

    let stats = cluster.sim.stats();
    assert_eq!(
        stats.identifies,
        u64::from(SHARDS),
        "moving shards to g4 cost IDENTIFYs (sessions per shard: {:?})",
        truth.shards_with_new_sessions()
    );
    assert_eq!(stats.pacing_violations, 0);
    assert!(
        truth.shards_with_new_sessions().is_empty(),
        "shards started a new session: {:?}",
        truth.shards_with_new_sessions()
    );
    let g4 = cluster.fleet.node("g4").metrics().await.unwrap();
    assert_eq!(g4.count("shardmesh_gateway_identifies_total"), 0);
    assert!(
        g4.count("shardmesh_gateway_resumes_total") >= 8,
        "g4 resumed {} sessions",
        g4.count("shardmesh_gateway_resumes_total")
    );
    assert_eq!(
        cluster
            .count_sum("shardmesh_gateway_sessions_lost_total")
            .await
            .unwrap(),
        0
    );
    let actions = cluster.actions().await;
    let handed_over = actions
        .iter()
        .filter(|action| action.action == "hand_over" && action.actor != "g4")
        .count();
    assert!(
        handed_over >= moved.len(),
        "{handed_over} hand_over actions for {} moved shards",
        moved.len()
    );
    assert!(
        actions.iter().all(|action| action.action != "session_lost"),
        "session_lost in the action log: {actions:?}"
    );
    cluster.assert_no_lease_lost().await;
    cluster.finish().await;
}
