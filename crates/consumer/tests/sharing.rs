//! Consumer nodes of a group share the partitions through leases, hand them over on
//! drain without repeating anything, and groups read the same streams independently.

mod support;

use std::sync::Arc;
use std::time::Duration;

use shardmesh_harness::wait_for;
use support::{Cluster, DEADLINE, Recorder, consumer, recording};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_four_partitions_and_handle_every_event_once_in_order() {
    let mut cluster = Cluster::new("share", 4, &["a"]).await;
    let recorder = Arc::new(Recorder::default());
    // Some events wait in the streams before any consumer runs, more come later.
    let mut expected = cluster.publish_traffic(8, 30).await;
    let one = cluster.start(
        "one",
        consumer("a"),
        recording("one", &recorder, Duration::ZERO),
    );
    let two = cluster.start(
        "two",
        consumer("a"),
        recording("two", &recorder, Duration::ZERO),
    );
    wait_for("both nodes hold two partitions", DEADLINE, || {
        one.owns() == 2 && two.owns() == 2
    })
    .await;
    for shard in 0..8 {
        let events = (31..=40)
            .map(|seq| support::message_create(shard, 8, 1, &format!("s{shard}"), seq))
            .collect();
        cluster.publish(events).await;
        expected += 10;
    }
    wait_for("every event handled", DEADLINE, || {
        recorder.len() as u64 >= expected
    })
    .await;
    one.drain().await;
    two.drain().await;

    let counts = recorder.counts();
    assert_eq!(counts.len() as u64, expected, "events missing");
    assert!(
        counts.values().all(|count| *count == 1),
        "an event was handled twice"
    );
    let per_shard = recorder.assert_in_order();
    assert!(per_shard.values().all(|seqs| seqs.len() == 40));
    let calls = recorder.calls();
    assert!(
        ["one", "two"]
            .iter()
            .all(|node| calls.iter().any(|seen| seen.node == *node)),
        "one node did all the work"
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_over_mid_stream_with_no_repeat_and_no_gap() {
    let mut cluster = Cluster::new("drain", 4, &["a"]).await;
    let recorder = Arc::new(Recorder::default());
    let expected = cluster.publish_traffic(8, 60).await;
    // A slow handler, so the drain lands while every partition is mid-stream.
    let pause = Duration::from_millis(5);
    let one = cluster.start("one", consumer("a"), recording("one", &recorder, pause));
    let two = cluster.start("two", consumer("a"), recording("two", &recorder, pause));
    wait_for(
        "one handled 30 events while holding two partitions",
        DEADLINE,
        || one.owns() == 2 && recorder.calls().iter().filter(|s| s.node == "one").count() >= 30,
    )
    .await;
    let handed_over = one.counters();
    one.drain().await;
    let by_one = recorder.calls().iter().filter(|s| s.node == "one").count();
    assert!(
        (by_one as u64) < expected / 2,
        "the drain came too late to be mid-stream ({by_one} handled, {handed_over:?})"
    );
    wait_for("every event handled", DEADLINE, || {
        recorder.len() as u64 >= expected
    })
    .await;
    wait_for("two holds all four partitions", DEADLINE, || {
        two.owns() == 4
    })
    .await;
    let two_counters = two.counters();
    two.drain().await;

    let counts = recorder.counts();
    let repeats: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert!(repeats.is_empty(), "repeated after hand-over: {repeats:?}");
    assert_eq!(counts.len() as u64, expected, "events missing");
    recorder.assert_in_order();
    // The final checkpoint carried the marks: nothing re-read was even a duplicate to drop.
    assert_eq!(two_counters.duplicates, 0, "{two_counters:?}");
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_read_the_same_streams_independently() {
    let mut cluster = Cluster::new("groups", 2, &["a", "b"]).await;
    let in_a = Arc::new(Recorder::default());
    let in_b = Arc::new(Recorder::default());
    let expected = cluster.publish_traffic(4, 25).await;
    let a = cluster.start("a1", consumer("a"), recording("a1", &in_a, Duration::ZERO));
    let b = cluster.start("b1", consumer("b"), recording("b1", &in_b, Duration::ZERO));
    wait_for("both groups handled everything", DEADLINE, || {
        in_a.len() as u64 >= expected && in_b.len() as u64 >= expected
    })
    .await;
    assert_eq!(a.owns(), 2, "group a's node holds both partitions");
    assert_eq!(b.owns(), 2, "group b's node holds both partitions");
    a.drain().await;
    b.drain().await;
    for recorder in [&in_a, &in_b] {
        let counts = recorder.counts();
        assert_eq!(counts.len() as u64, expected);
        assert!(counts.values().all(|count| *count == 1));
        recorder.assert_in_order();
    }
    cluster.finish().await;
}
