//! The stream reader yields every offset exactly once, in order, across cuts.

mod support;

use std::time::Duration;

use shardmesh_broker::{Publisher, StartAt, StreamId, StreamReader};
use support::{proxied_broker, publish_all, shared_broker, topology};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_cut_three_times_yields_every_offset_once_in_order() {
    const COUNT: u64 = 15_000;
    let direct = shared_broker().await;
    let topology = topology("read-cut", 1, &direct);
    let mut publisher = Publisher::connect(&direct, &topology, CancellationToken::new())
        .await
        .unwrap();
    let run = publish_all(&mut publisher, COUNT, 200, |_| true).await;
    assert!(run.handed_back.is_empty());
    publisher.close().await;

    let (proxy, proxied) = proxied_broker().await;
    let mut reader = StreamReader::connect(
        &proxied,
        &topology,
        StreamId::Events(0),
        StartAt::First,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut events = reader.connection_events();
    let mut expected = 0;
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while expected < COUNT {
            let message = reader.next().await.unwrap();
            assert_eq!(message.offset, expected, "gap or repeat");
            expected += 1;
            if [3_000, 7_000, 11_000].contains(&expected) {
                proxy.cut();
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "read only {expected} of {COUNT} offsets in time"
    );
    assert_eq!(reader.last_offset(), Some(COUNT - 1));
    assert!(
        proxy.accepted() >= 4,
        "reader reconnected {} times",
        proxy.accepted() - 1
    );
    let mut losses = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, shardmesh_broker::ConnectionEvent::Lost { .. }) {
            losses += 1;
        }
    }
    assert_eq!(losses, 3, "each cut is reported once");
    reader.close().await;
    topology.delete(&direct).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_starts_at_an_offset_and_reports_undecodable_messages() {
    let config = shared_broker().await;
    let topology = topology("read-start", 1, &config);
    let mut publisher = Publisher::connect(&config, &topology, CancellationToken::new())
        .await
        .unwrap();
    publish_all(&mut publisher, 10, 100, |_| true).await;
    publisher
        .publish(shardmesh_broker::Outgoing {
            stream: StreamId::Events(0),
            source: 1,
            seq: 0,
            payload: b"not msgpack".to_vec(),
        })
        .await
        .unwrap();
    publish_all_more(&mut publisher).await;
    publisher.close().await;

    let mut reader = StreamReader::connect(
        &config,
        &topology,
        StreamId::Events(0),
        StartAt::Offset(7),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    for offset in 7..10 {
        let (at, batch) = reader.next_batch().await.unwrap();
        assert_eq!((at, support::seq_of(&batch)), (offset, offset));
    }
    match reader.next_batch().await {
        Err(shardmesh_broker::Error::Decode { offset, .. }) => assert_eq!(offset, 10),
        other => panic!("expected a decode error, got {other:?}"),
    }
    let (at, _) = reader.next_batch().await.unwrap();
    assert_eq!(at, 11, "reading goes on after an undecodable message");
    reader.close().await;
    topology.delete(&config).await.unwrap();
}

async fn publish_all_more(publisher: &mut Publisher) {
    publisher
        .publish(shardmesh_broker::Outgoing {
            stream: StreamId::Events(0),
            source: 1,
            seq: 1,
            payload: support::batch(11, 100),
        })
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(publisher.confirmed(1), Some(1));
}

#[tokio::test]
async fn next_start_skips_history_and_an_old_timestamp_reads_it() {
    let config = shared_broker().await;
    let topology = topology("read-next", 1, &config);
    let mut publisher = Publisher::connect(&config, &topology, CancellationToken::new())
        .await
        .unwrap();
    publish_all(&mut publisher, 5, 100, |_| true).await;

    let mut from_now = StreamReader::connect(
        &config,
        &topology,
        StreamId::Events(0),
        StartAt::Next,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut from_epoch = StreamReader::connect(
        &config,
        &topology,
        StreamId::Events(0),
        StartAt::Timestamp(0),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    publisher
        .publish(shardmesh_broker::Outgoing {
            stream: StreamId::Events(0),
            source: 0,
            seq: 5,
            payload: support::batch(5, 100),
        })
        .await
        .unwrap();
    publisher.flush().await.unwrap();

    let (offset, batch) = from_now.next_batch().await.unwrap();
    assert_eq!((offset, support::seq_of(&batch)), (5, 5));
    for expected in 0..=5 {
        assert_eq!(from_epoch.next().await.unwrap().offset, expected);
    }
    from_now.close().await;
    from_epoch.close().await;
    publisher.close().await;
    topology.delete(&config).await.unwrap();
}
