//! The gateway node: Discord shards spread over the mesh, their events published to the
//! broker, moved between nodes by RESUME.
//!
//! - [`run`] and [`GatewaySettings`]: a whole gateway node (store, `GET /gateway/bot`,
//!   broker, mesh, `/health` `/ready` `/metrics`, drain on shutdown) from the same
//!   layered configuration as the binary.
//! - [`GatewayShards`]: the node's [`LeaseHolder`](shardmesh_mesh::LeaseHolder) for
//!   `shard/<n>` leases: one twilight shard per lease, raw dispatches published with the
//!   lease epoch, hand-over by RESUME, sessions saved at their last confirmed seq.
//! - [`PublishLoop`]: the task owning the broker publisher; shards reach it through a
//!   bounded queue ([`PublishHandle`]), so a slow broker slows the shards' reading.
//! - [`StoreQueue`]: twilight's identify queue, paced cluster-wide through the store.
//!
//! Each owned shard also consumes its gateway command queue
//! ([`CommandInbox`](shardmesh_broker::CommandInbox)) and writes the commands to Discord
//! within the connection's rate budget, acknowledging each once written.
//!
//! A gateway node inside a Rust program (what `shardmesh gateway` runs):
//!
//! ```no_run
//! use shardmesh_gateway::GatewaySettings;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // TLS to Discord goes through rustls, which needs a crypto provider installed.
//!     let _ = rustls::crypto::ring::default_provider().install_default();
//!     // defaults < the file < SHARDMESH__SECTION__KEY, exactly as the binary reads it.
//!     let settings = GatewaySettings::load(Some("shardmesh.toml".as_ref()))?;
//!     // SIGTERM or Ctrl-C hands every shard over by RESUME, then `run` returns.
//!     shardmesh_gateway::run(settings, shardmesh_gateway::shutdown_on_signal()).await?;
//!     Ok(())
//! }
//! ```

mod batching;
mod budget;
mod cluster_spec;
mod commands;
mod compression;
mod config;
pub mod error;
mod frame;
mod holder;
mod identify_queue;
mod metrics;
mod node;
mod publish;
mod shard;
mod status;

pub use compression::Compression;
pub use config::{BotToken, GatewayConfig};
pub use error::Error;
pub use holder::GatewayShards;
pub use identify_queue::StoreQueue;
pub use node::{GatewayNode, GatewaySettings, run};
pub use publish::{PublishHandle, PublishLoop};
pub use shardmesh_mesh::shutdown_on_signal;
pub use status::{GatewayCounters, ShardCommandCounts, ShardPhase, ShardStatus};
