//! The confirmed publisher: mandatory publishes, pipelined confirms in a bounded
//! window, per-source confirmed watermarks, and every unconfirmed message handed back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::connection::{ConnectionEvent, Link};
use crate::topology::open_channel;
use crate::{BrokerConfig, Error, StreamId, Topology, Watermarks};

/// A message to publish to one of the cluster's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where it goes.
    pub stream: StreamId,
    /// Who produced it, e.g. the shard id; confirms are tracked per source.
    pub source: u32,
    /// Its position in the source's sequence, increasing; see [`Publisher::confirmed`].
    pub seq: u64,
    /// The encoded message, e.g. an encoded `EventBatch`.
    pub payload: Vec<u8>,
}

/// What the publisher hands back to its caller; nothing published is dropped silently.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublisherEvent {
    /// The connection was lost before these were confirmed. They may or may not be in
    /// the stream: publish them again, in this order, before anything newer.
    Unconfirmed {
        /// The messages, oldest first.
        messages: Vec<Outgoing>,
        /// What went wrong.
        reason: String,
    },
    /// The broker could not route the message (e.g. during a restart the stream is not
    /// up yet); it is not stored. Publish it again.
    ///
    /// Later messages of the same source may already be stored, so re-publishing only
    /// this one puts it out of order in the stream. A caller that needs per-source
    /// order keeps its messages until [`Publisher::confirmed`] passes them (this one
    /// holds that watermark back) and re-publishes everything after the watermark
    /// (go-back-N); readers drop the duplicates.
    Returned {
        /// The message.
        message: Outgoing,
        /// AMQP reply code, e.g. 312 `NO_ROUTE`.
        reply_code: u16,
        /// The broker's reply text.
        reply_text: String,
    },
    /// The broker refused to store the message (basic.nack). Publish it again (see
    /// [`PublisherEvent::Returned`] about order) or give up.
    Nacked {
        /// The message.
        message: Outgoing,
    },
}

/// Publishes to the cluster's streams with publisher confirms, on a connection of its
/// own, and reconnects on its own.
///
/// The contract: every message passed to [`Publisher::publish`] is either confirmed
/// (it moves [`Publisher::confirmed`] for its source once everything before it from
/// that source is confirmed too) or handed back in a [`PublisherEvent`] from
/// [`Publisher::take_events`]. A handed-back message holds its source's watermark back
/// until it is published again and confirmed.
///
/// ```no_run
/// # async fn example() -> Result<(), shardmesh_broker::Error> {
/// use shardmesh_broker::{BrokerConfig, Outgoing, Publisher, PublisherEvent, StreamId, Topology};
/// use tokio_util::sync::CancellationToken;
///
/// let config = BrokerConfig::default();
/// let topology = Topology::new("prod", 16, &config)?;
/// let mut publisher = Publisher::connect(&config, &topology, CancellationToken::new()).await?;
/// let message = Outgoing { stream: StreamId::Events(3), source: 3, seq: 1, payload: vec![1, 2] };
/// let mut queue = vec![message];
/// while let Some(message) = queue.pop() {
///     let result = publisher.publish(message).await;
///     for event in publisher.take_events() {
///         if let PublisherEvent::Unconfirmed { messages, .. } = event {
///             queue.extend(messages.into_iter().rev());
///         }
///     }
///     if let Err(error) = result {
///         if !error.is_retryable() { return Err(error); }
///     }
/// }
/// publisher.flush().await?;
/// assert_eq!(publisher.confirmed(3), Some(1));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Publisher {
    link: Link,
    topology: Arc<Topology>,
    window: usize,
    /// Routing keys of the event streams, built once: the hot path only clones them.
    event_routes: Vec<ShortString>,
    channel: Option<Channel>,
    in_flight: VecDeque<InFlight>,
    /// Moved here as confirms arrive; [`Publisher::watermarks`] shares them.
    watermarks: Watermarks,
    events: Vec<PublisherEvent>,
    properties: BasicProperties,
}

struct InFlight {
    message: Outgoing,
    confirm: PublisherConfirm,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("source", &self.message.source)
            .field("seq", &self.message.seq)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects, declares the topology's streams and enables confirms.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] if the first connection attempt fails (later losses are
    /// retried on their own), [`Error::InequivalentArgument`] if a stream exists with
    /// other arguments, [`Error::InvalidConfig`] for an invalid `config`.
    pub async fn connect(
        config: &BrokerConfig,
        topology: &Topology,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        config.validate()?;
        let event_routes = (0..topology.partitions())
            .map(|p| topology.stream_name(&StreamId::Events(p)).into())
            .collect();
        let mut publisher = Self {
            link: Link::new(Arc::new(config.clone()), "publisher", shutdown),
            topology: Arc::new(topology.clone()),
            window: config.confirm_window as usize,
            event_routes,
            channel: None,
            in_flight: VecDeque::with_capacity(config.confirm_window as usize),
            watermarks: Watermarks::default(),
            events: Vec::new(),
            properties: BasicProperties::default().with_delivery_mode(2),
        };
        publisher.ensure_channel().await?;
        Ok(publisher)
    }

    /// Publishes one message, first waiting for confirms while the window is full.
    ///
    /// # Errors
    ///
    /// Whatever the error, `message` was not published and is handed back in a
    /// [`PublisherEvent::Unconfirmed`], after anything handed back before it.
    ///
    /// - [`Error::ConnectionLost`] (retryable): every unconfirmed message is handed back,
    ///   this one last; the next call reconnects (with backoff).
    /// - [`Error::Cancelled`]: shutdown was cancelled while waiting for room or for a
    ///   reconnect; messages in flight stay there ([`Publisher::close`] hands them back).
    /// - [`Error::InequivalentArgument`]: re-declaring the topology on reconnect found a
    ///   stream with other arguments.
    /// - [`Error::InvalidConfig`]: the message's partition is outside the topology.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future may lose track of `message`. Stop with the
    /// shutdown token instead.
    pub async fn publish(&mut self, message: Outgoing) -> Result<(), Error> {
        while self.in_flight.len() >= self.window {
            let shutdown = self.link.shutdown().clone();
            let settled = tokio::select! {
                biased;
                // On a loss this hands back everything in flight; `message` follows.
                result = self.settle_front() => result,
                () = shutdown.cancelled() => Err(Error::Cancelled),
            };
            if let Err(error) = settled {
                self.give_back([message], &error);
                return Err(error);
            }
        }
        let routing_key = match &message.stream {
            StreamId::Events(p) => {
                if let Some(route) = self.event_routes.get(*p as usize) {
                    route.clone()
                } else {
                    let error = Error::InvalidConfig(shardmesh_proto::InvalidConfig::new(
                        "cluster.partitions",
                        format!("partition {p} is outside 0..{}", self.event_routes.len()),
                    ));
                    self.give_back([message], &error);
                    return Err(error);
                }
            }
            stream @ StreamId::DeadLetter(_) => self.topology.stream_name(stream).into(),
        };
        if let Err(error) = self.ensure_channel().await {
            self.give_back([message], &error);
            return Err(error);
        }
        let Some(channel) = &self.channel else {
            // ensure_channel leaves a channel on success; stay total anyway.
            let error = Error::Closed("publisher channel");
            self.give_back([message], &error);
            return Err(error);
        };
        self.watermarks.sent(message.source, message.seq);
        let published = channel
            .basic_publish(
                ShortString::default(),
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &message.payload,
                self.properties.clone(),
            )
            .await;
        match published {
            Ok(confirm) => {
                self.in_flight.push_back(InFlight { message, confirm });
                Ok(())
            }
            Err(error) => {
                let error = Error::amqp("basic.publish", "", &error);
                self.hand_back(&error);
                self.give_back([message], &error);
                Err(error)
            }
        }
    }

    /// Waits until every published message is confirmed, returned, nacked or handed
    /// back.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] when the connection goes (the unconfirmed messages are
    /// handed back); [`Error::Cancelled`] on shutdown (they stay in flight).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: confirms that arrived are accounted for, the rest stay in flight.
    pub async fn flush(&mut self) -> Result<(), Error> {
        while !self.in_flight.is_empty() {
            let shutdown = self.link.shutdown().clone();
            tokio::select! {
                biased;
                result = self.settle_front() => result?,
                () = shutdown.cancelled() => return Err(Error::Cancelled),
            }
        }
        Ok(())
    }

    /// Accounts for confirms that have already arrived, without waiting.
    pub fn poll_confirms(&mut self) {
        while let Some(front) = self.in_flight.front_mut() {
            let Some(result) = (&mut front.confirm).now_or_never() else {
                return;
            };
            if self.settle_popped(result).is_err() {
                return;
            }
        }
    }

    /// The highest `seq` of `source` such that every message of `source` with a `seq`
    /// up to it that went through this publisher is confirmed; `None` before the first.
    pub fn confirmed(&self, source: u32) -> Option<u64> {
        self.watermarks.confirmed(source)
    }

    /// The watermarks behind [`Publisher::confirmed`], to clone into other tasks: they
    /// read and wait on them while this publisher is busy publishing.
    pub fn watermarks(&self) -> &Watermarks {
        &self.watermarks
    }

    /// Messages published and not yet confirmed or handed back.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes the messages handed back so far; see [`PublisherEvent`].
    pub fn take_events(&mut self) -> Vec<PublisherEvent> {
        std::mem::take(&mut self.events)
    }

    /// Connection events (connected, lost, retrying) of this publisher.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.link.events()
    }

    /// Closes the connection, handing back whatever is still unconfirmed; call
    /// [`Publisher::flush`] first for a clean stop.
    pub async fn close(mut self) -> Vec<PublisherEvent> {
        self.hand_back(&Error::Closed("publisher"));
        if let Some(channel) = self.channel.take() {
            // Closed and answered before the connection closes: a channel merely dropped
            // is closed by lapin afterwards, finds the connection closing and logs a
            // connection error.
            let _ =
                tokio::time::timeout(Duration::from_secs(2), channel.close(200, "closing".into()))
                    .await;
        }
        self.link.close().await;
        self.take_events()
    }

    /// Waits for the oldest confirm and accounts for it.
    ///
    /// Cancel safe: the confirm future is polled in place and popped only when ready.
    async fn settle_front(&mut self) -> Result<(), Error> {
        let Some(front) = self.in_flight.front_mut() else {
            return Ok(());
        };
        let result = (&mut front.confirm).await;
        self.settle_popped(result)
    }

    /// Pops the front entry and accounts for its confirm `result`; a failed confirm
    /// hands back the entry and everything after it.
    fn settle_popped(&mut self, result: lapin::Result<Confirmation>) -> Result<(), Error> {
        let Some(InFlight { message, .. }) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match result {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {
                self.watermarks.acked(message.source, message.seq);
            }
            Ok(Confirmation::Ack(Some(returned))) => {
                self.events.push(PublisherEvent::Returned {
                    message,
                    reply_code: returned.reply_code,
                    reply_text: returned.reply_text.to_string(),
                });
            }
            Ok(Confirmation::Nack(_)) => self.events.push(PublisherEvent::Nacked { message }),
            Err(error) => {
                let error = Error::amqp("basic.publish confirm", "", &error);
                self.hand_back_from(message, &error);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Hands back `first` (the oldest) and everything in flight after it.
    fn hand_back_from(&mut self, first: Outgoing, error: &Error) {
        let rest: Vec<_> = self
            .in_flight
            .drain(..)
            .map(|entry| entry.message)
            .collect();
        self.give_back(std::iter::once(first).chain(rest), error);
    }

    /// Hands back everything in flight.
    fn hand_back(&mut self, error: &Error) {
        let messages: Vec<_> = self
            .in_flight
            .drain(..)
            .map(|entry| entry.message)
            .collect();
        self.give_back(messages, error);
    }

    /// Hands `messages` back in an [`PublisherEvent::Unconfirmed`], after whatever was
    /// handed back before (events are in publish order, so a trailing `Unconfirmed` is
    /// extended), and drops the channel if `error` means it is gone.
    fn give_back(&mut self, messages: impl IntoIterator<Item = Outgoing>, error: &Error) {
        if error.is_retryable() {
            self.channel = None;
            self.link.lost(error.to_string());
        }
        let mut messages = messages.into_iter().peekable();
        if messages.peek().is_none() {
            return;
        }
        if let Some(PublisherEvent::Unconfirmed {
            messages: earlier, ..
        }) = self.events.last_mut()
        {
            earlier.extend(messages);
        } else {
            self.events.push(PublisherEvent::Unconfirmed {
                messages: messages.collect(),
                reason: error.to_string(),
            });
        }
    }

    /// The confirm channel, reconnecting if needed.
    ///
    /// A channel found dead with messages in flight hands them back and fails with
    /// [`Error::ConnectionLost`], so nothing newer is published before they are.
    async fn ensure_channel(&mut self) -> Result<(), Error> {
        if let Some(channel) = &self.channel {
            if channel.status().connected() {
                return Ok(());
            }
            let error = Error::ConnectionLost {
                operation: "basic.publish",
                reason: "the publisher channel was closed".into(),
            };
            let had_in_flight = !self.in_flight.is_empty();
            self.hand_back(&error);
            self.channel = None;
            self.link.lost(error.to_string());
            if had_in_flight {
                return Err(error);
            }
        }
        loop {
            let connection = self.link.connection().await?;
            let setup = async {
                self.topology.declare_streams(&connection).await?;
                let channel = open_channel(&connection).await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|error| Error::amqp("confirm.select", "", &error))?;
                Ok::<_, Error>(channel)
            };
            match setup.await {
                Ok(channel) => {
                    self.channel = Some(channel);
                    self.link.ready();
                    return Ok(());
                }
                Err(error) if error.is_retryable() => self.link.setup_failed(&error.to_string()),
                Err(error) => return Err(error),
            }
        }
    }
}
