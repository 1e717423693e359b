//! shardmesh consumer nodes, as a library for Rust bots: every event of the cluster's
//! streams reaches the group's [`Handler`] once, in order per shard, however nodes come
//! and go.
//!
//! - [`run`] and [`ConsumerSettings`]: a whole consumer node (store, broker, mesh,
//!   `/health` `/ready` `/metrics`, drain on shutdown) from the same layered
//!   configuration as the binary.
//! - [`ConsumerNode`]: the same node on its own task, for tests, benchmarks and
//!   programs holding several: its partitions and counters, a drain, a crash.
//! - [`ConsumerPartitions`]: the [`LeaseHolder`](shardmesh_mesh::LeaseHolder) of a
//!   consumer group's `partition/<group>/<p>` leases, which [`run`] gives the mesh;
//!   the nodes of a group share the partitions, and each group reads every partition.
//! - [`Handler`] and [`Delivery`]: the bot's code and what it receives (envelope
//!   fields, the raw payload, twilight-model's [`Event`](twilight_model::gateway::event::Event)
//!   on demand).
//! - [`Commands`]: gateway commands back to Discord (presence, voice state, member
//!   requests, …) through the mesh, to whichever gateway node holds the shard; with
//!   `consumer.commands_bind` set, the node also takes them over HTTP
//!   (`POST /commands`, a [`CommandRequest`] as JSON).
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
//! A complete bot (`shardmesh consumer` runs the same node with a built-in [`sink`]):
//!
//! ```no_run
//! use shardmesh_consumer::{ConsumerSettings, Delivery, Error};
//! use twilight_model::gateway::event::Event;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // defaults < the file < SHARDMESH__SECTION__KEY, exactly as the binary reads it.
//!     let settings = ConsumerSettings::load(Some("shardmesh.toml".as_ref()))?;
//!     let handler = |delivery: Delivery| async move {
//!         if let Event::MessageCreate(message) = delivery.event()? {
//!             if message.content == "!ping" {
//!                 println!("pong to {} (event {:?})", message.channel_id, delivery.id());
//!             }
//!         }
//!         Ok::<(), Error>(())
//!     };
//!     // SIGTERM or Ctrl-C hands the partitions over with a final checkpoint.
//!     let shutdown = shardmesh_consumer::shutdown_on_signal();
//!     shardmesh_consumer::run(settings, handler, shutdown).await?;
//!     Ok(())
//! }
//! ```

mod command_api;
mod commands;
mod config;
mod counters;
mod dead_letters;
pub mod dedup;
mod delivery;
pub mod error;
mod handler;
mod holder;
mod metrics;
mod node;
mod partition;
pub mod sink;

pub use commands::{Accepted, CommandError, CommandRequest, Commands, InvalidCommand};
pub use config::{ApiToken, ConsumerConfig};
pub use counters::ConsumerCounters;
pub use delivery::Delivery;
pub use error::Error;
pub use handler::Handler;
pub use holder::{ConsumerPartitions, ConsumerSetup};
pub use node::{ConsumerNode, ConsumerSettings, run};
pub use shardmesh_mesh::shutdown_on_signal;
