//! Gateway nodes under traffic move shards by RESUME: a drained node's shards continue
//! on another node with nothing missing and nothing twice, and a crashed node's shards
//! resume from the last renewal with nothing missing and only exact repeats. Checked
//! against the simulator's ground truth and what the event streams hold.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use shardmesh_harness::wait_for;
use shardmesh_store::Store as _;
use support::{Cluster, DEADLINE, LEASE, MEMBERSHIP, assert_complete, copies, sim_config};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_node_hands_shards_over_by_resume_with_no_gap_and_no_repeat() {
    // Started together, so the first assignment already splits the shards.
    let mut cluster = Cluster::start_two("drain", sim_config(200.0)).await;
    let identified = cluster.sim.stats().identifies;
    // Hand over under traffic: every shard has confirmed some events first.
    wait_for("a confirmed events on every shard", DEADLINE, || {
        let statuses = cluster.node("a").shards();
        statuses.iter().all(|status| status.session.seq > 20)
    })
    .await;

    cluster.stop("a").await;
    wait_for("b holds all 8 shards, active", DEADLINE, || {
        cluster.settled(8)
    })
    .await;
    let resumed_at = cluster.node("b").shards();
    wait_for(
        "events flow on every shard after the hand-over",
        DEADLINE,
        || {
            let now = cluster.node("b").shards();
            now.iter()
                .zip(&resumed_at)
                .all(|(now, then)| now.session.seq >= then.session.seq + 10)
        },
    )
    .await;
    cluster.sim.stop_traffic();

    let (truth, events) = cluster.read_streams().await;
    assert_complete(&truth, &events);
    println!(
        "drain: {} dispatches, {} in the streams",
        truth.len(),
        events.len()
    );
    let repeats: Vec<_> = copies(&events)
        .into_iter()
        .filter(|(_, copies)| copies.len() > 1)
        .map(|(id, copies)| (id, copies.len()))
        .collect();
    assert!(
        repeats.is_empty(),
        "a drain repeated dispatches: {repeats:?}"
    );
    // Within a partition a shard's events never go back to an older owner's epoch.
    let mut epochs: BTreeMap<u32, u64> = BTreeMap::new();
    for envelope in &events {
        let last = epochs.entry(envelope.shard).or_default();
        assert!(
            envelope.epoch >= *last,
            "shard {} went back to epoch {}",
            envelope.shard,
            envelope.epoch
        );
        *last = envelope.epoch;
    }

    let stats = cluster.sim.stats();
    assert_eq!(stats.identifies, 8, "a hand-over cost an IDENTIFY");
    assert_eq!(identified, 8);
    assert!(stats.resumes >= 4, "{} resumes", stats.resumes);
    let b = cluster.node("b").counters();
    assert_eq!(b.sessions_lost, 0);
    assert!(b.sessions_resumed >= 4);
    let actions = cluster.store().await.recent_actions(200).await.unwrap();
    assert!(actions.iter().all(|action| action.action != "session_lost"));
    assert!(
        actions
            .iter()
            .filter(|action| action.actor == "a" && action.action == "hand_over")
            .count()
            >= 4
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_nodes_shards_resume_elsewhere_with_only_exact_repeats() {
    let mut cluster = Cluster::start_two("crash", sim_config(200.0)).await;
    // Let a renew at least once with events confirmed, so its saved seqs are not 0.
    let a_shards: Vec<u32> = cluster.active()["a"].clone();
    wait_for("a confirmed events on every shard", DEADLINE, || {
        cluster
            .node("a")
            .shards()
            .iter()
            .all(|status| status.session.seq > 20)
    })
    .await;

    let killed = Instant::now();
    cluster.kill("a").await;
    wait_for("b resumed all 8 shards", DEADLINE, || cluster.settled(8)).await;
    let took = killed.elapsed();
    let bound = Duration::from_millis(
        LEASE.duration_ms + MEMBERSHIP.node_timeout_ms + MEMBERSHIP.settle_delay_ms + 2_000,
    );
    assert!(
        took <= bound,
        "take-over took {took:?}, more than {bound:?}"
    );
    cluster.sim.stop_traffic();

    let (truth, events) = cluster.read_streams().await;
    assert_complete(&truth, &events);
    println!(
        "crash: take-over in {took:?}, {} dispatches, {} in the streams",
        truth.len(),
        events.len()
    );
    for (id, copies) in copies(&events) {
        let first = copies[0];
        for copy in &copies[1..] {
            assert_eq!(copy.payload, first.payload, "repeat of {id:?} differs");
            assert_eq!(copy.event_type, first.event_type);
        }
    }
    let stats = cluster.sim.stats();
    assert_eq!(stats.identifies, 8, "a take-over cost an IDENTIFY");
    assert!(stats.resumes >= a_shards.len() as u64);
    assert_eq!(cluster.node("b").counters().sessions_lost, 0);
    cluster.finish().await;
}
