//! Gateway commands on their way from a bot to the gateway node that owns the shard,
//! and what became of them.

use serde::{Deserialize, Serialize};

use crate::{WIRE_VERSION, WireMessage};

/// The gateway opcodes a bot may send through the mesh: presence update (3), voice
/// state update (4), request guild members (8), request soundboard sounds (31) and
/// request channel info (43). Heartbeat, IDENTIFY and RESUME belong to the gateway node.
pub const GATEWAY_COMMAND_OPS: [u8; 5] = [3, 4, 8, 31, 43];

/// The opcode of a voice state update: sent before other commands when a shard is over
/// its rate budget.
pub const OP_VOICE_STATE_UPDATE: u8 = 4;

/// Discord closes a connection (4002) that sends a payload longer than this, in bytes.
pub const MAX_COMMAND_BYTES: usize = 4_096;

/// The shard of `guild_id` in a cluster of `shard_count` shards, as Discord computes it.
///
/// # Panics
///
/// If `shard_count` is 0.
pub fn shard_of_guild(guild_id: u64, shard_count: u32) -> u32 {
    u32::try_from((guild_id >> 22) % u64::from(shard_count)).unwrap_or(u32::MAX)
}

/// One gateway command for one shard, as it waits in the shard's command queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    /// Wire version, [`WIRE_VERSION`] when written by this build.
    pub v: u16,
    /// The command's id (a UUID), given back in its outcome; also a good `nonce`.
    pub id: String,
    /// The shard whose connection sends it.
    pub shard: u32,
    /// The shard count the sender computed `shard` with; a gateway node of another
    /// count rejects the command instead of sending it on the wrong shard.
    pub shard_count: u32,
    /// The gateway opcode, one of [`GATEWAY_COMMAND_OPS`].
    pub op: u8,
    /// The whole frame sent to Discord, `{"op":N,"d":{..}}`, exactly as it goes out.
    pub payload: String,
    /// Unix milliseconds after which the command is not sent any more (reported as
    /// expired); `None` sends it however late.
    pub expires_at_ms: Option<u64>,
    /// Who sent it (a node id, `ctl`, or what the HTTP caller named), for the logs.
    pub sent_by: String,
    /// When it was accepted, Unix milliseconds.
    pub created_at_ms: u64,
}

impl CommandEnvelope {
    /// Whether the command's expiry has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms > at)
    }
}

impl WireMessage for CommandEnvelope {
    const NAME: &'static str = "command";

    fn version(&self) -> u16 {
        self.v
    }
}

/// What became of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Written to the shard's gateway connection.
    Sent,
    /// Its expiry passed before the shard could send it; not sent.
    Expired,
    /// Not sendable (`reason` says why); not sent.
    Rejected,
}

/// The outcome of one command, sent back to a sender that waits for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// Wire version.
    pub v: u16,
    /// The command's id.
    pub id: String,
    /// Sent, expired or rejected.
    pub status: CommandStatus,
    /// The shard it was for.
    pub shard: u32,
    /// The gateway node that decided.
    pub node: String,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// Why it was rejected or expired; empty when sent.
    pub reason: String,
}

impl CommandOutcome {
    /// An outcome at the current wire version.
    pub fn new(
        command: &CommandEnvelope,
        status: CommandStatus,
        node: impl Into<String>,
        at_ms: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            v: WIRE_VERSION,
            id: command.id.clone(),
            status,
            shard: command.shard,
            node: node.into(),
            at_ms,
            reason: reason.into(),
        }
    }
}

impl WireMessage for CommandOutcome {
    const NAME: &'static str = "command outcome";

    fn version(&self) -> u16 {
        self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::to_hex;
    use crate::{decode, encode};

    fn sample() -> CommandEnvelope {
        CommandEnvelope {
            v: 1,
            id: "0190f1a2-0000-7000-8000-000000000002".into(),
            shard: 3,
            shard_count: 16,
            op: 4,
            payload: r#"{"op":4,"d":{"guild_id":"1","channel_id":"2","self_mute":false,"self_deaf":false}}"#.into(),
            expires_at_ms: Some(1_700_000_060_000),
            sent_by: "bot".into(),
            created_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn command_round_trips_and_keeps_its_field_names() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode::<CommandEnvelope>(&bytes).unwrap(), sample());
        // A map with named fields, as docs/wire-format.md describes.
        let hex = to_hex(&bytes);
        for name in [
            "id",
            "shard",
            "shard_count",
            "op",
            "payload",
            "expires_at_ms",
        ] {
            assert!(hex.contains(&to_hex(name.as_bytes())), "{name} missing");
        }
    }

    #[test]
    fn outcome_round_trips_with_a_lowercase_status() {
        let outcome = CommandOutcome::new(&sample(), CommandStatus::Expired, "g1", 5, "late");
        let bytes = encode(&outcome).unwrap();
        assert_eq!(decode::<CommandOutcome>(&bytes).unwrap(), outcome);
        assert!(to_hex(&bytes).contains(&to_hex(b"expired")));
    }

    #[test]
    fn expiry_is_exclusive_and_optional() {
        let mut command = sample();
        assert!(!command.is_expired(1_700_000_060_000));
        assert!(command.is_expired(1_700_000_060_001));
        command.expires_at_ms = None;
        assert!(!command.is_expired(u64::MAX));
    }

    #[test]
    fn guilds_map_to_shards_like_discord() {
        // Discord: shard_id = (guild_id >> 22) % num_shards.
        assert_eq!(shard_of_guild(81_384_788_765_712_384, 16), 2);
        assert_eq!(shard_of_guild(41_771_983_423_143_937, 1), 0);
    }
}
