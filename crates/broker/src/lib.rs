//! shardmesh's RabbitMQ layer: the only crate that speaks AMQP.
//!
//! - [`Topology`]: a cluster's streams and exchanges, declared idempotently on every
//!   connect and deletable as a whole.
//! - [`Publisher`]: confirmed, mandatory publishing into streams with a bounded window;
//!   unconfirmed messages are handed back. Its per-source confirmed [`Watermarks`] can
//!   be read and waited on from other tasks.
//! - [`StreamReader`]: ordered stream consumption that survives reconnects with no gap
//!   and no repeat.
//! - [`NodeBus`]: a node's announce/control queue, announcements and control RPC.
//! - [`CommandSender`] / [`CommandInbox`]: gateway commands through a durable queue per
//!   shard, consumed by the shard's owner and acknowledged once written to Discord.
//!
//! Every component owns its connection and reconnects on its own with capped, jittered
//! exponential backoff (lapin's auto-recovery is not used); what happens to it is
//! reported as [`ConnectionEvent`]s and typed [`Error`]s, never panics. An outage is
//! logged once per connection (a WARN when lost, an INFO with its length when set up
//! again), the retries in between at DEBUG; [`FailureRun`] does the same for callers'
//! own retries.
//!
//! ```no_run
//! # async fn example() -> Result<(), shardmesh_broker::Error> {
//! use shardmesh_broker::{BrokerConfig, Outgoing, Publisher, StartAt, StreamId, StreamReader, Topology};
//! use tokio_util::sync::CancellationToken;
//!
//! let config = BrokerConfig::default();
//! let topology = Topology::new("default", 16, &config)?;
//! let shutdown = CancellationToken::new();
//! let mut publisher = Publisher::connect(&config, &topology, shutdown.clone()).await?;
//! publisher
//!     .publish(Outgoing { stream: StreamId::Events(0), source: 0, seq: 1, payload: b"hi".to_vec() })
//!     .await?;
//! publisher.flush().await?;
//! let mut reader =
//!     StreamReader::connect(&config, &topology, StreamId::Events(0), StartAt::First, shutdown).await?;
//! let message = reader.next().await?;
//! println!("offset {}: {} bytes", message.offset, message.payload.len());
//! # Ok(()) }
//! ```

mod announce;
mod backoff;
mod commands;
mod config;
mod connection;
pub mod error;
mod failure_run;
mod publisher;
mod reader;
mod request;
mod rpc;
mod topology;
mod watermarks;

pub use announce::{Incoming, NodeBus};
pub use backoff::Backoff;
pub use commands::{
    CommandBacklog, CommandDelivery, CommandInbox, CommandSender, InboxItem, ShardCommands, Ticket,
    command_backlog,
};
pub use config::{BrokerConfig, BrokerUrl};
pub use connection::ConnectionEvent;
pub use error::Error;
pub use failure_run::{EndedRun, FailureRun};
pub use publisher::{Outgoing, Publisher, PublisherEvent};
pub use reader::{StartAt, StreamMessage, StreamReader};
pub use request::IncomingRequest;
pub use rpc::BroadcastOutcome;
pub use topology::{StreamId, Topology};
pub use watermarks::Watermarks;
