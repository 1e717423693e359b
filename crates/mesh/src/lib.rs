//! The role-agnostic machinery gateway and consumer nodes share: the live membership view
//! built from announcements, the target assignment every node computes identically from
//! it (weighted rendezvous hashing with bounded loads), the lease keeper that makes the
//! store agree with the assignment, and the node's life around its role's work.
//!
//! - [`MeshSettings`]: the layered configuration every node reads (defaults < file <
//!   `SHARDMESH__SECTION__KEY`), with [`RoleSection`] for a role's own section.
//! - [`NodeRuntime`]: start-up (HTTP face first, then the store and the broker, waited
//!   for while unreachable), the mesh loop, and the stop order, written once for both
//!   roles' runners; [`NodeTask`] holds a runner on its own task (status, drain, crash)
//!   for tests, benchmarks and programs running several nodes.
//! - [`run`]: the mesh loop itself: announce, watch the others, assign, keep leases.

mod assignment;
mod config;
pub mod error;
mod http;
mod keeper;
mod membership;
pub mod metric_values;
mod node;
mod runtime;
mod settings;
mod signals;

pub use assignment::{Candidate, assign};
pub use config::{LeaseConfig, MembershipConfig};
pub use error::Error;
pub use http::{Probes, ReadyCheck};
pub use keeper::{LeaseGuard, LeaseHolder, LeaseKeeper, StepReport};
pub use membership::{Change, Member, MembershipView};
pub use node::{MeshNode, NodeIdentity, NodeStatus, run};
pub use runtime::{Ended, NodeControls, NodeRuntime, NodeTask};
pub use settings::{
    ClusterSettings, MeshSettings, NodeSettings, RoleSection, RoleSettings, SettingsError,
    leaf_keys,
};
pub use signals::shutdown_on_signal;
