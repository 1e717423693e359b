//! shardmesh's source of truth: shard and partition leases with fencing epochs and the
//! state they carry, cluster-wide IDENTIFY pacing, the node registry and the action log.
//!
//! Two backends implement [`Store`]: [`SqliteStore`] for one host (several processes
//! share one file) and [`ScyllaStore`] for many. The same conformance suite
//! (`tests/conformance`) runs against both.

mod any;
mod cluster;
mod config;
pub mod error;
mod identify;
mod lease;
mod registry;
mod scylla;
mod sqlite;
mod store;

pub use any::{AnyStore, open};
pub use cluster::{ClusterIdentity, ClusterSpec};
pub use config::{Backend, DEFAULT_SQLITE_PATH, ScyllaConfig, Secret, SqliteConfig, StoreConfig};
pub use error::{Error, ErrorKind};
pub use identify::{IDENTIFY_INTERVAL, IdentifyBudget, IdentifyGrant};
pub use lease::{
    Checkpoint, DedupMark, InvalidLeaseKey, Lease, LeaseGrant, LeaseKey, LeaseState, ShardSession,
};
pub use registry::{Action, NodeRecord};
pub use scylla::ScyllaStore;
pub use sqlite::SqliteStore;
pub use store::Store;
