//! What the mesh itself repeats never reaches the handler: a RESUME's replayed overlap
//! and a stale gateway owner's events are dropped, a new session is delivered, and
//! the marks survive in the checkpoint.

mod support;

use std::sync::Arc;
use std::time::Duration;

use shardmesh_harness::wait_for;
use shardmesh_store::{LeaseKey, LeaseState, Store};
use support::{Cluster, DEADLINE, Recorder, consumer, message_create, recording};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_stale_owners_are_dropped_and_a_new_session_is_delivered() {
    let mut cluster = Cluster::new("dedup", 1, &["a"]).await;
    let recorder = Arc::new(Recorder::default());
    let batch = |epoch: u64, session: &str, seqs: std::ops::RangeInclusive<u64>| {
        seqs.map(|seq| message_create(0, 1, epoch, session, seq))
            .collect::<Vec<_>>()
    };
    // Owner of epoch 1 publishes A 1..=10, then crashes.
    cluster.publish(batch(1, "A", 1..=5)).await;
    cluster.publish(batch(1, "A", 6..=10)).await;
    // Epoch 2 resumes A from the seq saved at its last renewal (5): Discord replays
    // 6..=10, which are duplicates, in the same batch as the new 11..=15.
    cluster.publish(batch(2, "A", 6..=15)).await;
    // The old owner had one more in its confirm window: stale.
    cluster.publish(batch(1, "A", 16..=16)).await;
    // A publisher retry of the new owner: duplicates.
    cluster.publish(batch(2, "A", 14..=15)).await;
    // The session is invalidated; epoch 2 identifies again: seq starts over.
    cluster.publish(batch(2, "B", 1..=3)).await;
    // A later owner (epoch 3) resumes B: the overlap is dropped, 4 is new.
    cluster.publish(batch(3, "B", 2..=4)).await;
    // And epoch 2's last word on B arrives late: stale.
    cluster.publish(batch(2, "B", 5..=5)).await;

    let node = cluster.start(
        "one",
        consumer("a"),
        recording("one", &recorder, Duration::ZERO),
    );
    let dropped = 5 + 1 + 2 + 2 + 1;
    wait_for("every message read", DEADLINE, || {
        let counters = node.counters();
        counters.delivered + counters.duplicates + counters.stale >= 15 + 4 + dropped
    })
    .await;
    let counters = node.counters();
    node.drain().await;

    let seen: Vec<(String, u64, u64)> = recorder
        .calls()
        .into_iter()
        .map(|seen| (seen.id.session, seen.id.seq, seen.epoch))
        .collect();
    let mut expected: Vec<(String, u64, u64)> = (1..=10).map(|seq| ("A".into(), seq, 1)).collect();
    expected.extend((11..=15).map(|seq| ("A".into(), seq, 2)));
    expected.extend((1..=3).map(|seq| ("B".into(), seq, 2)));
    expected.push(("B".into(), 4, 3));
    assert_eq!(seen, expected);
    assert_eq!(counters.delivered, 19, "{counters:?}");
    assert_eq!(counters.duplicates, 5 + 2 + 2, "{counters:?}");
    assert_eq!(counters.stale, 2, "{counters:?}");

    // The hand-over saved where the group stands: the last message and B's mark.
    let store = cluster.store().await;
    let lease = store
        .lease(&LeaseKey::Partition {
            group: "a".into(),
            partition: 0,
        })
        .await
        .unwrap()
        .unwrap();
    let LeaseState::Partition(checkpoint) = lease.state else {
        panic!("no checkpoint saved: {:?}", lease.state);
    };
    assert_eq!(checkpoint.offset, Some(7));
    let mark = &checkpoint.marks[&0];
    assert_eq!((mark.epoch, mark.session.as_str(), mark.seq), (3, "B", 4));
    assert_eq!(lease.owner, None, "released on drain");
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_reads_on_from_the_checkpoint() {
    let mut cluster = Cluster::new("restart", 2, &["a"]).await;
    let recorder = Arc::new(Recorder::default());
    let first = cluster.publish_traffic(4, 20).await;
    let node = cluster.start(
        "one",
        consumer("a"),
        recording("one", &recorder, Duration::ZERO),
    );
    wait_for("the first events handled", DEADLINE, || {
        recorder.len() as u64 >= first
    })
    .await;
    node.drain().await;

    for shard in 0..4 {
        let events = (21..=30)
            .map(|seq| message_create(shard, 4, 1, &format!("s{shard}"), seq))
            .collect();
        cluster.publish(events).await;
    }
    let again = cluster.start(
        "again",
        consumer("a"),
        recording("again", &recorder, Duration::ZERO),
    );
    wait_for("the new events handled", DEADLINE, || {
        recorder.len() as u64 >= first + 40
    })
    .await;
    let counters = again.counters();
    again.drain().await;
    assert!(recorder.counts().values().all(|count| *count == 1));
    assert_eq!(recorder.counts().len(), 120);
    recorder.assert_in_order();
    // It started after the checkpoint: nothing old was even read.
    assert_eq!(counters.duplicates, 0, "{counters:?}");
    assert_eq!(counters.delivered, 40, "{counters:?}");
    cluster.finish().await;
}
