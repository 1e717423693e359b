//! The one task that owns the broker publisher: shards hand it envelopes through a
//! bounded queue, it publishes what is queued as event batches (one per shard session),
//! and re-publishes whatever the broker hands back before anything newer. What is
//! confirmed, shards read from the publisher's own watermarks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shardmesh_broker::{Outgoing, Publisher, PublisherEvent, StreamId, Watermarks};
use shardmesh_proto::{EventBatch, encode};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batching::{Batch, Pending, batches};
use crate::{Error, GatewayConfig};

/// The shards' side of the publish loop: a bounded queue into it, and the publisher's
/// confirmed watermarks to read and wait on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PublishHandle {
    queue: mpsc::Sender<Pending>,
    watermarks: Watermarks,
    sources: Arc<SourceIds>,
}

/// Publisher source ids for this node's shard sessions, never reused.
///
/// A source is one shard's one session on this node: Discord restarts seqs with a new
/// session, and a watermark only moves up, so a shard takes a fresh source whenever its
/// session changes (and with each lease it acquires).
#[derive(Debug, Default)]
struct SourceIds(AtomicU32);

impl SourceIds {
    fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

impl PublishHandle {
    /// Queues an envelope; waits while the queue is full (that is the back-pressure).
    /// Fails once the publish loop has ended.
    pub(crate) async fn send(&self, pending: Pending) -> Result<(), Pending> {
        self.queue.send(pending).await.map_err(|error| error.0)
    }

    /// Resolves once the publish loop has ended: nothing more will be confirmed.
    pub(crate) async fn closed(&self) {
        self.queue.closed().await;
    }

    /// A source id for a new shard session; see [`SourceIds`].
    pub(crate) fn new_source(&self) -> u32 {
        self.sources.next()
    }

    /// What the broker confirmed, by source: the publisher's watermarks themselves.
    pub(crate) fn watermarks(&self) -> &Watermarks {
        &self.watermarks
    }
}

/// Publishes every envelope the node's shards receive, in order per shard, with
/// broker confirms; see [`PublishLoop::run`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use shardmesh_broker::{BrokerConfig, Publisher, Topology};
/// use shardmesh_gateway::{BotToken, GatewayConfig, PublishLoop};
/// use tokio_util::sync::CancellationToken;
///
/// let broker = BrokerConfig::default();
/// let topology = Topology::new("prod", 16, &broker)?;
/// // The publisher's token outlives the loop, so the loop can drain at shutdown.
/// let publisher = Publisher::connect(&broker, &topology, CancellationToken::new()).await?;
/// let config = GatewayConfig { token: BotToken::new("..."), ..GatewayConfig::default() };
/// let (publish_loop, handle) = PublishLoop::new(publisher, "node-a", 16, &config);
/// let shutdown = CancellationToken::new();
/// let task = tokio::spawn(publish_loop.run(shutdown.clone()));
/// // ... hand `handle` to GatewayShards, run the node, then:
/// shutdown.cancel();
/// task.await??;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PublishLoop {
    publisher: Publisher,
    queue: mpsc::Receiver<Pending>,
    node: String,
    partitions: u32,
    /// Encoded batches waiting for the publisher, oldest first; what the publisher
    /// hands back goes in front, since it is older than anything here.
    outbox: VecDeque<Outgoing>,
    /// Most envelopes taken off the queue at once: the queue's bound, so at most one
    /// queue-full waits in the outbox while shards refill the queue.
    gather_limit: usize,
    batch_max_events: usize,
    batch_max_bytes: usize,
    drain_timeout: Duration,
}

impl PublishLoop {
    /// A loop publishing for node `node` into `partitions` event streams (shard `s`
    /// goes to `s % partitions`), and the handle shards use. `config` gives the queue
    /// bound ([`GatewayConfig::publish_queue`]) and the drain timeout.
    ///
    /// # Panics
    ///
    /// If `partitions` or `config.publish_queue` is 0 (`config` was not validated).
    pub fn new(
        publisher: Publisher,
        node: impl Into<String>,
        partitions: u32,
        config: &GatewayConfig,
    ) -> (Self, PublishHandle) {
        assert!(
            partitions > 0,
            "an event topology has at least one partition"
        );
        let (sender, receiver) = mpsc::channel(config.publish_queue);
        let handle = PublishHandle {
            queue: sender,
            watermarks: publisher.watermarks().clone(),
            sources: Arc::default(),
        };
        let publish_loop = Self {
            publisher,
            queue: receiver,
            node: node.into(),
            partitions,
            outbox: VecDeque::new(),
            gather_limit: config.publish_queue,
            batch_max_events: config.batch_max_events,
            batch_max_bytes: config.batch_max_bytes,
            drain_timeout: Duration::from_millis(config.drain_timeout_ms),
        };
        (publish_loop, handle)
    }

    /// Publishes until `shutdown` is cancelled (or every handle is dropped), then
    /// publishes what is still queued and waits for its confirms, for at most the
    /// drain timeout, and closes the publisher.
    ///
    /// Whenever it is ready for more, the loop takes everything queued and publishes
    /// it as [`EventBatch`]es to `events.<shard % partitions>`: one batch per shard
    /// session, in receive order, within [`GatewayConfig::batch_max_events`] and
    /// [`GatewayConfig::batch_max_bytes`]. It never waits for a batch to fill, so light
    /// traffic goes out one event per message and a backlog in few messages. A lost
    /// connection, a return or a nack hands messages back: they are published again,
    /// in order, before anything newer; nothing is dropped. The publisher's confirm
    /// window bounds what is in flight; when it is full this loop stops taking
    /// envelopes, the queue fills, and shards stop reading.
    ///
    /// Cancel `shutdown` only after the node's leases are handed over, so hand-overs
    /// can still wait for their confirms.
    ///
    /// # Errors
    ///
    /// [`Error::Publish`] when the broker refuses publishing for good (a stream exists
    /// with other arguments, the publisher's own token was cancelled), and
    /// [`Error::Encode`] if a batch cannot be encoded. Shards stop publishing then;
    /// the saved seqs stay at what was confirmed, so Discord replays the rest to the
    /// next owner.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: cancel `shutdown` instead.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let result = self.publish_until(&shutdown).await;
        if result.is_ok() {
            self.drain().await;
        }
        let left = count_handed_back(&self.publisher.close().await) + self.outbox.len();
        if left > 0 {
            tracing::warn!(
                messages = left,
                "publisher closed with unconfirmed events; their shards resume before them"
            );
        }
        result
    }

    async fn publish_until(&mut self, shutdown: &CancellationToken) -> Result<(), Error> {
        loop {
            if let Some(message) = self.outbox.pop_front() {
                self.publish(message).await?;
                continue;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                pending = self.queue.recv() => match pending {
                    Some(first) => self.gather(first)?,
                    None => return Ok(()),
                },
                // Only while nothing new comes: confirms of a quiet stream still move
                // the watermarks. Cancel safe, so a new envelope may interrupt it.
                flushed = self.publisher.flush(), if self.publisher.in_flight() > 0 => {
                    self.settled(flushed)?;
                }
            }
        }
    }

    /// Publishes what is queued and waits for the confirms, within the drain timeout.
    async fn drain(&mut self) {
        self.queue.close();
        let deadline = Instant::now() + self.drain_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            loop {
                if let Some(message) = self.outbox.pop_front() {
                    self.publish(message).await?;
                } else if let Ok(first) = self.queue.try_recv() {
                    self.gather(first)?;
                } else if self.publisher.in_flight() > 0 {
                    let flushed = self.publisher.flush().await;
                    self.settled(flushed)?;
                } else {
                    return Ok::<_, Error>(());
                }
            }
        })
        .await;
        match drained {
            Ok(Ok(())) => tracing::debug!("publisher drained"),
            Ok(Err(error)) => tracing::warn!(%error, "publisher stopped while draining"),
            Err(_) => tracing::warn!(
                in_flight = self.publisher.in_flight(),
                queued = self.outbox.len() + self.queue.len(),
                "publisher not drained in time"
            ),
        }
    }

    /// Takes `first` and whatever else is queued (up to the queue's bound) into the
    /// outbox as batches.
    fn gather(&mut self, first: Pending) -> Result<(), Error> {
        let mut taken = vec![first];
        while taken.len() < self.gather_limit {
            match self.queue.try_recv() {
                Ok(pending) => taken.push(pending),
                Err(_) => break,
            }
        }
        for batch in batches(taken, self.batch_max_events, self.batch_max_bytes) {
            let message = self.encode(batch)?;
            self.outbox.push_back(message);
        }
        Ok(())
    }

    /// One source's envelopes as a stream message; its seq is the last envelope's, so
    /// its confirm covers them all.
    fn encode(&self, batch: Batch) -> Result<Outgoing, Error> {
        let Batch { source, events, .. } = batch;
        let last = events.last().expect("a gathered batch holds an envelope");
        let (shard, seq) = (last.shard, last.seq);
        let partition = shard % self.partitions;
        let batch = EventBatch::new(partition, self.node.as_str(), events);
        let payload = encode(&batch).map_err(|source| Error::Encode { shard, source })?;
        Ok(Outgoing {
            stream: StreamId::Events(partition),
            source,
            seq,
            payload,
        })
    }

    /// Publishes one message; what the publisher hands back goes first in the outbox.
    /// Only errors that retrying cannot fix end the loop.
    async fn publish(&mut self, message: Outgoing) -> Result<(), Error> {
        let published = self.publisher.publish(message).await;
        self.settled(published)?;
        self.publisher.poll_confirms();
        self.take_handed_back();
        Ok(())
    }

    /// Accounts for the outcome of a publish or a flush.
    fn settled(&mut self, outcome: Result<(), shardmesh_broker::Error>) -> Result<(), Error> {
        self.take_handed_back();
        match outcome {
            Ok(()) => Ok(()),
            Err(error) if error.is_retryable() => {
                // The publisher reconnects (with backoff) on the next publish; its link
                // logs the outage once, at WARN.
                tracing::debug!(%error, outbox = self.outbox.len(), "publish failed, publishing again");
                Ok(())
            }
            Err(error) => Err(Error::Publish(error)),
        }
    }

    /// Moves what the publisher handed back to the front of the outbox, in order: all
    /// of it was published before anything still waiting there.
    fn take_handed_back(&mut self) {
        let events = self.publisher.take_events();
        if events.is_empty() {
            return;
        }
        let mut back = Vec::new();
        for event in events {
            match event {
                PublisherEvent::Unconfirmed { messages, reason } => {
                    // Nothing is lost: they go out again before anything newer.
                    tracing::info!(messages = messages.len(), %reason, "events unconfirmed, publishing again");
                    back.extend(messages);
                }
                PublisherEvent::Returned {
                    message,
                    reply_code,
                    reply_text,
                } => {
                    tracing::warn!(
                        shard_source = message.source,
                        seq = message.seq,
                        reply_code,
                        %reply_text,
                        "event returned by the broker, publishing again"
                    );
                    back.push(message);
                }
                PublisherEvent::Nacked { message } => {
                    tracing::warn!(
                        shard_source = message.source,
                        seq = message.seq,
                        "event nacked by the broker, publishing again"
                    );
                    back.push(message);
                }
                other => tracing::error!(?other, "unknown publisher event, ignored"),
            }
        }
        for message in back.into_iter().rev() {
            self.outbox.push_front(message);
        }
    }
}

fn count_handed_back(events: &[PublisherEvent]) -> usize {
    events
        .iter()
        .map(|event| match event {
            PublisherEvent::Unconfirmed { messages, .. } => messages.len(),
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_source_never_reuses_an_old_id() {
        let sources = SourceIds::default();
        let first = sources.next();
        assert_ne!(sources.next(), first);
    }
}
