//! SIGKILL one of three gateway nodes under traffic: once its leases lapse the others
//! resume its shards (no IDENTIFY) within lease + settle time, nothing is missing from
//! the streams, and the replayed overlap is made of exact repeats.

use std::collections::BTreeSet;
use std::time::Duration;

use shardmesh_tests::{TestCluster, Timings, sim_config};
use tokio::time::Instant;

const SHARDS: u32 = 32;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);
/// Room on top of lease + settle for connecting and resuming on two busy cores.
const MARGIN: Duration = Duration::from_millis(2_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_shards_resume_elsewhere_with_only_exact_repeats() {
    let timings = Timings::FAST;
    let sim = sim_config(SHARDS, SHARDS, 200.0);
    let mut cluster = TestCluster::start("crash", sim, PARTITIONS, timings).await;
    cluster.start_nodes(&["g1", "g2", "g3"]).await;
    let owners = cluster.wait_settled(11, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    // Renewals have saved confirmed seqs, so the take-over resumes mid-session.
    cluster.wait_sessions_saved(5, WAIT).await;
    // A few seconds of traffic on every shard before the event.
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 600, WAIT)
        .await;
    let victims: BTreeSet<u32> = owners
        .iter()
        .filter(|(_, owner)| *owner == "g2")
        .map(|(shard, _)| *shard)
        .collect();
    assert!(!victims.is_empty(), "g2 owns nothing: {owners:?}");

    let killed_at = cluster.sim.stats().truth_records;
    let killed = Instant::now();
    cluster.fleet.kill("g2").await;
    cluster.wait_resumed(&victims, killed_at, WAIT).await;
    let took = killed.elapsed();
    let bound = Duration::from_millis(timings.lease_ms + timings.settle_ms) + MARGIN;
    println!(
        "crash: {} shards of g2 resumed on g1/g3 {took:?} after SIGKILL",
        victims.len()
    );
    assert!(
        took <= bound,
        "take-over took {took:?}; expected within lease + settle + margin = {bound:?}"
    );
    let owners = cluster.wait_settled(16, WAIT).await;
    assert!(owners.values().all(|owner| owner != "g2"), "{owners:?}");
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    cluster.sim.stop_traffic();

    let (truth, report) = cluster.stream_report("crash", WAIT).await;
    report.assert_complete();
    report.assert_repeats_exact();
    let stats = cluster.sim.stats();
    assert_eq!(
        stats.identifies,
        u64::from(SHARDS),
        "the take-over cost IDENTIFYs (sessions per shard: {:?})",
        truth.shards_with_new_sessions()
    );
    assert!(
        stats.resumes >= victims.len() as u64,
        "{} resumes for {} shards taken over",
        stats.resumes,
        victims.len()
    );
    assert_eq!(
        cluster
            .count_sum("shardmesh_gateway_sessions_lost_total")
            .await
            .unwrap(),
        0
    );
    let actions = cluster.actions().await;
    assert!(
        actions.iter().all(|action| action.action != "session_lost"),
        "session_lost in the action log: {actions:?}"
    );
    cluster.assert_no_lease_lost().await;
    cluster.finish().await;
}
