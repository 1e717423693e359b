//! The role-agnostic machinery gateway and consumer nodes share: the live membership view
//! built from announcements, and the target assignment every node computes identically
//! from it (weighted rendezvous hashing with bounded loads).

mod assignment;
mod membership;

pub use assignment::{Candidate, assign};
pub use membership::{Change, Member, MembershipView};
