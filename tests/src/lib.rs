//! End-to-end scenarios across real processes: `shardmesh gateway` nodes, the
//! simulator as Discord, the real RabbitMQ and a SQLite store file, checked against the
//! simulator's ground truth and what the event streams actually hold.
//!
//! The harness:
//! - [`TestCluster`]: one scenario's simulator, store, topology and node processes,
//!   cleaned up even when the scenario panics (then each node's log tail is printed).
//! - [`NodeProcess`]: one `shardmesh gateway` (or `consumer`) process, its log, endpoints and signals.
//! - [`FaultProxy`]: a TCP proxy that cuts connections and plays an unreachable host.
//! - [`Truth`] and [`StreamReport`]: what the simulator sent against what the streams hold.
//! - [`eventually`], [`wait_until`], [`holds_for`]: conditions with deadlines, never sleeps.
//!
//! The scenarios run the `shardmesh` binary; see [`binary`] for where it is looked up.

mod cluster;
mod fault_proxy;
mod http;
mod node_config;
mod process;
mod sim_config;
mod streams;
mod truth;
mod wait;

pub mod consumer_process;
pub mod consumers;
pub mod dead_letters;
pub mod deliveries;
pub mod sink;

pub use cluster::{TestCluster, amqp_url, broker_authority, shared_broker, unique_name};
pub use fault_proxy::FaultProxy;
pub use http::{Metrics, Response, get};
pub use node_config::{NodeConfig, Timings};
pub use process::{Finished, NodeProcess, binary, run_to_exit};
pub use sim_config::sim_config;
pub use streams::{StreamContents, StreamReport, envelope_id, read_until_complete};
pub use truth::{Id, Truth};
pub use wait::{eventually, holds_for, wait_until};
