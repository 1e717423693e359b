//! Nothing is dropped silently: events the handler keeps failing on (or panicking on)
//! and messages that are not event batches end in the group's dead-letter stream with
//! the reason, and everything else is delivered once.

mod support;

use std::sync::Arc;

use shardmesh_consumer::Delivery;
use shardmesh_harness::wait_for;
use support::{Cluster, DEADLINE, Recorder, consumer, message_create};

const GROUP: &str = "a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenth_event_failing_lands_in_the_dead_letter_stream_with_the_error() {
    let mut cluster = Cluster::new("dlq-fail", 2, &[GROUP]).await;
    let recorder = Arc::new(Recorder::default());
    let expected = cluster.publish_traffic(2, 50).await;
    let calls = Arc::clone(&recorder);
    let node = cluster.start("one", consumer(GROUP), move |delivery: Delivery| {
        calls.record("one", &delivery);
        async move {
            if delivery.seq().is_multiple_of(10) {
                Err(format!(
                    "refusing seq {} of shard {}",
                    delivery.seq(),
                    delivery.shard()
                ))
            } else {
                Ok(())
            }
        }
    });
    let counters = node.settle_then_drain(expected).await;
    assert_eq!(
        (counters.delivered, counters.dead_lettered),
        (90, 10),
        "{counters:?}"
    );
    assert_eq!(counters.retries, 10 * 2, "3 attempts each: {counters:?}");

    let letters = cluster.dead_letters(GROUP, 10).await;
    let mut failed: Vec<(u32, u64)> = Vec::new();
    for (_, letter) in &letters {
        let event = letter.event.as_ref().expect("the envelope is kept");
        assert_eq!(
            letter.error,
            format!("refusing seq {} of shard {}", event.seq, event.shard)
        );
        assert_eq!(letter.attempts, 3);
        assert_eq!(
            (letter.cluster.as_str(), letter.group.as_str()),
            (cluster.name.as_str(), GROUP)
        );
        assert_eq!(letter.partition, event.shard % 2);
        assert_eq!(letter.node, "one");
        assert!(letter.raw.is_none());
        failed.push((event.shard, event.seq));
    }
    failed.sort_unstable();
    let expected_failed: Vec<(u32, u64)> = (0..2)
        .flat_map(|shard| (1..=5).map(move |tenth| (shard, tenth * 10)))
        .collect();
    assert_eq!(failed, expected_failed);

    let counts = recorder.counts();
    assert_eq!(counts.len() as u64, expected);
    for (id, count) in counts {
        let wanted = if id.seq.is_multiple_of(10) { 3 } else { 1 };
        assert_eq!(count, wanted, "{id:?}");
    }
    recorder.assert_in_order_allowing_retries();
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_caught_and_its_event_dead_lettered() {
    let mut cluster = Cluster::new("dlq-panic", 1, &[GROUP]).await;
    let recorder = Arc::new(Recorder::default());
    let expected = cluster.publish_traffic(1, 30).await;
    let calls = Arc::clone(&recorder);
    let node = cluster.start("one", consumer(GROUP), move |delivery: Delivery| {
        calls.record("one", &delivery);
        async move {
            assert!(
                !delivery.seq().is_multiple_of(10),
                "cannot stand seq {}",
                delivery.seq()
            );
            Ok::<(), String>(())
        }
    });
    let counters = node.settle_then_drain(expected).await;
    assert_eq!(
        (counters.delivered, counters.dead_lettered),
        (27, 3),
        "{counters:?}"
    );
    assert_eq!(counters.panics, 9, "{counters:?}");

    let letters = cluster.dead_letters(GROUP, 3).await;
    let seqs: Vec<u64> = letters
        .iter()
        .map(|(_, letter)| letter.event.as_ref().unwrap().seq)
        .collect();
    assert_eq!(seqs, [10, 20, 30]);
    for (_, letter) in &letters {
        let seq = letter.event.as_ref().unwrap().seq;
        assert_eq!(
            letter.error,
            format!("handler panicked: cannot stand seq {seq}")
        );
    }
    assert_eq!(recorder.counts().len() as u64, expected);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_dead_lettered_with_its_offset_and_the_rest_delivered() {
    let mut cluster = Cluster::new("dlq-garbage", 1, &[GROUP]).await;
    let recorder = Arc::new(Recorder::default());
    cluster.publish(vec![message_create(0, 1, 1, "A", 1)]).await;
    cluster.publish(vec![message_create(0, 1, 1, "A", 2)]).await;
    let garbage = b"\x92\x01not an event batch".to_vec();
    cluster.publish_raw(0, garbage.clone()).await;
    cluster
        .publish(vec![
            message_create(0, 1, 1, "A", 3),
            message_create(0, 1, 1, "A", 4),
        ])
        .await;
    let node = cluster.start(
        "one",
        consumer(GROUP),
        support::recording("one", &recorder, std::time::Duration::ZERO),
    );
    wait_for("the events around the garbage delivered", DEADLINE, || {
        recorder.len() >= 4
    })
    .await;
    wait_for("the garbage dead-lettered", DEADLINE, || {
        node.counters().dead_lettered >= 1
    })
    .await;
    let counters = node.counters();
    node.drain().await;
    assert_eq!(counters.undecodable, 1, "{counters:?}");

    let letters = cluster.dead_letters(GROUP, 1).await;
    let (_, letter) = &letters[0];
    assert_eq!(letter.offset, 2, "the garbage's own offset");
    assert_eq!(letter.partition, 0);
    assert_eq!(letter.raw.as_deref(), Some(garbage.as_slice()));
    assert!(letter.event.is_none());
    assert_eq!(letter.attempts, 0);
    assert!(
        letter.error.contains("malformed event batch message"),
        "{}",
        letter.error
    );
    let seqs: Vec<u64> = recorder.calls().iter().map(|seen| seen.id.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    cluster.finish().await;
}
