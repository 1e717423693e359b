//! Publishing to the group's dead-letter stream, confirmed, on one shared connection.

use std::sync::atomic::{AtomicU64, Ordering};

use shardmesh_broker::{BrokerConfig, Outgoing, Publisher, PublisherEvent, StreamId, Topology};
use shardmesh_proto::DeadLetter;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// The dead-letter publisher of one node's partitions. Dead letters are rare, so the
/// connection is opened on the first one and shared by all partitions.
pub(crate) struct DeadLetters {
    broker: BrokerConfig,
    topology: Topology,
    stream: StreamId,
    shutdown: CancellationToken,
    /// A tokio `Mutex`: held across the publish and its confirm, so the events taken
    /// afterwards are this publish's own.
    publisher: Mutex<Option<Publisher>>,
    seq: AtomicU64,
}

impl DeadLetters {
    pub(crate) fn new(
        broker: BrokerConfig,
        topology: Topology,
        group: &str,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            broker,
            topology,
            stream: StreamId::DeadLetter(group.to_owned()),
            shutdown,
            publisher: Mutex::new(None),
            seq: AtomicU64::new(1),
        }
    }

    /// Publishes `letter` and waits for the broker's confirm.
    ///
    /// # Errors
    ///
    /// Why the letter may not be stored; the caller tries again.
    pub(crate) async fn publish(&self, letter: &DeadLetter) -> Result<(), String> {
        let payload = shardmesh_proto::encode(letter).map_err(|error| error.to_string())?;
        let mut slot = self.publisher.lock().await;
        if slot.is_none() {
            let publisher = Publisher::connect(&self.broker, &self.topology, self.shutdown.clone())
                .await
                .map_err(|error| error.to_string())?;
            *slot = Some(publisher);
        }
        let Some(publisher) = slot.as_mut() else {
            return Err("dead-letter publisher not connected".into());
        };
        let message = Outgoing {
            stream: self.stream.clone(),
            source: letter.partition,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            payload,
        };
        let outcome = match publisher.publish(message).await {
            Ok(()) => publisher.flush().await.map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        // Anything handed back means the letter may not be stored: this publish failed.
        let handed_back = publisher.take_events();
        outcome?;
        match handed_back.first() {
            None => Ok(()),
            Some(PublisherEvent::Returned { reply_text, .. }) => {
                Err(format!("returned by the broker: {reply_text}"))
            }
            Some(PublisherEvent::Unconfirmed { reason, .. }) => Err(reason.clone()),
            Some(_) => Err("refused by the broker".into()),
        }
    }

    /// Flushes and closes the connection, if one was opened.
    pub(crate) async fn close(&self) {
        if let Some(publisher) = self.publisher.lock().await.take() {
            publisher.close().await;
        }
    }
}
