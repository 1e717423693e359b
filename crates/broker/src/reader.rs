//! The stream reader: consume one stream from a start position, in order, with batched
//! acks, and resume after reconnects at the last yielded offset + 1.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer};
use shardmesh_proto::EventBatch;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::connection::{ConnectionEvent, Link};
use crate::topology::open_channel;
use crate::{BrokerConfig, Error, StreamId, Topology};

/// Where a [`StreamReader`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest message the stream still holds.
    First,
    /// Only messages published after subscribing. If the connection is lost before
    /// the first message, the reader resumes at the subscription's second (timestamp
    /// start), so nothing published meanwhile is skipped, though a few messages from
    /// just before subscribing may come too.
    Next,
    /// This offset (or the oldest retained one, if it is older), e.g. a checkpoint + 1.
    Offset(u64),
    /// The first chunk written at or after this Unix time in seconds (chunk granularity:
    /// a few earlier messages may come too).
    Timestamp(u64),
    /// The last chunk the stream holds (RabbitMQ's `last`): its messages, then what is
    /// published after. Reading it until it goes quiet finds the stream's tail.
    LastChunk,
}

/// One stream message: its offset and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMessage {
    /// The message's offset in the stream.
    pub offset: u64,
    /// The message body.
    pub payload: Vec<u8>,
}

/// Reads one stream in order on a connection of its own and reconnects on its own.
///
/// After a reconnect it subscribes at the last yielded offset + 1 and skips what the
/// broker re-delivers (it sends whole chunks), so every offset is yielded once.
///
/// ```no_run
/// # async fn example() -> Result<(), shardmesh_broker::Error> {
/// use shardmesh_broker::{BrokerConfig, StartAt, StreamId, StreamReader, Topology};
/// use tokio_util::sync::CancellationToken;
///
/// let config = BrokerConfig::default();
/// let topology = Topology::new("prod", 16, &config)?;
/// let mut reader = StreamReader::connect(
///     &config, &topology, StreamId::Events(3), StartAt::Offset(1_000), CancellationToken::new(),
/// ).await?;
/// loop {
///     match reader.next_batch().await {
///         Ok((offset, batch)) => println!("{offset}: {} events", batch.events.len()),
///         Err(error @ shardmesh_broker::Error::Decode { .. }) => eprintln!("skipped: {error}"),
///         Err(error) => return Err(error),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct StreamReader {
    link: Link,
    topology: Arc<Topology>,
    stream: StreamId,
    queue: String,
    start: StartAt,
    prefetch: u16,
    /// Ack (with `multiple`) after this many deliveries: half the prefetch, so the broker
    /// never runs out of credit while acks are few.
    ack_every: u32,
    session: Option<Session>,
    last_yielded: Option<u64>,
    /// Unix seconds of the first subscription, for resuming a `Next` start.
    subscribed_at: Option<u64>,
}

#[derive(Debug)]
struct Session {
    channel: Channel,
    consumer: Consumer,
    unacked: u32,
    /// Delivery tag to ack (with `multiple`) at the next call.
    ack_due: Option<u64>,
}

impl StreamReader {
    /// Connects, declares the stream if needed and subscribes at `start`.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] if the first connection attempt fails,
    /// [`Error::InequivalentArgument`] if the stream exists with other arguments,
    /// [`Error::InvalidConfig`] for an invalid `config`.
    pub async fn connect(
        config: &BrokerConfig,
        topology: &Topology,
        stream: StreamId,
        start: StartAt,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        config.validate()?;
        let queue = topology.stream_name(&stream);
        let mut reader = Self {
            link: Link::new(
                Arc::new(config.clone()),
                format!("reader {queue}"),
                shutdown,
            ),
            topology: Arc::new(topology.clone()),
            queue,
            stream,
            start,
            prefetch: config.prefetch,
            ack_every: u32::from(config.prefetch / 2).max(1),
            session: None,
            last_yielded: None,
            subscribed_at: None,
        };
        reader.subscribe().await?;
        Ok(reader)
    }

    /// The next message, reconnecting as often as needed to get it.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] on shutdown; [`Error::InequivalentArgument`] if the stream
    /// was re-created with other arguments; [`Error::NotFound`] if it was deleted.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is only taken from the consumer when it is returned, and a
    /// reconnect dropped half-way is started again by the next call.
    pub async fn next(&mut self) -> Result<StreamMessage, Error> {
        loop {
            if self.session.is_none() {
                self.subscribe().await?;
            }
            let Some(session) = self.session.as_mut() else {
                continue;
            };
            // Acked here rather than before returning the previous message, so a caller
            // dropping `next` never loses a delivery. `take` and the first poll (which
            // sends the frame) happen together, so a tag is never acked twice.
            if let Some(tag) = session.ack_due.take() {
                let acked = session
                    .channel
                    .basic_ack(tag, BasicAckOptions { multiple: true })
                    .await;
                if let Err(error) = acked {
                    self.lose(error.to_string());
                    continue;
                }
            }
            let shutdown = self.link.shutdown().clone();
            let delivery = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Err(Error::Cancelled),
                delivery = session.consumer.next() => delivery,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    self.lose(error.to_string());
                    continue;
                }
                None => {
                    self.lose("consumer cancelled by the broker".into());
                    continue;
                }
            };
            session.unacked += 1;
            if session.unacked >= self.ack_every {
                session.unacked = 0;
                session.ack_due = Some(delivery.delivery_tag);
            }
            let Some(offset) = offset_of(&delivery.properties) else {
                tracing::warn!(stream = %self.queue, "stream delivery without x-stream-offset, skipped");
                continue;
            };
            if self.already_seen(offset) {
                continue;
            }
            self.last_yielded = Some(offset);
            return Ok(StreamMessage {
                offset,
                payload: delivery.data,
            });
        }
    }

    /// The next message decoded as an [`EventBatch`].
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] with the offset for a message that is not a valid batch (the
    /// next call reads on after it), and the errors of [`StreamReader::next`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`StreamReader::next`].
    pub async fn next_batch(&mut self) -> Result<(u64, EventBatch), Error> {
        let message = self.next().await?;
        shardmesh_proto::decode(&message.payload)
            .map(|batch| (message.offset, batch))
            .map_err(|source| Error::Decode {
                offset: message.offset,
                source,
            })
    }

    /// The offset of the last message returned, if any.
    pub fn last_offset(&self) -> Option<u64> {
        self.last_yielded
    }

    /// Connection events (connected, lost, retrying) of this reader.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.link.events()
    }

    /// Closes the reader's connection.
    pub async fn close(mut self) {
        self.session = None;
        self.link.close().await;
    }

    fn already_seen(&self, offset: u64) -> bool {
        match (self.last_yielded, self.start) {
            (Some(last), _) => offset <= last,
            (None, StartAt::Offset(first)) => offset < first,
            (None, _) => false,
        }
    }

    fn lose(&mut self, reason: String) {
        self.session = None;
        self.link.lost(reason);
    }

    fn position(&self) -> AMQPValue {
        let as_offset =
            |offset: u64| AMQPValue::LongLongInt(i64::try_from(offset).unwrap_or(i64::MAX));
        match (self.last_yielded, self.start) {
            (Some(last), _) => as_offset(last + 1),
            (None, StartAt::First) => AMQPValue::LongString("first".into()),
            (None, StartAt::Next) => match self.subscribed_at {
                Some(seconds) => AMQPValue::Timestamp(seconds),
                None => AMQPValue::LongString("next".into()),
            },
            (None, StartAt::Offset(offset)) => as_offset(offset),
            (None, StartAt::Timestamp(seconds)) => AMQPValue::Timestamp(seconds),
            (None, StartAt::LastChunk) => AMQPValue::LongString("last".into()),
        }
    }

    async fn subscribe(&mut self) -> Result<(), Error> {
        loop {
            let connection = self.link.connection().await?;
            let setup = async {
                let channel = open_channel(&connection).await?;
                self.topology.declare_stream(&channel, &self.stream).await?;
                channel
                    .basic_qos(self.prefetch, BasicQosOptions::default())
                    .await
                    .map_err(|error| Error::amqp("basic.qos", &self.queue, &error))?;
                let mut arguments = FieldTable::default();
                arguments.insert("x-stream-offset".into(), self.position());
                let consumer = channel
                    .basic_consume(
                        self.queue.as_str().into(),
                        "".into(),
                        BasicConsumeOptions::default(),
                        arguments,
                    )
                    .await
                    .map_err(|error| Error::amqp("basic.consume", &self.queue, &error))?;
                Ok::<_, Error>(Session {
                    channel,
                    consumer,
                    unacked: 0,
                    ack_due: None,
                })
            };
            match setup.await {
                Ok(session) => {
                    self.session = Some(session);
                    self.link.ready();
                    if self.subscribed_at.is_none() {
                        self.subscribed_at = Some(unix_seconds());
                    }
                    return Ok(());
                }
                // Right after a broker restart: "home node ... of the queue is down".
                Err(error) if error.is_retryable() => self.link.setup_failed(&error.to_string()),
                Err(error) => return Err(error),
            }
        }
    }
}

fn offset_of(properties: &lapin::BasicProperties) -> Option<u64> {
    match properties
        .headers()
        .as_ref()?
        .inner()
        .get("x-stream-offset")?
    {
        AMQPValue::LongLongInt(offset) => u64::try_from(*offset).ok(),
        AMQPValue::LongUInt(offset) => Some(u64::from(*offset)),
        _ => None,
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
