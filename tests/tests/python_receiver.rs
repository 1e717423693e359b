//! A bot in Python behind the HTTP sink, as README's "A bot in another language" runs
//! it: simulator → gateway node → streams → `shardmesh consumer --sink http://...` →
//! `python3 examples/python/receiver.py`. Mid-stream the consumer node is killed
//! (SIGKILL) at a moment it has handled events its checkpoint does not cover yet, and a
//! replacement sends those events again: the receiver answers them without handling
//! them twice, so its log of handled events holds every dispatch the simulator sent
//! exactly once, in seq order per shard.

use std::collections::BTreeMap;
use std::time::Duration;

use shardmesh_store::Checkpoint;
use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::deliveries::{GroupReport, Upto, wait_caught_up};
use shardmesh_tests::python_receiver::PythonReceiver;
use shardmesh_tests::sink::{EventSink as _, SinkEvent};
use shardmesh_tests::{
    ConsumerTuning, Id, TestCluster, Timings, Truth, broker_url, sim_config, wait_until,
};
use tokio::time::Instant;

const SHARDS: u32 = 8;
const PARTITIONS: u32 = 4;
const RATE: f64 = 200.0;
const GROUP: &str = "py";
const WAIT: Duration = Duration::from_secs(60);
/// Events the receiver handles between two looks at the consumer node.
const BETWEEN_LOOKS: usize = 100;
/// Looks at a frozen consumer node before giving up on finding events it handled but
/// did not checkpoint yet (one in a few hundred falls just after a checkpoint).
const LOOKS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_receiver_handles_every_dispatch_once_in_order_across_a_consumer_crash() {
    let started = Instant::now();
    let sim = sim_config(SHARDS, SHARDS, RATE);
    let mut cluster = TestCluster::start("pyrecv", sim, PARTITIONS, Timings::FAST).await;
    cluster.topology = cluster.topology.clone().with_dead_letters(GROUP);
    cluster.start_nodes(&["g1"]).await;
    cluster.wait_settled(SHARDS as usize, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;

    let receiver = PythonReceiver::start(&cluster.dir(), GROUP).await;
    // The shipped checkpoint cadence: what a crash repeats is what a user's would.
    let mut consumers =
        ConsumerNodes::new(&cluster, receiver, ConsumerTuning::DEFAULT, &broker_url());
    consumers.start(&[("c1", GROUP)]).await;
    consumers.wait_settled(GROUP, WAIT).await;

    let unsaved = kill_with_unsaved_events(&mut consumers, "c1").await;
    let killed = Instant::now();
    consumers.start(&[("c2", GROUP)]).await;
    consumers.wait_settled(GROUP, WAIT).await;
    println!(
        "python receiver: c1 killed with {} handled events not checkpointed; c2 owns its \
         partitions {:?} later",
        unsaved.len(),
        killed.elapsed()
    );
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    cluster.sim.stop_traffic();
    wait_caught_up(&cluster.sim, consumers.sink(), &[GROUP], Upto::All, WAIT).await;

    let sent = Truth::read(&cluster.sim).dispatches;
    let report = GroupReport::new(GROUP, PARTITIONS, &sent, &consumers.sink().posts_since(0));
    let duplicates = consumers.sink().duplicates();
    println!(
        "python receiver: {}; {duplicates} redeliveries answered without handling them again \
         (took {:?})",
        report.summary(),
        started.elapsed()
    );
    report.assert_complete();
    report.assert_no_repeats();
    // Each of them came again; so may, at most, one more per partition: the one in
    // flight when c1 froze, logged just after the look.
    let most = unsaved.len() + PARTITIONS as usize;
    assert!(
        (unsaved.len()..=most).contains(&duplicates),
        "expected the receiver to turn away between {} and {most} redeliveries (the events c1 \
         handled after its last checkpoint, first {:?}, and those in flight); its stderr counts \
         {duplicates}",
        unsaved.len(),
        &unsaved[..unsaved.len().min(5)]
    );
    let errors = consumers.sink().error_lines();
    assert!(errors.is_empty(), "the receiver logged errors: {errors:#?}");
    drop(consumers);
    cluster.finish().await;
}

/// Kills consumer `node` (SIGKILL) at a moment the receiver has handled events that
/// the group's checkpoints do not cover, and returns those events: whoever takes the
/// partitions over must deliver them again. To find such a moment, the node is frozen
/// (SIGSTOP, so it cannot checkpoint while the store is read) and thawed again when a
/// checkpoint happened to cover everything.
///
/// # Panics
///
/// When no such moment comes in [`LOOKS`] looks.
async fn kill_with_unsaved_events(
    consumers: &mut ConsumerNodes<PythonReceiver>,
    node: &str,
) -> Vec<Id> {
    for look in 1..=LOOKS {
        let seen = consumers.sink().posts_since(0).len();
        wait_until(
            &format!("the receiver handling {BETWEEN_LOOKS} more events"),
            WAIT,
            || {
                let more = consumers.sink().posts_since(seen).len();
                if more >= BETWEEN_LOOKS {
                    Ok(())
                } else {
                    Err(format!("{more} more"))
                }
            },
        )
        .await;
        consumers.fleet.node(node).freeze();
        let checkpoints = consumers
            .checkpoints(GROUP)
            .await
            .expect("read the group's checkpoints");
        let unsaved: Vec<Id> = consumers
            .sink()
            .posts_since(0)
            .iter()
            .filter(|post| !covered(&checkpoints, &post.event))
            .map(|post| post.event.id())
            .collect();
        if !unsaved.is_empty() {
            consumers.fleet.kill(node).await;
            println!(
                "python receiver: look {look} found {} events handled since {node}'s last \
                 checkpoint",
                unsaved.len()
            );
            return unsaved;
        }
        consumers.fleet.node(node).thaw();
    }
    panic!("in {LOOKS} looks, {node}'s checkpoints always covered every event it had handled");
}

/// Whether the checkpoints cover `event`: its shard's mark is of its session, at or
/// past its seq, so the consumer's rule (`shardmesh_consumer::dedup::judge`) drops it
/// as a duplicate. Everything else a successor delivers again.
fn covered(checkpoints: &BTreeMap<u32, Checkpoint>, event: &SinkEvent) -> bool {
    checkpoints
        .get(&event.partition)
        .and_then(|checkpoint| checkpoint.marks.get(&event.shard))
        .is_some_and(|mark| mark.session == event.session && event.seq <= mark.seq)
}
