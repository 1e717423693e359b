//! The one harness that drives a shardmesh cluster: every crate's tests and benchmarks,
//! the end-to-end scenarios in `tests/` and `shardmesh demo` use it, so each piece
//! exists once.
//!
//! - [`broker_url`], [`require_broker`]: the shared RabbitMQ, failing loudly when it is
//!   missing.
//! - [`unique_name`]: cluster names no other test or run uses.
//! - [`eventually`], [`wait_until`], [`wait_for`], [`holds_for`]: conditions with
//!   deadlines, never sleeps.
//! - [`FaultProxy`]: a TCP proxy that cuts connections and plays an unreachable host.
//! - [`PrivateBroker`]: a RabbitMQ node of one's own, to restart at will or to run the
//!   demo where none runs.
//! - [`NodeProcess`]: one `shardmesh gateway` or `consumer` process (or a bot built on
//!   the library, found with [`example`]), its log, endpoints and signals; [`Fleet`] a test's (or the demo's) set of them; [`NodeConfig`] writes
//!   a node's config file as a user would.
//! - [`Truth`] and [`Verdict`]: what the simulator sent against what arrived.
//!
//! It names no shardmesh crate but the simulator, so it sits second in the layout and
//! any crate may use it in its own tests.

mod broker;
mod clock;
mod fault_proxy;
mod fleet;
mod http;
mod names;
mod node_config;
mod presences;
mod private_broker;
mod process;
mod truth;
mod verdict;
mod wait;

pub use broker::{DEFAULT_BROKER_URL, broker_authority, broker_url, require_broker};
pub use clock::unix_ms;
pub use fault_proxy::FaultProxy;
pub use fleet::Fleet;
pub use http::{Metrics, Response, get, post_json};
pub use names::unique_name;
pub use node_config::{ConsumerTuning, NodeConfig, Timings};
pub use presences::{
    Received, presence_d, presence_frame, presence_markers, received_presences,
    received_presences_since,
};
pub use private_broker::PrivateBroker;
pub use process::{
    Finished, Launch, NodeProcess, binary, example, file_tail, finish, listening_addr, run_to_exit,
    spawn_command,
};
pub use truth::{Id, Sent, SessionShard, Truth};
pub use verdict::{Arrival, Verdict, detail};
pub use wait::{eventually, holds_for, wait_for, wait_until, within};

/// A benchmark's knob: the environment variable `name` parsed, or `default` when it is
/// unset or does not parse.
pub fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
