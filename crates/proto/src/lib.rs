//! The messages shardmesh nodes exchange through RabbitMQ, and their codec.
//!
//! Every message is MessagePack encoded as a map with named fields (so readers in any
//! language can decode it without a schema) and carries a `v` wire version. The format
//! is specified byte by byte in `docs/wire-format.md`; the golden tests at the bottom of
//! each module pin it.
//!
//! - [`EventBatch`]: a stream message, 1..N [`EventEnvelope`]s of one partition in order.
//! - [`Announcement`]: a node telling the mesh who it is and what it owns.
//! - [`ControlRequest`] / [`ControlReply`]: requests to one node or to all of them.
//! - [`NodeDiag`]: a node's answer to a diagnostics request.
//! - [`DeadLetter`]: an event a consumer group gave up on, with the reason.
//! - [`CommandEnvelope`] / [`CommandOutcome`]: a gateway command on its way to the
//!   shard's owner, and what became of it.
//!
//! ```
//! use shardmesh_proto::{decode, encode, EventBatch, EventEnvelope};
//!
//! let batch = EventBatch::new(3, "node-a", vec![EventEnvelope {
//!     shard: 3,
//!     shard_count: 16,
//!     epoch: 7,
//!     session: "abc".into(),
//!     seq: 42,
//!     event_type: "MESSAGE_CREATE".into(),
//!     guild_id: Some(81_384_788_765_712_384),
//!     received_at_ms: 1_700_000_000_000,
//!     payload: r#"{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{}}"#.into(),
//! }]);
//! let bytes = encode(&batch)?;
//! let back: EventBatch = decode(&bytes)?;
//! assert_eq!(back, batch);
//! # Ok::<(), shardmesh_proto::Error>(())
//! ```

mod announce;
mod codec;
mod command;
mod config_check;
mod control;
mod dead_letter;
mod diag;
pub mod error;
mod event;

pub use announce::{Announcement, NodeRole, NodeState, StoreIdentity};
pub use codec::{WireMessage, decode, encode};
pub use command::{
    CommandEnvelope, CommandOutcome, CommandStatus, GATEWAY_COMMAND_OPS, MAX_COMMAND_BYTES,
    OP_VOICE_STATE_UPDATE, shard_of_guild,
};
pub use config_check::{InvalidConfig, check_range};
pub use control::{ControlCommand, ControlOutcome, ControlReply, ControlRequest};
pub use dead_letter::DeadLetter;
pub use diag::{NodeDiag, PartitionDiag, ShardDiag, WorkDiag};
pub use error::Error;
pub use event::{EventBatch, EventEnvelope, EventId};

/// The wire version this build writes, and the newest it reads.
///
/// It changes only when a change is not backward compatible. Adding a field that
/// readers may ignore does not change it: decoders skip fields they do not know.
pub const WIRE_VERSION: u16 = 1;
