//! The confirmed publisher loses nothing when its connection is cut.

mod support;

use std::time::Duration;

use shardmesh_broker::{BrokerConfig, Outgoing, Publisher, PublisherEvent, StreamId};
use support::{batch, proxied_broker, publish_all, read_until, shared_broker, topology};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_lose_nothing_and_every_repeat_was_handed_back() {
    const COUNT: u64 = 100_000;
    let direct = shared_broker().await;
    let (proxy, proxied) = proxied_broker().await;
    let topology = topology("pub-cut", 1, &direct);

    let started = std::time::Instant::now();
    let mut publisher = Publisher::connect(&proxied, &topology, CancellationToken::new())
        .await
        .unwrap();
    let run = publish_all(&mut publisher, COUNT, 200, |seq| {
        if seq > 0 && seq % 25_000 == 0 {
            proxy.cut();
        }
        true
    })
    .await;
    assert!(
        run.losses >= 3,
        "expected 3 cuts to be noticed, saw {}",
        run.losses
    );
    assert!(
        proxy.accepted() >= 4,
        "publisher reconnected {} times",
        proxy.accepted() - 1
    );

    // A marker after everything: all copies of every message are before it.
    publisher
        .publish(Outgoing {
            stream: StreamId::Events(0),
            source: 0,
            seq: COUNT,
            payload: batch(COUNT, 200),
        })
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(publisher.confirmed(0), Some(COUNT));
    assert!(publisher.close().await.is_empty());

    eprintln!("published in {:?}", started.elapsed());
    let seen = read_until(&direct, &topology, COUNT, Duration::from_secs(60)).await;
    let missing: Vec<_> = (0..COUNT)
        .filter(|seq| !seen.contains_key(seq))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "missing seqs, first ones: {missing:?}");
    let unreported: Vec<_> = seen
        .iter()
        .filter(|&(seq, &copies)| copies > 1 && !run.handed_back.contains(seq))
        .map(|(seq, _)| *seq)
        .take(10)
        .collect();
    assert!(
        unreported.is_empty(),
        "repeated without being handed back: {unreported:?}"
    );
    let repeats = seen.values().filter(|&&copies| copies > 1).count();
    eprintln!("read back at {:?}", started.elapsed());
    eprintln!(
        "{} handed back, {repeats} stored twice or more",
        run.handed_back.len()
    );

    topology.delete(&direct).await.unwrap();
}

#[tokio::test]
async fn unroutable_messages_are_returned_not_confirmed() {
    let config = shared_broker().await;
    let topology = topology("pub-return", 1, &config);
    let mut publisher = Publisher::connect(&config, &topology, CancellationToken::new())
        .await
        .unwrap();
    // No dead-letter stream was declared for this group: nothing routes there.
    let message = Outgoing {
        stream: StreamId::DeadLetter("nobody".into()),
        source: 7,
        seq: 1,
        payload: b"lost?".to_vec(),
    };
    publisher.publish(message.clone()).await.unwrap();
    publisher.flush().await.unwrap();
    match publisher.take_events().as_slice() {
        [
            PublisherEvent::Returned {
                message: returned,
                reply_code: 312,
                ..
            },
        ] => {
            assert_eq!(*returned, message);
        }
        other => panic!("expected one NO_ROUTE return, got {other:?}"),
    }
    assert_eq!(
        publisher.confirmed(7),
        None,
        "a returned message is not confirmed"
    );
    publisher.close().await;
    topology.delete(&config).await.unwrap();
}

#[tokio::test]
async fn a_full_window_makes_the_caller_wait() {
    let config = BrokerConfig {
        confirm_window: 8,
        ..shared_broker().await
    };
    let topology = topology("pub-window", 1, &config);
    let mut publisher = Publisher::connect(&config, &topology, CancellationToken::new())
        .await
        .unwrap();
    for seq in 0..200 {
        publisher
            .publish(Outgoing {
                stream: StreamId::Events(0),
                source: 1,
                seq,
                payload: batch(seq, 100),
            })
            .await
            .unwrap();
        assert!(
            publisher.in_flight() <= 8,
            "{} in flight",
            publisher.in_flight()
        );
    }
    publisher.flush().await.unwrap();
    assert_eq!(publisher.in_flight(), 0);
    assert_eq!(publisher.confirmed(1), Some(199));
    publisher.close().await;
    topology.delete(&config).await.unwrap();
}
