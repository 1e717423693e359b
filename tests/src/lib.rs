//! End-to-end scenarios across real processes: `shardmesh gateway` nodes, the
//! simulator as Discord, the real RabbitMQ and a SQLite store file, checked against the
//! simulator's ground truth and what the event streams actually hold.
//!
//! The scenarios' side of the harness (the rest is [`shardmesh_harness`], re-exported
//! here):
//! - [`TestCluster`]: one scenario's simulator, store, topology and gateway node
//!   processes, cleaned up even when the scenario panics (then each node's log tail is
//!   printed).
//! - [`consumers::ConsumerNodes`]: the scenario's consumer processes and the
//!   [`sink::Sink`] they post to (or another [`sink::EventSink`], such as the Python bot
//!   of [`python_receiver`]); [`deliveries::GroupReport`] what a group handled.
//! - [`StreamReport`]: what the event streams hold against the simulator's truth,
//!   judged with the consumer library's own dedup rule.
//!
//! - [`browser::Browser`]: a headless chromium showing a page, read and photographed
//!   over Chrome's remote debugging protocol (CDP).
//! - [`ctl::ctl`]: `shardmesh ctl` run as an operator runs it, and
//!   [`ctl::ctl_supervised`] beside a supervisor that restarts exited nodes.
//! - [`compose::ComposeProject`]: the mesh in containers, from the repository's
//!   `Dockerfile` and compose files.
//!
//! The scenarios run the `shardmesh` binary; see [`binary`] for where it is looked up.

mod cluster;
mod sim_config;
mod streams;

pub mod browser;
pub mod compose;
pub mod consumers;
pub mod ctl;
pub mod dead_letters;
pub mod deliveries;
pub mod python_receiver;
pub mod sink;

pub use cluster::{TestCluster, shared_broker};
pub use shardmesh_harness::{
    ConsumerTuning, FaultProxy, Finished, Fleet, Id, Metrics, NodeConfig, NodeProcess, Response,
    Sent, Timings, Truth, Verdict, binary, broker_authority, broker_url, eventually, finish, get,
    holds_for, post_json, presence_d, presence_markers, require_broker, run_to_exit, spawn_command,
    unique_name, wait_for, wait_until, within,
};
pub use sim_config::sim_config;
pub use streams::{StreamContents, StreamReport, envelope_id, read_until_complete};
