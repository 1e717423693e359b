//! The node bus: a node's own queue on the announce and control exchanges, the
//! announcements it sends and receives, and the connection task behind it (control
//! RPC is in `rpc.rs`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, Consumer};
use shardmesh_proto::{Announcement, ControlReply, ControlRequest};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::connection::{ConnectionEvent, Link};
use crate::request::{IncomingRequest, REPLY_TO};
use crate::topology::{check_name, open_channel};
use crate::{BrokerConfig, Error, Topology};

/// Something that arrived on a node's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    /// A node's announcement (this node's own ones included).
    Announcement(Announcement),
    /// A control request to this node (or to all nodes); answer with
    /// [`NodeBus::reply`].
    Request(IncomingRequest),
}

/// A node's presence on the broker: its exclusive, auto-delete queue bound to the
/// announce exchange and to the control exchange (`node.<id>` and `all`), announcement
/// publishing, and control RPC in both directions.
///
/// A background task owns the connection and reconnects on its own (re-declaring the
/// queue, which the broker deleted with the old connection). Dropping the bus or
/// calling [`NodeBus::shutdown`] closes the connection, and the broker deletes the
/// queue.
///
/// ```no_run
/// # async fn example() -> Result<(), shardmesh_broker::Error> {
/// use shardmesh_broker::{BrokerConfig, Incoming, NodeBus, Topology};
/// use shardmesh_proto::{Announcement, ControlOutcome, NodeRole, NodeState};
/// use tokio_util::sync::CancellationToken;
///
/// let config = BrokerConfig::default();
/// let topology = Topology::new("prod", 16, &config)?;
/// let (bus, mut inbox) = NodeBus::connect(&config, &topology, "n1", CancellationToken::new()).await?;
/// bus.announce(&Announcement::new("n1", NodeRole::Gateway, None, NodeState::Ready, 1, vec![], 0)).await?;
/// while let Some(incoming) = inbox.recv().await {
///     match incoming {
///         Incoming::Announcement(announcement) => println!("{} is {:?}", announcement.node, announcement.state),
///         Incoming::Request(request) => bus.reply(&request, ControlOutcome::Pong).await?,
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NodeBus {
    pub(crate) shared: Arc<Shared>,
    events: broadcast::Sender<ConnectionEvent>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// What the bus handle and its connection task share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) topology: Topology,
    pub(crate) node: String,
    /// The channel of the current connection, `None` while reconnecting. Requests are
    /// published on it because direct reply-to needs the consuming channel.
    pub(crate) channel: watch::Sender<Option<Channel>>,
    /// Reply routes by correlation id. A std mutex: held only to insert, remove or look
    /// up, never across an await.
    pub(crate) pending: Mutex<HashMap<String, mpsc::UnboundedSender<ControlReply>>>,
    pub(crate) next_id: AtomicU64,
}

impl NodeBus {
    /// Connects as node `node`, declares the exchanges and the node's queue, and starts
    /// the connection task.
    ///
    /// The returned receiver gets every announcement and control request; read it, or
    /// it grows.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] if the first connection attempt fails,
    /// [`Error::InvalidConfig`] for an invalid config or node id, [`Error::Refused`] if
    /// another connection holds this node's queue.
    pub async fn connect(
        config: &BrokerConfig,
        topology: &Topology,
        node: &str,
        shutdown: CancellationToken,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Incoming>), Error> {
        config.validate()?;
        check_name("node.id", node)?;
        let shutdown = shutdown.child_token();
        let mut link = Link::new(Arc::new(config.clone()), "node", shutdown.clone());
        let events = broadcast::channel(64).0;
        let shared = Arc::new(Shared {
            topology: topology.clone(),
            node: node.to_owned(),
            channel: watch::Sender::new(None),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let connection = link.connection().await?;
        let session = open_session(&shared, &connection).await?;
        shared.channel.send_replace(Some(session.channel.clone()));
        let (inbox, receiver) = mpsc::unbounded_channel();
        let tasks = TaskTracker::new();
        let link_events = link.events();
        tasks.spawn(forward_events(link_events, events.clone()));
        tasks.spawn(run(shared.clone(), link, session, inbox));
        tasks.close();
        Ok((
            Self {
                shared,
                events,
                shutdown,
                tasks,
            },
            receiver,
        ))
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// Publishes an announcement to every node of the cluster (fire and forget: the
    /// next heartbeat repeats it).
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] while the bus is reconnecting or if the publish fails;
    /// [`Error::Encode`] if the announcement cannot be encoded.
    pub async fn announce(&self, announcement: &Announcement) -> Result<(), Error> {
        let payload = shardmesh_proto::encode(announcement).map_err(Error::Encode)?;
        let exchange = self.shared.topology.announce_exchange();
        self.shared
            .publish(&exchange, "", &payload, BasicProperties::default(), None)
            .await
    }

    /// Connection events (connected, lost, retrying) of the bus.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    /// Closes the connection (the broker then deletes the node's queue) and waits for
    /// the connection task to end.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.wait().await;
    }
}

impl Drop for NodeBus {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Shared {
    /// Publishes on the current channel, waiting for a reconnect until `deadline`
    /// (without one, fails at once while reconnecting).
    pub(crate) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), Error> {
        let mut current = self.channel.subscribe();
        let channel = match deadline {
            Some(deadline) => {
                let connected =
                    tokio::time::timeout_at(deadline, current.wait_for(Option::is_some)).await;
                match connected {
                    Ok(Ok(channel)) => channel.clone(),
                    _ => None,
                }
            }
            None => current.borrow().clone(),
        };
        let Some(channel) = channel else {
            return Err(Error::ConnectionLost {
                operation: "basic.publish",
                reason: "the node bus is reconnecting".into(),
            });
        };
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                payload,
                properties,
            )
            .await
            .map(drop)
            .map_err(|error| Error::amqp("basic.publish", exchange, &error))
    }
}

struct Session {
    channel: Channel,
    inbox: Consumer,
    replies: Consumer,
}

/// Declares the exchanges and the node queue, binds it, and consumes it and the direct
/// reply-to pseudo-queue on one channel.
async fn open_session(shared: &Shared, connection: &Connection) -> Result<Session, Error> {
    let topology = &shared.topology;
    let channel = open_channel(connection).await?;
    topology.declare_exchanges(&channel).await?;
    let queue = topology.node_queue(&shared.node);
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|error| Error::amqp("queue.declare", &queue, &error))?;
    let bindings = [
        (topology.announce_exchange(), String::new()),
        (topology.control_exchange(), format!("node.{}", shared.node)),
        (topology.control_exchange(), "all".to_owned()),
    ];
    for (exchange, key) in bindings {
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| Error::amqp("queue.bind", &queue, &error))?;
    }
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let replies = channel
        .basic_consume(REPLY_TO.into(), "".into(), no_ack, FieldTable::default())
        .await
        .map_err(|error| Error::amqp("basic.consume", REPLY_TO, &error))?;
    let inbox = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .map_err(|error| Error::amqp("basic.consume", &queue, &error))?;
    Ok(Session {
        channel,
        inbox,
        replies,
    })
}

/// The connection task: serve a session until it fails, then reconnect.
async fn run(
    shared: Arc<Shared>,
    mut link: Link,
    first: Session,
    inbox: mpsc::UnboundedSender<Incoming>,
) {
    let shutdown = link.shutdown().clone();
    let mut session = Some(first);
    loop {
        let mut current = if let Some(current) = session.take() {
            current
        } else {
            // Only shutdown ends reconnecting.
            let Ok(connection) = link.connection().await else {
                break;
            };
            match open_session(&shared, &connection).await {
                Ok(current) => {
                    link.ready();
                    current
                }
                Err(error) => {
                    link.setup_failed(&error.to_string());
                    continue;
                }
            }
        };
        shared.channel.send_replace(Some(current.channel.clone()));
        let reason = loop {
            tokio::select! {
                () = shutdown.cancelled() => break None,
                delivery = current.inbox.next() => match delivery {
                    Some(Ok(delivery)) => dispatch_incoming(&shared, &inbox, &delivery),
                    Some(Err(error)) => break Some(error.to_string()),
                    None => break Some("node queue consumer cancelled".to_owned()),
                },
                delivery = current.replies.next() => match delivery {
                    Some(Ok(delivery)) => dispatch_reply(&shared, &delivery),
                    Some(Err(error)) => break Some(error.to_string()),
                    None => break Some("reply consumer cancelled".to_owned()),
                },
            }
        };
        shared.channel.send_replace(None);
        // Requests waiting on this connection learn it is gone.
        shared.pending.lock().expect("pending lock").clear();
        match reason {
            Some(reason) => link.lost(reason),
            None => break,
        }
    }
    link.close().await;
}

fn dispatch_incoming(
    shared: &Shared,
    inbox: &mpsc::UnboundedSender<Incoming>,
    delivery: &lapin::message::Delivery,
) {
    let topology = &shared.topology;
    let incoming = if delivery.exchange.as_str() == topology.announce_exchange() {
        shardmesh_proto::decode::<Announcement>(&delivery.data).map(Incoming::Announcement)
    } else {
        shardmesh_proto::decode::<ControlRequest>(&delivery.data)
            .map(|request| Incoming::Request(IncomingRequest::new(request, &delivery.properties)))
    };
    match incoming {
        Ok(incoming) => {
            let _ = inbox.send(incoming);
        }
        Err(error) => {
            warn!(node = %shared.node, exchange = %delivery.exchange, %error, "undecodable message on node queue, skipped");
        }
    }
}

fn dispatch_reply(shared: &Shared, delivery: &lapin::message::Delivery) {
    let Some(id) = delivery.properties.correlation_id() else {
        return;
    };
    let reply = match shardmesh_proto::decode::<ControlReply>(&delivery.data) {
        Ok(reply) => reply,
        Err(error) => {
            warn!(node = %shared.node, %error, "undecodable control reply, skipped");
            return;
        }
    };
    let pending = shared.pending.lock().expect("pending lock");
    if let Some(route) = pending.get(id.as_str()) {
        let _ = route.send(reply);
    } else {
        debug!(node = %shared.node, correlation = %id, "late control reply, dropped");
    }
}

async fn forward_events(
    mut from: broadcast::Receiver<ConnectionEvent>,
    to: broadcast::Sender<ConnectionEvent>,
) {
    loop {
        match from.recv().await {
            Ok(event) => {
                let _ = to.send(event);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
