//! shardmesh consumer nodes, as a library for Rust bots: every event of the cluster's
//! streams reaches the group's [`Handler`] once, in order per shard, however nodes come
//! and go.
//!
//! - [`ConsumerPartitions`]: the [`LeaseHolder`](shardmesh_mesh::LeaseHolder) of a
//!   consumer group's `partition/<group>/<p>` leases. Run it with
//!   [`shardmesh_mesh::run`]; the nodes of a group share the partitions, and each
//!   group reads every partition.
//! - [`Handler`] and [`Delivery`]: the bot's code and what it receives (envelope
//!   fields, the raw payload, twilight-model's [`Event`](twilight_model::gateway::event::Event)
//!   on demand).
//! - [`ConsumerConfig`]: `[consumer]` in the config file.
//!
//! What the group promises its handler:
//!
//! - **Nothing twice.** Replays after a gateway hand-over, publisher retries and stale
//!   gateway owners are dropped before the handler by per-shard marks
//!   `(epoch, session, seq)` kept in the partition's checkpoint. A hand-over of a
//!   partition repeats nothing; a consumer that is killed repeats at most what it
//!   handled since its last checkpoint (set `checkpoint_every_events = 1` to bound
//!   that to the event in flight). [`Delivery::id`] is stable across such repeats.
//!   Per shard, against the newest event handled: a lower epoch is a stale gateway
//!   owner (dropped); the same session with a seq at or below the mark is a replay
//!   (dropped, whatever its epoch); a different session with an epoch at least the
//!   mark's is a new IDENTIFY and starts over, so its low seqs are delivered.
//! - **Nothing lost.** A failing handler is retried with backoff, then the event goes
//!   to the dead-letter stream `shardmesh.<cluster>.dlq.<group>` as a
//!   [`DeadLetter`](shardmesh_proto::DeadLetter) with the error; a panic counts as a
//!   failure; an undecodable stream message is dead-lettered with its offset. If the
//!   dead letter cannot be published, the partition waits and retries: it never reads
//!   past an event that is neither handled nor dead-lettered.
//! - **In order.** One event at a time per partition, in stream order; partitions run
//!   in parallel.
//!
//! A complete consumer node:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use shardmesh_broker::{BrokerConfig, NodeBus, Topology};
//! use shardmesh_consumer::{ConsumerConfig, ConsumerPartitions, ConsumerSetup, Delivery, Handler};
//! use shardmesh_mesh::{LeaseConfig, MembershipConfig, MeshNode, NodeIdentity, NodeStatus};
//! use shardmesh_proto::{NodeRole, NodeState};
//! use shardmesh_store::{SqliteConfig, SqliteStore};
//! use tokio_util::sync::CancellationToken;
//! use twilight_model::gateway::event::Event;
//!
//! struct PingBot;
//!
//! impl Handler for PingBot {
//!     type Error = shardmesh_consumer::Error;
//!
//!     async fn handle(&self, delivery: Delivery) -> Result<(), Self::Error> {
//!         if let Event::MessageCreate(message) = delivery.event()? {
//!             if message.content == "!ping" {
//!                 println!("pong to {} (event {:?})", message.channel_id, delivery.id());
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let node = "consumer-1".to_owned();
//! let broker = BrokerConfig::default();
//! let store = Arc::new(SqliteStore::open(&SqliteConfig::default(), "default").await?);
//! let topology = Topology::new("default", 16, &broker)?;
//! let config = ConsumerConfig { group: "bots".into(), ..ConsumerConfig::default() };
//! let lease = LeaseConfig::default();
//! let shutdown = CancellationToken::new();
//!
//! let partitions = ConsumerPartitions::new(
//!     ConsumerSetup {
//!         config: config.clone(),
//!         broker: broker.clone(),
//!         topology: topology.clone(),
//!         node: node.clone(),
//!         store: Arc::clone(&store),
//!         lease: lease.clone(),
//!         handler: PingBot,
//!     },
//!     CancellationToken::new(),
//! )?;
//! let (bus, inbox) = NodeBus::connect(&broker, &topology, &node, shutdown.clone()).await?;
//! let mesh = MeshNode {
//!     identity: NodeIdentity {
//!         node,
//!         role: NodeRole::Consumer,
//!         group: Some(config.group),
//!         capacity: 1,
//!         address: None,
//!     },
//!     keys: partitions.keys(),
//!     store,
//!     holder: partitions.clone(),
//!     lease,
//!     membership: MembershipConfig::default(),
//! };
//! let (status, _) = tokio::sync::watch::channel(NodeStatus {
//!     state: NodeState::Starting,
//!     owns: Vec::new(),
//!     peers: 0,
//! });
//! // Ctrl-C drains the node: its partitions are handed over with a final checkpoint.
//! let drain = shutdown.clone();
//! tokio::spawn(async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     drain.cancel();
//! });
//! shardmesh_mesh::run(mesh, &bus, inbox, &status, shutdown).await;
//! partitions.stopped().await;
//! bus.shutdown().await;
//! println!("{:?}", partitions.counters());
//! # Ok(()) }
//! ```

mod config;
mod counters;
mod dead_letters;
mod dedup;
mod delivery;
pub mod error;
mod handler;
mod holder;
mod partition;

pub use config::ConsumerConfig;
pub use counters::ConsumerCounters;
pub use delivery::Delivery;
pub use error::Error;
pub use handler::Handler;
pub use holder::{ConsumerPartitions, ConsumerSetup};
