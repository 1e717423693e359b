//! Gateway commands through the broker: a durable queue per shard with a single active
//! consumer. Senders publish with confirms (a confirmed command is accepted); the
//! gateway node that holds the shard's lease consumes the queue and acknowledges a
//! command only once it is written to Discord, so a node that goes leaves the rest, in
//! order, to the next owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use shardmesh_proto::{CommandEnvelope, CommandOutcome};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::connection::{Link, attempts_after_loss};
use crate::request::REPLY_TO;
use crate::topology::open_channel;
use crate::{Backoff, BrokerConfig, Error, FailureRun, Topology};

/// Publishes commands into the shards' command queues.
#[derive(Debug)]
pub struct CommandSender {
    link: Link,
    topology: Topology,
    channel: Option<Channel>,
    declared: std::collections::HashSet<u32>,
    properties: BasicProperties,
    waiting: Waiting,
}

/// Senders waiting for outcomes, by command id.
type Waiting = Arc<std::sync::Mutex<HashMap<String, oneshot::Sender<CommandOutcome>>>>;

impl CommandSender {
    /// Connects to the broker.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] if the broker cannot be reached.
    pub async fn connect(
        config: &BrokerConfig,
        topology: &Topology,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        let mut link = Link::new(Arc::new(config.clone()), "commands", shutdown);
        link.connection().await?;
        Ok(Self {
            link,
            topology: topology.clone(),
            channel: None,
            declared: std::collections::HashSet::new(),
            properties: BasicProperties::default().with_delivery_mode(2),
            waiting: Waiting::default(),
        })
    }

    /// Like [`CommandSender::send`], and asks the gateway node for the command's
    /// outcome: the receiver gets it once the command is written, expired or rejected.
    ///
    /// The outcome comes back by direct reply-to on this sender's channel: if the
    /// channel is re-made meanwhile (a broker cut), it is lost and the receiver waits
    /// in vain, so bound the wait; the command itself still goes out.
    ///
    /// # Errors
    ///
    /// As [`CommandSender::send`].
    pub async fn send_for_outcome(
        &mut self,
        command: &CommandEnvelope,
    ) -> Result<oneshot::Receiver<CommandOutcome>, Error> {
        let (tell, outcome) = oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
            waiting.retain(|_, waiter| !waiter.is_closed());
            waiting.insert(command.id.clone(), tell);
        }
        let properties = self
            .properties
            .clone()
            .with_reply_to(REPLY_TO.into())
            .with_correlation_id(command.id.as_str().into());
        let sent = self.send_with(command, properties).await;
        if sent.is_err() {
            lock(&self.waiting).remove(&command.id);
        }
        sent.map(|()| outcome)
    }

    /// Publishes `command` to its shard's queue and waits for the broker's confirm.
    ///
    /// On `Ok` the command is accepted: it is on disk and reaches Discord once the
    /// shard's owner gets to it. A publish whose confirm was lost is published again, so
    /// the queue may hold a command twice; the gateway node sends one copy.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] for a command that cannot be encoded; [`Error::Cancelled`] on
    /// shutdown. Connection losses are retried (with backoff) until shutdown, so bound
    /// the wait with a timeout.
    pub async fn send(&mut self, command: &CommandEnvelope) -> Result<(), Error> {
        let properties = self.properties.clone();
        self.send_with(command, properties).await
    }

    async fn send_with(
        &mut self,
        command: &CommandEnvelope,
        properties: BasicProperties,
    ) -> Result<(), Error> {
        let payload = shardmesh_proto::encode(command).map_err(Error::Encode)?;
        loop {
            match self.try_send(command.shard, &payload, &properties).await {
                Ok(true) => return Ok(()),
                // Nacked or returned: the broker did not take it; again.
                Ok(false) => {}
                Err(error) if error.is_retryable() => {
                    self.channel = None;
                    self.declared.clear();
                    self.link.lost(error.to_string());
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        if let Some(channel) = self.channel.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), channel.close(200, "closing".into()))
                    .await;
        }
        self.link.close().await;
    }

    async fn try_send(
        &mut self,
        shard: u32,
        payload: &[u8],
        properties: &BasicProperties,
    ) -> Result<bool, Error> {
        let channel = match &self.channel {
            Some(channel) if channel.status().connected() => channel.clone(),
            _ => {
                let connection = self.link.connection().await?;
                let channel = open_channel(&connection).await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|error| Error::amqp("confirm.select", "", &error))?;
                let outcomes = channel
                    .basic_consume(
                        REPLY_TO.into(),
                        "".into(),
                        BasicConsumeOptions {
                            no_ack: true,
                            ..BasicConsumeOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|error| Error::amqp("basic.consume", REPLY_TO, &error))?;
                tokio::spawn(route_outcomes(outcomes, Arc::clone(&self.waiting)));
                self.declared.clear();
                self.channel = Some(channel.clone());
                self.link.ready();
                channel
            }
        };
        if !self.declared.contains(&shard) {
            self.topology.declare_command_queue(&channel, shard).await?;
            self.declared.insert(shard);
        }
        let queue = self.topology.command_queue(shard);
        let confirm = channel
            .basic_publish(
                ShortString::default(),
                queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                payload,
                properties.clone(),
            )
            .await
            .map_err(|error| Error::amqp("basic.publish", &queue, &error))?
            .await
            .map_err(|error| Error::amqp("basic.publish confirm", &queue, &error))?;
        Ok(matches!(
            confirm,
            Confirmation::Ack(None) | Confirmation::NotRequested
        ))
    }
}

/// Hands each outcome arriving on a sender's channel to whoever waits for it; ends
/// with the channel. Waiters stay registered: the next channel's task may serve them,
/// and [`CommandSender::send_for_outcome`] drops those whose callers gave up.
async fn route_outcomes(mut outcomes: lapin::Consumer, waiting: Waiting) {
    while let Some(Ok(delivery)) = outcomes.next().await {
        match shardmesh_proto::decode::<CommandOutcome>(&delivery.data) {
            Ok(outcome) => {
                if let Some(tell) = lock(&waiting).remove(&outcome.id) {
                    let _ = tell.send(outcome);
                }
            }
            Err(error) => tracing::warn!(%error, "undecodable command outcome skipped"),
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A gateway node's side of the command queues: one connection, a channel per shard.
#[derive(Debug)]
pub struct CommandInbox {
    link: Mutex<Link>,
    topology: Topology,
    backoff: Backoff,
    shutdown: CancellationToken,
}

/// One command as a shard's subscription received it.
#[derive(Debug)]
pub struct CommandDelivery {
    /// The command, or why it could not be decoded (it is acknowledged and reported,
    /// never sent).
    pub command: Result<CommandEnvelope, shardmesh_proto::Error>,
    /// Whether the broker delivered it before (to this node or another).
    pub redelivered: bool,
    /// Where the sender waits for the outcome, if it does.
    pub reply_to: Option<String>,
    /// What [`ShardCommands::ack`] takes once the command is done with.
    pub ticket: Ticket,
}

/// Identifies one delivery for its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    tag: u64,
    generation: u64,
}

/// What a shard's subscription hands the shard.
#[derive(Debug)]
pub enum InboxItem {
    /// The next command of the queue, in order.
    Command(CommandDelivery),
    /// The subscription was re-made: every delivery not acknowledged so far goes back
    /// to the queue and comes again, in order; drop the ones still waiting.
    Restarted,
}

/// A command done with: acknowledged, and its outcome sent to a waiting sender.
#[derive(Debug)]
struct Done {
    ticket: Ticket,
    reply: Option<(String, Vec<u8>)>,
}

/// A shard's subscription to its command queue, run by a task of its own so that a
/// reconnect never holds up the shard.
#[derive(Debug)]
pub struct ShardCommands {
    items: mpsc::Receiver<InboxItem>,
    acks: mpsc::UnboundedSender<Done>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl CommandInbox {
    /// The inbox of a gateway node; it connects when the first shard subscribes.
    pub fn new(
        config: &BrokerConfig,
        topology: &Topology,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            link: Mutex::new(Link::new(
                Arc::new(config.clone()),
                "command inbox",
                shutdown.clone(),
            )),
            topology: topology.clone(),
            backoff: config.backoff(),
            shutdown,
        })
    }

    /// Subscribes to `shard`'s queue with `prefetch` commands in flight at most.
    ///
    /// The broker makes this the queue's active consumer once the previous one (the
    /// shard's last owner) is gone; until then nothing arrives.
    pub fn subscribe(self: &Arc<Self>, shard: u32, prefetch: u16) -> ShardCommands {
        let (items_tx, items) = mpsc::channel(usize::from(prefetch.max(1)));
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let stop = self.shutdown.child_token();
        let task =
            tokio::spawn(Arc::clone(self).run(shard, prefetch, items_tx, acks_rx, stop.clone()));
        ShardCommands {
            items,
            acks,
            stop,
            task,
        }
    }

    /// Subscribes `shard` on the shared connection: its channel and consumer, and the
    /// connection they run on (to tell a lost subscription from a lost connection).
    async fn channel(
        &self,
        shard: u32,
        prefetch: u16,
    ) -> Result<(Arc<Connection>, Channel, lapin::Consumer), Error> {
        let connection = self.link.lock().await.connection().await?;
        let setup = async {
            let channel = open_channel(&connection).await?;
            let queue = self.topology.declare_command_queue(&channel, shard).await?;
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await
                .map_err(|error| Error::amqp("basic.qos", &queue, &error))?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|error| Error::amqp("basic.consume", &queue, &error))?;
            Ok::<_, Error>((channel, consumer))
        };
        // A failure here is this shard's channel's, not the connection's: every shard
        // shares the connection, and the link re-makes it by itself once it is dead.
        let (channel, consumer) = setup.await?;
        // One shard subscribed: the connection serves again.
        self.link.lock().await.ready();
        Ok((connection, channel, consumer))
    }

    async fn run(
        self: Arc<Self>,
        shard: u32,
        prefetch: u16,
        items: mpsc::Sender<InboxItem>,
        mut acks: mpsc::UnboundedReceiver<Done>,
        stop: CancellationToken,
    ) {
        let mut generation = 0;
        // Failed attempts of this shard's subscription: each shard backs off on its own,
        // so one shard's trouble neither drops nor slows the others.
        let mut attempt = 0;
        // Set while this shard's subscription keeps failing on a live connection: the
        // first failure is a WARN, the ones after it DEBUG.
        let mut failing = FailureRun::default();
        loop {
            if attempt > 0 {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(self.backoff.next_delay(attempt - 1)) => {}
                }
            }
            let subscribed = tokio::select! {
                () = stop.cancelled() => return,
                subscribed = self.channel(shard, prefetch) => subscribed,
            };
            let (connection, channel, mut consumer) = match subscribed {
                Ok(subscribed) => {
                    if let Some(run) = failing.ended() {
                        tracing::info!(
                            shard,
                            failures = run.failures,
                            outage_ms = run.millis(),
                            "command queue subscribed again"
                        );
                    }
                    subscribed
                }
                Err(Error::Cancelled) => return,
                Err(error) => {
                    log_subscription_failure(shard, attempt, &error, failing.failed());
                    attempt += 1;
                    continue;
                }
            };
            let subscribed_at = std::time::Instant::now();
            generation += 1;
            if generation > 1 && items.send(InboxItem::Restarted).await.is_err() {
                return;
            }
            let lost = loop {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {
                        // What the shard wrote is acknowledged first; the rest goes back
                        // to the queue, in order, for the next owner.
                        while let Ok(done) = acks.try_recv() {
                            let _ = settle(&channel, generation, done).await;
                        }
                        let _ = channel
                            .basic_nack(0, BasicNackOptions { multiple: true, requeue: true })
                            .await;
                        let _ = channel
                            .basic_cancel(consumer.tag().as_str().into(), BasicCancelOptions::default())
                            .await;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            channel.close(200, "shard released".into()),
                        )
                        .await;
                        return;
                    }
                    done = acks.recv() => {
                        let Some(done) = done else { return };
                        if let Err(error) = settle(&channel, generation, done).await {
                            break error.to_string();
                        }
                    }
                    delivery = consumer.next() => {
                        let delivery = match delivery {
                            Some(Ok(delivery)) => delivery,
                            Some(Err(error)) => break error.to_string(),
                            None => break "consumer cancelled by the broker".to_owned(),
                        };
                        let item = InboxItem::Command(CommandDelivery {
                            command: shardmesh_proto::decode(&delivery.data),
                            redelivered: delivery.redelivered,
                            reply_to: delivery
                                .properties
                                .reply_to()
                                .as_ref()
                                .map(ToString::to_string),
                            ticket: Ticket {
                                tag: delivery.delivery_tag,
                                generation,
                            },
                        });
                        if items.send(item).await.is_err() {
                            return;
                        }
                    }
                }
            };
            if connection.status().connected() {
                tracing::warn!(shard, reason = %lost, "command queue subscription lost, re-subscribing");
            } else {
                // The shared connection went: its link logs that once for every shard.
                tracing::debug!(shard, reason = %lost, "command queue subscription lost with the connection, re-subscribing");
            }
            attempt = attempts_after_loss(attempt, subscribed_at.elapsed(), self.backoff.max());
        }
    }
}

/// Logs that subscribing `shard` failed with `error`; `first` when it begins a run of
/// failures (a WARN; the rest of the run is DEBUG).
fn log_subscription_failure(shard: u32, attempt: u32, error: &Error, first: bool) {
    if !error.is_retryable() {
        // Not a connection problem (a queue declared with other arguments, refused
        // access): say so, and keep trying without hammering.
        tracing::error!(shard, %error, "cannot subscribe to the command queue");
    } else if first {
        tracing::warn!(shard, %error, "command queue subscription failed, retrying");
    } else {
        tracing::debug!(shard, %error, attempt, "command queue subscription failed again, retrying");
    }
}

impl ShardCommands {
    /// The next item, or `None` once the subscription has stopped (shutdown).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn next(&mut self) -> Option<InboxItem> {
        self.items.recv().await
    }

    /// Acknowledges `delivery`: it was written to Discord (or reported as expired or
    /// rejected) and leaves the queue.
    pub fn ack(&self, ticket: Ticket) {
        let _ = self.acks.send(Done {
            ticket,
            reply: None,
        });
    }

    /// Acknowledges a delivery and sends `outcome` to the sender waiting at
    /// `reply_to` (best effort: a sender that is gone is not waited for).
    pub fn ack_with_outcome(&self, ticket: Ticket, reply_to: String, outcome: &CommandOutcome) {
        let reply = shardmesh_proto::encode(outcome)
            .map_err(|error| tracing::warn!(%error, "command outcome not encoded"))
            .ok()
            .map(|bytes| (reply_to, bytes));
        let _ = self.acks.send(Done { ticket, reply });
    }

    /// Stops the subscription: whatever was not acknowledged goes back to the queue, in
    /// order, for the shard's next owner. Waits until the broker has it back.
    pub async fn close(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Acknowledges `done` on `channel` (a ticket of an earlier channel is void: the broker
/// requeued it) and sends its outcome.
async fn settle(channel: &Channel, generation: u64, done: Done) -> Result<(), lapin::Error> {
    if done.ticket.generation == generation {
        channel
            .basic_ack(done.ticket.tag, BasicAckOptions::default())
            .await?;
    }
    if let Some((reply_to, bytes)) = done.reply {
        // Not confirmed, not mandatory: a sender that is gone loses nothing.
        channel
            .basic_publish(
                ShortString::default(),
                reply_to.as_str().into(),
                BasicPublishOptions::default(),
                &bytes,
                BasicProperties::default(),
            )
            .await?;
    }
    Ok(())
}

/// A shard's command queue as the broker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandBacklog {
    /// The shard.
    pub shard: u32,
    /// Commands waiting in the queue; what the owner has taken and not yet written
    /// (up to its prefetch) is not counted here but in its metrics.
    pub waiting: u32,
    /// Subscribers: the shard's owner, two for a moment during a hand-over, none while
    /// nobody owns it (commands then wait).
    pub readers: u32,
}

/// Reads the command queue of every shard of `topology` (see
/// [`Topology::with_command_queues`]) with passive declares, so nothing is created;
/// shards whose queue does not exist yet (no command sent, no owner subscribed) are
/// left out.
///
/// # Errors
///
/// [`Error::Unreachable`] if the broker cannot be reached; [`Error::ConnectionLost`]
/// if it goes away while reading.
pub async fn command_backlog(
    config: &BrokerConfig,
    topology: &Topology,
) -> Result<Vec<CommandBacklog>, Error> {
    let mut link = Link::new(
        Arc::new(config.clone()),
        "command-backlog",
        CancellationToken::new(),
    );
    let connection = link.connection().await?;
    let read = read_backlog(&connection, topology).await;
    link.close().await;
    read
}

async fn read_backlog(
    connection: &lapin::Connection,
    topology: &Topology,
) -> Result<Vec<CommandBacklog>, Error> {
    let mut backlog = Vec::new();
    let mut channel = open_channel(connection).await?;
    for shard in 0..topology.command_shards() {
        let name = topology.command_queue(shard);
        let declared = channel
            .queue_declare(
                name.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..lapin::options::QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared.map_err(|error| Error::amqp("queue.declare", &name, &error)) {
            Ok(queue) => backlog.push(CommandBacklog {
                shard,
                waiting: queue.message_count(),
                readers: queue.consumer_count(),
            }),
            // The broker closed the channel over the missing queue: a new one.
            Err(Error::NotFound { .. }) => channel = open_channel(connection).await?,
            Err(error) => return Err(error),
        }
    }
    let _ = channel.close(200, "read".into()).await;
    Ok(backlog)
}
