//! The role-agnostic machinery gateway and consumer nodes share: the live membership view
//! built from announcements, the target assignment every node computes identically from
//! it (weighted rendezvous hashing with bounded loads), and the lease keeper that makes
//! the store agree with the assignment.

mod assignment;
mod config;
mod keeper;
mod membership;
mod node;

pub use assignment::{Candidate, assign};
pub use config::{LeaseConfig, MembershipConfig};
pub use keeper::{LeaseGuard, LeaseHolder, LeaseKeeper, StepReport};
pub use membership::{Change, Member, MembershipView};
pub use node::{MeshNode, NodeIdentity, NodeStatus, run};
