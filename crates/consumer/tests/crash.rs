//! A killed consumer node's partitions are taken over once its leases expire, from its
//! last checkpoint: nothing is missing, and only what it handled after that checkpoint
//! (with per-event checkpoints: the event in flight) comes again.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shardmesh_harness::wait_for;
use support::{Cluster, DEADLINE, Recorder, consumer, recording};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_taken_over_from_its_last_checkpoint() {
    let mut cluster = Cluster::new("crash", 4, &["a"]).await;
    let recorder = Arc::new(Recorder::default());
    let expected = cluster.publish_traffic(8, 60).await;
    let config = shardmesh_consumer::ConsumerConfig {
        checkpoint_every_events: 1,
        ..consumer("a")
    };
    let pause = Duration::from_millis(5);
    let victim = cluster.start(
        "victim",
        config.clone(),
        recording("victim", &recorder, pause),
    );
    let heir = cluster.start("heir", config, recording("heir", &recorder, pause));
    wait_for(
        "the victim handled 30 events while holding two partitions",
        DEADLINE,
        || {
            victim.owns() == 2
                && recorder
                    .calls()
                    .iter()
                    .filter(|seen| seen.node == "victim")
                    .count()
                    >= 30
        },
    )
    .await;
    victim.kill().await;
    let by_victim = recorder
        .calls()
        .iter()
        .filter(|seen| seen.node == "victim")
        .count();
    wait_for("every event handled", DEADLINE, || {
        recorder.counts().len() as u64 >= expected
    })
    .await;
    wait_for("the heir holds all four partitions", DEADLINE, || {
        heir.owns() == 4
    })
    .await;
    heir.drain().await;

    assert!(
        (by_victim as u64) < expected / 2,
        "the kill was not mid-stream"
    );
    let calls = recorder.calls();
    let mut first_handler: HashMap<_, &str> = HashMap::new();
    let mut repeats_per_partition: HashMap<u32, usize> = HashMap::new();
    for seen in &calls {
        if let Some(first) = first_handler.get(&seen.id) {
            assert_eq!(
                *first, "victim",
                "{:?} repeated, first handled by the heir",
                seen.id
            );
            assert_eq!(seen.node, "heir", "{:?} repeated by the victim", seen.id);
            *repeats_per_partition.entry(seen.partition).or_default() += 1;
        } else {
            first_handler.insert(seen.id.clone(), &seen.node);
        }
    }
    assert_eq!(first_handler.len() as u64, expected, "events missing");
    eprintln!("repeats per partition after the kill: {repeats_per_partition:?}");
    // With a checkpoint per event, only the event in flight at the kill comes again
    // (one more if a lease renewal carrying the previous checkpoint landed just after
    // the last per-event one).
    assert!(
        repeats_per_partition.values().all(|repeats| *repeats <= 2),
        "{repeats_per_partition:?}"
    );
    recorder.assert_in_order_allowing_retries();
    cluster.finish().await;
}
