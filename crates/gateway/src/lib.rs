//! The gateway node: Discord shards spread over the mesh, their events published to the
//! broker, moved between nodes by RESUME.
//!
//! - [`GatewayShards`]: the node's [`LeaseHolder`](shardmesh_mesh::LeaseHolder) for
//!   `shard/<n>` leases: one twilight shard per lease, raw dispatches published with the
//!   lease epoch, hand-over by RESUME, sessions saved at their last confirmed seq.
//! - [`PublishLoop`]: the task owning the broker publisher; shards reach it through a
//!   bounded queue ([`PublishHandle`]), so a slow broker slows the shards' reading.
//! - [`StoreQueue`]: twilight's identify queue, paced cluster-wide through the store.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<shardmesh_store::SqliteStore>,
//! #     spec: shardmesh_store::ClusterSpec,
//! #     publisher: shardmesh_broker::Publisher) -> Result<(), Box<dyn std::error::Error>> {
//! use shardmesh_gateway::{BotToken, GatewayConfig, GatewayShards, PublishLoop};
//! use tokio_util::sync::CancellationToken;
//!
//! let config = GatewayConfig { token: BotToken::new("..."), ..GatewayConfig::default() };
//! config.validate()?;
//! let (publish_loop, handle) = PublishLoop::new(publisher, "node-a", spec.partitions, &config);
//! let stop = CancellationToken::new();
//! let publishing = tokio::spawn(publish_loop.run(stop.clone()));
//! let shards = GatewayShards::new(config, spec, "node-a", store, handle, stop.clone());
//! // Give `shards` to shardmesh_mesh::run as the holder; when it returns (drained):
//! stop.cancel();
//! publishing.await??;
//! shards.stopped().await;
//! # Ok(()) }
//! ```

mod batching;
mod config;
mod confirms;
pub mod error;
mod frame;
mod holder;
mod identify_queue;
mod publish;
mod shard;
mod status;

pub use config::{BotToken, GatewayConfig};
pub use error::Error;
pub use holder::GatewayShards;
pub use identify_queue::StoreQueue;
pub use publish::{PublishHandle, PublishLoop};
pub use status::{GatewayCounters, ShardPhase, ShardStatus};
