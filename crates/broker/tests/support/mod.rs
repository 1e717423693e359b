//! The broker tests' own pieces on top of `shardmesh-harness`: configs with quick
//! reconnects, a proxied broker, a private broker node, and encoded batches.

#![allow(dead_code, clippy::missing_panics_doc)]

use std::time::Duration;

use shardmesh_broker::{BrokerConfig, BrokerUrl, Outgoing, PublisherEvent, Topology};
// Each test binary uses its own share of these.
#[allow(unused_imports)]
pub use shardmesh_harness::{FaultProxy, PrivateBroker, unique_name, wait_for, within};
use shardmesh_harness::{broker_authority, require_broker};
use shardmesh_proto::{EventBatch, EventEnvelope};
use tokio_util::sync::CancellationToken;

/// A config for `url` with quick reconnects.
pub fn config_for(url: &str) -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(url),
        connect_timeout_ms: 3_000,
        backoff_min_ms: 20,
        backoff_max_ms: 500,
        ..BrokerConfig::default()
    }
}

/// The shared broker's config; panics with the reason if the broker is unreachable.
pub async fn shared_broker() -> BrokerConfig {
    config_for(&require_broker().await)
}

/// A fault proxy in front of the shared broker, and a config that reaches the broker
/// through it.
pub async fn proxied_broker() -> (FaultProxy, BrokerConfig) {
    let url = require_broker().await;
    let upstream = broker_authority(&url);
    let proxy = FaultProxy::start(&upstream).await;
    let proxied = config_for(&proxy.rewrite(&url, &upstream));
    (proxy, proxied)
}

/// A fresh topology of `partitions` streams on the cluster `unique_cluster(prefix)`.
pub fn topology(prefix: &str, partitions: u32, config: &BrokerConfig) -> Topology {
    Topology::new(&unique_name(prefix), partitions, config).unwrap()
}

/// An encoded one-event batch whose seq is `seq`, padded to about `size` bytes.
pub fn batch(seq: u64, size: usize) -> Vec<u8> {
    let envelope = EventEnvelope {
        shard: 0,
        shard_count: 1,
        epoch: 1,
        session: "s".into(),
        seq,
        event_type: "MESSAGE_CREATE".into(),
        guild_id: None,
        received_at_ms: 0,
        payload: format!("{{\"pad\":\"{}\"}}", "x".repeat(size.saturating_sub(120))),
    };
    shardmesh_proto::encode(&EventBatch::new(0, "test", vec![envelope])).unwrap()
}

/// The seq of a batch made by [`batch`].
pub fn seq_of(batch: &EventBatch) -> u64 {
    batch.events[0].seq
}

/// Queues handed-back messages for re-publishing, oldest first.
fn collect(
    events: Vec<PublisherEvent>,
    retry: &mut std::collections::VecDeque<Outgoing>,
    run: &mut PublishRun,
) {
    for event in events {
        let messages = match event {
            PublisherEvent::Unconfirmed { messages, .. } => messages,
            PublisherEvent::Returned { message, .. } | PublisherEvent::Nacked { message } => {
                vec![message]
            }
            other => panic!("unexpected event {other:?}"),
        };
        // Handed-back messages are older than anything still waiting for a retry.
        for message in messages.into_iter().rev() {
            run.handed_back.insert(message.seq);
            retry.push_front(message);
        }
    }
}

/// What [`publish_all`] observed.
#[derive(Debug, Default)]
pub struct PublishRun {
    /// Seqs handed back (unconfirmed, returned or nacked) at least once.
    pub handed_back: std::collections::HashSet<u64>,
    /// Connection losses reported through errors.
    pub losses: usize,
    /// Seqs published (`0..published`), all confirmed.
    pub published: u64,
}

/// Publishes seqs `0..count` of source 0 to partition 0, re-publishing everything the
/// publisher hands back before anything new, until all are confirmed. `before(seq)`
/// runs before a new seq is published for the first time; when it returns false, no
/// new seqs are published from there on.
pub async fn publish_all(
    publisher: &mut shardmesh_broker::Publisher,
    count: u64,
    size: usize,
    mut before: impl FnMut(u64) -> bool,
) -> PublishRun {
    use shardmesh_broker::StreamId;
    let mut run = PublishRun::default();
    let mut retry = std::collections::VecDeque::new();
    let mut next = 0;
    loop {
        let message = if let Some(message) = retry.pop_front() {
            message
        } else if next < count && before(next) {
            next += 1;
            Outgoing {
                stream: StreamId::Events(0),
                source: 0,
                seq: next - 1,
                payload: batch(next - 1, size),
            }
        } else {
            let flushed = publisher.flush().await;
            collect(publisher.take_events(), &mut retry, &mut run);
            match flushed {
                Ok(()) if retry.is_empty() => break,
                Ok(()) => continue,
                Err(error) => {
                    assert!(error.is_retryable(), "flush failed: {error}");
                    run.losses += 1;
                    continue;
                }
            }
        };
        let result = publisher.publish(message).await;
        collect(publisher.take_events(), &mut retry, &mut run);
        if let Err(error) = result {
            assert!(error.is_retryable(), "publish failed: {error}");
            run.losses += 1;
        }
    }
    run.published = next;
    assert_eq!(publisher.confirmed(0), next.checked_sub(1));
    run
}

/// Reads partition 0 from the first offset until seq `last` arrives, counting how often
/// each seq occurs.
pub async fn read_until(
    config: &BrokerConfig,
    topology: &Topology,
    last: u64,
    timeout: Duration,
) -> std::collections::HashMap<u64, u32> {
    use shardmesh_broker::{StartAt, StreamId, StreamReader};
    let mut reader = StreamReader::connect(
        config,
        topology,
        StreamId::Events(0),
        StartAt::First,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut seen = std::collections::HashMap::new();
    tokio::time::timeout(timeout, async {
        loop {
            let (_, batch) = reader.next_batch().await.unwrap();
            let seq = seq_of(&batch);
            *seen.entry(seq).or_insert(0) += 1;
            if seq == last {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("seq {last} not read within {timeout:?}"));
    reader.close().await;
    seen
}
