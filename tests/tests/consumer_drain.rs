//! A consumer node stopped with SIGTERM under traffic, in the middle of a slow handler
//! call, hands its partitions over with a final checkpoint: it exits 0, the store holds a checkpoint at or past the last event
//! it handled from each partition, and the group handles every dispatch exactly once —
//! zero repeats, nothing missing, in seq order per session.

use std::collections::BTreeMap;
use std::time::Duration;

use shardmesh_store::{LeaseKey, LeaseState, Store};
use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::deliveries::{GroupReport, Upto, wait_caught_up};
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{
    ConsumerTuning, TestCluster, Timings, Truth, broker_url, eventually, sim_config,
};
use tokio::time::Instant;

const SHARDS: u32 = 16;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn a_drained_consumer_hands_over_with_a_final_checkpoint_and_nothing_repeats() {
    let started = Instant::now();
    let sim = sim_config(SHARDS, SHARDS, 200.0);
    let mut cluster = TestCluster::start("cdrain", sim, PARTITIONS, Timings::FAST).await;
    cluster.topology = cluster.topology.clone().with_dead_letters("a");
    cluster.start_nodes(&["g1"]).await;
    cluster.wait_settled(SHARDS as usize, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    let sink = Sink::start(None).await;
    let mut consumers =
        ConsumerNodes::new(&cluster, sink, ConsumerTuning::PER_EVENT, &broker_url());
    consumers.start(&[("c1", "a"), ("c2", "a")]).await;
    let owners = consumers.wait_settled("a", WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 600, WAIT)
        .await;

    // c1's handler now takes 50 ms per event while its partitions bring ~50 events/s
    // each: it falls behind and has an event in flight when SIGTERM comes, which the
    // hand-over must let finish and checkpoint rather than leave to the next owner.
    consumers.sink().set_delay("c1", Duration::from_millis(50));
    let slow = consumers.sink().count();
    eventually("c1 handling events slowly", WAIT, || async {
        let handled = consumers
            .sink()
            .posts_since(slow)
            .iter()
            .filter(|post| post.node == "c1")
            .count();
        if handled >= 10 {
            Ok(())
        } else {
            Err(format!("c1 handled {handled} since"))
        }
    })
    .await;
    let drained = Instant::now();
    let status = consumers.fleet.terminate("c1", WAIT).await;
    let took = drained.elapsed();
    assert!(
        status.success(),
        "expected exit code 0 after SIGTERM; c1 exited with {status}"
    );
    let errors = consumers.fleet.ended("c1").error_lines();
    assert!(
        errors.is_empty(),
        "c1's clean drain logged errors: {errors:#?}"
    );
    // Right after the exit: each partition c1 held carries a checkpoint at or past the
    // last event c1 handled from it (released, or already taken over from there).
    let mut last_handled: BTreeMap<u32, u64> = BTreeMap::new();
    for post in consumers
        .sink()
        .posts()
        .iter()
        .filter(|post| post.node == "c1" && post.handled())
    {
        last_handled.insert(post.event.partition, post.event.offset);
    }
    let leases = cluster.store.leases().await.expect("read the leases");
    for (partition, owner) in &owners {
        if owner != "c1" {
            continue;
        }
        let saved = leases
            .iter()
            .find_map(|lease| match (&lease.key, &lease.state) {
                (
                    LeaseKey::Partition {
                        group,
                        partition: p,
                    },
                    LeaseState::Partition(checkpoint),
                ) if group == "a" && p == partition => {
                    Some((lease.owner.clone(), checkpoint.offset))
                }
                _ => None,
            });
        let expected = last_handled.get(partition).copied();
        assert!(
            saved
                .as_ref()
                .is_some_and(|(_, offset)| *offset >= expected),
            "expected partition {partition}'s checkpoint at or past offset {expected:?} (the last \
             event c1 handled from it) once c1 exited; the store holds (owner, offset) {saved:?}"
        );
    }
    let owners = consumers.wait_settled("a", WAIT).await;
    println!(
        "drain: c1 exited 0 {took:?} after SIGTERM; c2 owns {:?} {:?} after it",
        owners.keys().collect::<Vec<_>>(),
        drained.elapsed()
    );
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    cluster.sim.stop_traffic();

    wait_caught_up(&cluster.sim, consumers.sink(), &["a"], Upto::All, WAIT).await;
    assert!(
        consumers.sink().malformed().is_empty(),
        "malformed POSTs: {:?}",
        consumers.sink().malformed()
    );
    let report = GroupReport::new(
        "a",
        PARTITIONS,
        &Truth::read(&cluster.sim).dispatches,
        &consumers.sink().posts(),
    );
    println!("drain: {} (took {:?})", report.summary(), started.elapsed());
    report.assert_complete();
    report.assert_no_repeats();
    assert!(
        report.per_node.get("c1").is_some_and(|count| *count > 0),
        "c1 handled nothing before it was drained: {:?}",
        report.per_node
    );
    drop(consumers);
    cluster.finish().await;
}
