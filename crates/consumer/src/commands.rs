//! Gateway commands from a bot: checked, addressed to the shard that owns the guild,
//! and handed to the broker with a confirm. Usable inside a handler and on its own
//! (a bot's web server, a script); `POST /commands` and `shardmesh ctl send` use it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shardmesh_broker::{BrokerConfig, CommandSender, Topology};
use shardmesh_proto::{
    CommandEnvelope, CommandOutcome, GATEWAY_COMMAND_OPS, MAX_COMMAND_BYTES, WIRE_VERSION,
    shard_of_guild,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::partition::unix_ms;

/// How long a send waits for the broker to accept a command.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest command id a sender may choose.
const MAX_ID_LEN: usize = 100;

/// One gateway command as a bot asks for it: the JSON body of `POST /commands`.
///
/// ```
/// let request: shardmesh_consumer::CommandRequest = serde_json::from_str(
///     r#"{"op": 4, "d": {"guild_id": "81384788765712384", "channel_id": "1", "self_mute": false, "self_deaf": false}}"#,
/// )?;
/// assert_eq!(request.op, 4);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// Gateway opcode: 3 presence, 4 voice state, 8 request guild members, 31 request
    /// soundboard sounds, 43 request channel info.
    pub op: u8,
    /// The command's `d`, a JSON object, sent to Discord as given.
    pub d: serde_json::Value,
    /// The guild whose shard sends it (a snowflake, as a string or a number); default
    /// `d.guild_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<serde_json::Value>,
    /// The shard that sends it, for commands without a guild (presence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// Not sent after this many ms from now (reported as expired); default never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
    /// The command's id, e.g. to use as op 8's `nonce`; default a fresh UUID. The
    /// same id is sent once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A command the broker has accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The command's id.
    pub id: String,
    /// The shard whose connection sends it.
    pub shard: u32,
}

/// A command that must not be sent, and which field says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid command: {field}: {problem}")]
pub struct InvalidCommand {
    /// The offending field: `op`, `d`, `d.guild_id`, `guild_id`, `shard`, `id`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> InvalidCommand {
    InvalidCommand {
        field,
        problem: problem.into(),
    }
}

/// Why a command was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The command itself is wrong; nothing was sent.
    #[error(transparent)]
    Invalid(#[from] InvalidCommand),
    /// The broker did not take it.
    #[error("the broker did not accept the command: {0}")]
    Broker(#[from] shardmesh_broker::Error),
    /// The broker did not confirm it in time; it may or may not be queued (sending it
    /// again with the same `id` is safe).
    #[error("the broker did not confirm the command within {0:?}")]
    Timeout(Duration),
}

impl CommandRequest {
    /// The envelope for a cluster of `shard_count` shards, or what is wrong.
    ///
    /// # Errors
    ///
    /// [`InvalidCommand`] naming the field: an op that is not a bot's gateway command,
    /// a `d` that is not an object, a guild id that is not a snowflake, a shard outside
    /// the cluster or not the guild's, no guild and no shard, a frame over Discord's
    /// 4,096 bytes, an empty or overlong id.
    pub fn envelope(
        &self,
        shard_count: u32,
        sent_by: &str,
        now_ms: u64,
    ) -> Result<CommandEnvelope, InvalidCommand> {
        if !GATEWAY_COMMAND_OPS.contains(&self.op) {
            return Err(invalid(
                "op",
                format!(
                    "{} is not a gateway command a bot may send (3, 4, 8, 31 or 43)",
                    self.op
                ),
            ));
        }
        if !self.d.is_object() {
            return Err(invalid("d", "must be a JSON object"));
        }
        let shard = self.shard_for(shard_count)?;
        let payload = serde_json::json!({ "op": self.op, "d": self.d }).to_string();
        if payload.len() > MAX_COMMAND_BYTES {
            return Err(invalid(
                "d",
                format!(
                    "the frame is {} bytes, over Discord's limit of {MAX_COMMAND_BYTES}",
                    payload.len()
                ),
            ));
        }
        let id = match &self.id {
            Some(id) if id.is_empty() || id.len() > MAX_ID_LEN => {
                return Err(invalid("id", format!("must be 1..={MAX_ID_LEN} bytes")));
            }
            Some(id) => id.clone(),
            None => uuid::Uuid::now_v7().to_string(),
        };
        Ok(CommandEnvelope {
            v: WIRE_VERSION,
            id,
            shard,
            shard_count,
            op: self.op,
            payload,
            expires_at_ms: self.expires_in_ms.map(|ms| now_ms.saturating_add(ms)),
            sent_by: sent_by.to_owned(),
            created_at_ms: now_ms,
        })
    }

    fn shard_for(&self, shard_count: u32) -> Result<u32, InvalidCommand> {
        let guild = match (&self.guild_id, self.d.get("guild_id")) {
            (Some(guild), _) => Some(("guild_id", guild)),
            (None, Some(guild)) if !guild.is_null() => Some(("d.guild_id", guild)),
            (None, _) => None,
        };
        let guild = guild
            .map(|(field, value)| {
                snowflake(value)
                    .ok_or_else(|| invalid(field, format!("guild id {value} is not a snowflake")))
            })
            .transpose()?;
        match (guild, self.shard) {
            (_, Some(shard)) if shard >= shard_count => Err(invalid(
                "shard",
                format!("{shard} is outside the cluster's shards 0..{shard_count}"),
            )),
            (Some(guild), Some(shard)) if shard_of_guild(guild, shard_count) != shard => {
                Err(invalid(
                    "shard",
                    format!(
                        "guild {guild} is on shard {}, not {shard}",
                        shard_of_guild(guild, shard_count)
                    ),
                ))
            }
            (_, Some(shard)) => Ok(shard),
            (Some(guild), None) => Ok(shard_of_guild(guild, shard_count)),
            (None, None) => Err(invalid(
                "guild_id",
                "a command without a guild needs a `shard`",
            )),
        }
    }
}

/// A snowflake given as a string of digits (Discord's way) or as a number.
fn snowflake(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::String(text) => text.parse().ok(),
        serde_json::Value::Number(number) => number.as_u64(),
        _ => None,
    }
}

/// A bot's handle for sending gateway commands through the mesh; clones share one
/// broker connection.
///
/// A command is accepted once the broker confirms it; the gateway node that holds its
/// shard writes it to Discord once, in order with the shard's other commands, within
/// the connection's rate budget (format and guarantees: `docs/wire-format.md`).
///
/// ```no_run
/// # async fn example(commands: shardmesh_consumer::Commands) -> Result<(), Box<dyn std::error::Error>> {
/// use twilight_model::gateway::payload::outgoing::{UpdatePresence, UpdateVoiceState};
/// use twilight_model::gateway::presence::{Activity, ActivityType, MinimalActivity, Status};
/// use twilight_model::id::Id;
///
/// // Join a voice channel: routed to the guild's shard by its `guild_id`.
/// let join = UpdateVoiceState::new(Id::new(81_384_788_765_712_384), Id::new(1), false, true);
/// let accepted = commands.send(&join).await?;
/// println!("accepted as {} for shard {}", accepted.id, accepted.shard);
///
/// // Presence is per shard: send it to each.
/// let activity = MinimalActivity { kind: ActivityType::Playing, name: "with shards".into(), url: None };
/// for shard in 0..commands.shard_count() {
///     let presence =
///         UpdatePresence::new(vec![Activity::from(activity.clone())], false, None, Status::Online)?;
///     commands.send_to_shard(shard, &presence).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Commands {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sender: Mutex<CommandSender>,
    shard_count: u32,
    sent_by: String,
}

impl Commands {
    /// Connects to the broker of cluster `cluster` (whose shard count is
    /// `shard_count`, as the store's cluster spec says); `sent_by` names the sender in
    /// the gateway nodes' logs.
    ///
    /// # Errors
    ///
    /// [`CommandError::Broker`] if the broker cannot be reached or the cluster name is
    /// invalid.
    pub async fn connect(
        broker: &BrokerConfig,
        cluster: &str,
        shard_count: u32,
        sent_by: impl Into<String>,
        shutdown: CancellationToken,
    ) -> Result<Self, CommandError> {
        let topology = Topology::new(cluster, 1, broker)?;
        let sender = CommandSender::connect(broker, &topology, shutdown).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                sender: Mutex::new(sender),
                shard_count,
                sent_by: sent_by.into(),
            }),
        })
    }

    /// The cluster's shard count the commands are addressed with.
    pub fn shard_count(&self) -> u32 {
        self.inner.shard_count
    }

    /// Sends a twilight-model command (`UpdateVoiceState`, `RequestGuildMembers`, …)
    /// to the shard of the guild it names; once the broker has accepted it.
    ///
    /// # Errors
    ///
    /// [`CommandError::Invalid`] if it names no guild (use [`Commands::send_to_shard`])
    /// or is not a gateway command; [`CommandError::Broker`] / [`CommandError::Timeout`]
    /// if the broker does not take it.
    pub async fn send(&self, command: &impl Serialize) -> Result<Accepted, CommandError> {
        self.submit(request_of(command, None)?).await
    }

    /// Sends a twilight-model command on `shard`'s connection (for presence updates,
    /// which name no guild).
    ///
    /// # Errors
    ///
    /// As [`Commands::send`], and [`CommandError::Invalid`] for a shard outside the
    /// cluster.
    pub async fn send_to_shard(
        &self,
        shard: u32,
        command: &impl Serialize,
    ) -> Result<Accepted, CommandError> {
        self.submit(request_of(command, Some(shard))?).await
    }

    /// Sends a command given as op and `d` (any op twilight does not model yet), with
    /// the options of [`CommandRequest`].
    ///
    /// # Errors
    ///
    /// As [`Commands::send`].
    pub async fn submit(&self, request: CommandRequest) -> Result<Accepted, CommandError> {
        let envelope = request.envelope(self.inner.shard_count, &self.inner.sent_by, unix_ms())?;
        let mut sender = self.inner.sender.lock().await;
        tokio::time::timeout(ACCEPT_TIMEOUT, sender.send(&envelope))
            .await
            .map_err(|_| CommandError::Timeout(ACCEPT_TIMEOUT))??;
        Ok(Accepted {
            id: envelope.id,
            shard: envelope.shard,
        })
    }

    /// Like [`Commands::submit`], then waits up to `wait` for the outcome: written to
    /// Discord (when, by which node), expired or rejected (why). `None` when it did not
    /// come in time: the command is accepted and still goes out, only nobody reports
    /// it to this call.
    ///
    /// # Errors
    ///
    /// As [`Commands::send`].
    pub async fn submit_and_wait(
        &self,
        request: CommandRequest,
        wait: Duration,
    ) -> Result<(Accepted, Option<CommandOutcome>), CommandError> {
        let envelope = request.envelope(self.inner.shard_count, &self.inner.sent_by, unix_ms())?;
        let outcome = {
            let mut sender = self.inner.sender.lock().await;
            tokio::time::timeout(ACCEPT_TIMEOUT, sender.send_for_outcome(&envelope))
                .await
                .map_err(|_| CommandError::Timeout(ACCEPT_TIMEOUT))??
        };
        let accepted = Accepted {
            id: envelope.id,
            shard: envelope.shard,
        };
        let outcome = tokio::time::timeout(wait, outcome)
            .await
            .ok()
            .and_then(Result::ok);
        Ok((accepted, outcome))
    }
}

/// The request for a serialized command `{"op": N, "d": {..}}`.
fn request_of(
    command: &impl Serialize,
    shard: Option<u32>,
) -> Result<CommandRequest, InvalidCommand> {
    let value = serde_json::to_value(command)
        .map_err(|error| invalid("d", format!("cannot be serialized: {error}")))?;
    let op = value
        .get("op")
        .and_then(serde_json::Value::as_u64)
        .and_then(|op| u8::try_from(op).ok())
        .ok_or_else(|| invalid("op", "the command has no gateway opcode"))?;
    Ok(CommandRequest {
        op,
        d: value.get("d").cloned().unwrap_or(serde_json::Value::Null),
        shard,
        ..CommandRequest::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: serde_json::Value) -> CommandRequest {
        serde_json::from_value(value).unwrap()
    }

    fn refused(value: serde_json::Value) -> InvalidCommand {
        request(value).envelope(16, "t", 1_000).unwrap_err()
    }

    #[test]
    fn a_voice_update_goes_to_its_guilds_shard_as_one_frame() {
        let envelope = request(json!({"op": 4, "d": {"guild_id": "81384788765712384", "channel_id": "1", "self_mute": false, "self_deaf": true}, "expires_in_ms": 500, "id": "n1"}))
            .envelope(16, "bot", 1_000)
            .unwrap();
        assert_eq!(
            (envelope.shard, envelope.shard_count, envelope.op),
            (2, 16, 4)
        );
        assert_eq!(envelope.expires_at_ms, Some(1_500));
        assert_eq!(envelope.id, "n1");
        let frame: serde_json::Value = serde_json::from_str(&envelope.payload).unwrap();
        assert_eq!(frame["op"], 4);
        assert_eq!(frame["d"]["self_deaf"], true);
    }

    #[test]
    fn twilight_commands_become_requests() {
        use twilight_model::gateway::payload::outgoing::{RequestGuildMembers, UpdateVoiceState};
        use twilight_model::id::Id;
        let join = UpdateVoiceState::new(Id::new(81_384_788_765_712_384), Id::new(1), false, true);
        let envelope = request_of(&join, None)
            .unwrap()
            .envelope(16, "t", 0)
            .unwrap();
        assert_eq!((envelope.op, envelope.shard), (4, 2));
        let members = RequestGuildMembers::builder(Id::new(81_384_788_765_712_384))
            .nonce("abc")
            .query("", None);
        let envelope = request_of(&members, None)
            .unwrap()
            .envelope(16, "t", 0)
            .unwrap();
        assert_eq!(envelope.op, 8);
        assert!(envelope.payload.contains(r#""nonce":"abc""#));
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (json!({"op": 2, "d": {}}), "op"),
            (json!({"op": 1, "d": {}}), "op"),
            (json!({"op": 3, "d": [1]}), "d"),
            (json!({"op": 3, "d": "x"}), "d"),
            (json!({"op": 3, "d": {}}), "guild_id"),
            (json!({"op": 4, "d": {"guild_id": "abc"}}), "d.guild_id"),
            (json!({"op": 4, "d": {}, "guild_id": true}), "guild_id"),
            (json!({"op": 3, "d": {}, "shard": 16}), "shard"),
            (
                json!({"op": 4, "d": {"guild_id": "81384788765712384"}, "shard": 3}),
                "shard",
            ),
            (
                json!({"op": 3, "d": {"x": "y".repeat(4_100)}, "shard": 0}),
                "d",
            ),
            (json!({"op": 3, "d": {}, "shard": 0, "id": ""}), "id"),
        ];
        for (value, field) in cases {
            let text = value.to_string();
            assert_eq!(refused(value).field, field, "{text}");
        }
        assert_eq!(
            refused(json!({"op": 3, "d": {}, "shard": 16})).to_string(),
            "invalid command: shard: 16 is outside the cluster's shards 0..16"
        );
    }

    #[test]
    fn unknown_request_fields_are_refused() {
        assert!(
            serde_json::from_value::<CommandRequest>(json!({"op": 3, "d": {}, "guild": 1}))
                .is_err()
        );
    }
}
