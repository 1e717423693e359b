//! Gateway commands a client sends once identified (ops 3, 4, 8, 31, 43): each is
//! recorded in the command log and answered as Discord documents it.
//!
//! Answers are dispatches pushed onto the asking session only, through the same
//! buffer as every other dispatch: they get the next seq, a RESUME replays them and
//! the ground truth records them when written.
//!
//! Where Discord documents no behaviour the simulator picks one:
//! - a command naming a guild that is not on the connection's shard (or not the
//!   bot's) is ignored, as Discord gives no answer for guilds a shard does not own;
//! - a request for all members without the `GUILD_MEMBERS` intent is ignored;
//! - CHANNEL INFO lists every channel with the requested fields (`null`: the
//!   simulated channels are text channels with no status or voice session);
//! - the all-members limit (one per guild per 30 s) is per guild across all
//!   sessions, as it protects the guild, not the connection.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::frames::op;
use crate::members::Roster;
use crate::session::Session;
use crate::state::{Shared, lock};
use crate::traffic::EventKind;
use crate::truth::{CommandPage, CommandRecord, TruthLog, unix_us};
use crate::world::BOT_USER_ID;

/// Request Channel Info (April 2026); not among the lifecycle ops in `frames.rs`.
pub(crate) const REQUEST_CHANNEL_INFO: u64 = 43;

/// Members per `GUILD_MEMBERS_CHUNK` at most.
const CHUNK_SIZE: usize = 1_000;
/// Most members a `query` prefix or a `user_ids` list returns.
const SEARCH_LIMIT: usize = 100;
/// One request for all of a guild's members per this long (since 2025-10-01).
const ALL_MEMBERS_INTERVAL: Duration = Duration::from_secs(30);
/// A longer nonce is ignored: the chunks then carry none.
const MAX_NONCE: usize = 32;

const GUILD_MEMBERS: u64 = 1 << 1;
const GUILD_PRESENCES: u64 = 1 << 8;

/// Where Discord would send a voice client; the simulator runs no voice server.
const VOICE_ENDPOINT: &str = "voice.shardmesh-sim.invalid:443";

/// The command log and the state answers depend on. Locks are std mutexes never held
/// across an `.await`.
#[derive(Debug)]
pub(crate) struct Commands {
    log: Mutex<TruthLog<CommandRecord>>,
    /// When each guild (by id) last had a request for all its members granted.
    all_members: Mutex<HashMap<u64, Instant>>,
}

impl Commands {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            log: Mutex::new(TruthLog::new(capacity)),
            all_members: Mutex::new(HashMap::new()),
        }
    }

    /// Command records with `cursor >= since`, at most `limit`.
    pub(crate) fn since(&self, since: u64, limit: usize) -> CommandPage {
        lock(&self.log).since(since, limit)
    }

    /// Grants a request for all of `guild_id`'s members at `now`, or says how long
    /// until the next one may be granted.
    fn grant_all_members(&self, guild_id: u64, now: Instant) -> Result<(), Duration> {
        let mut granted = lock(&self.all_members);
        if let Some(&last) = granted.get(&guild_id) {
            let since = now.duration_since(last);
            if since < ALL_MEMBERS_INTERVAL {
                return Err(ALL_MEMBERS_INTERVAL.saturating_sub(since));
            }
        }
        granted.insert(guild_id, now);
        Ok(())
    }
}

/// A command whose `d` does not have the documented shape: Discord closes with 4002.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// A snowflake as clients send it: a string (twilight) or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Snowflake {
    Text(String),
    Number(u64),
}

impl Snowflake {
    fn get(&self) -> Option<u64> {
        match self {
            Snowflake::Text(text) => text.parse().ok(),
            Snowflake::Number(n) => Some(*n),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Snowflake),
    Many(Vec<Snowflake>),
}

#[derive(Deserialize)]
struct MembersRequest {
    guild_id: Snowflake,
    query: Option<String>,
    limit: Option<u64>,
    #[serde(default)]
    presences: bool,
    user_ids: Option<OneOrMany>,
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct VoiceRequest {
    guild_id: Snowflake,
    channel_id: Option<Snowflake>,
    self_mute: bool,
    self_deaf: bool,
}

#[derive(Deserialize)]
struct SoundsRequest {
    guild_ids: Vec<Snowflake>,
}

#[derive(Deserialize)]
struct ChannelInfoRequest {
    guild_id: Snowflake,
    fields: Vec<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // parsed to check the shape; a presence changes nothing here
struct PresenceRequest {
    since: Option<u64>,
    activities: Vec<serde_json::Value>,
    status: String,
    afk: bool,
}

/// Records command `op` (its `d` is `d`) received on `connection` for `session`, then
/// answers it on the session and wakes its connection.
///
/// # Errors
///
/// [`Malformed`] if `d` is not the documented shape (the caller closes with 4002).
pub(crate) fn answer(
    shared: &Shared,
    session: &Session,
    connection: u64,
    op: u64,
    d: &str,
) -> Result<(), Malformed> {
    lock(&shared.commands.log).push(CommandRecord {
        cursor: 0,
        shard: session.shard,
        session: session.id,
        connection,
        op,
        payload: serde_json::from_str(d).unwrap_or(serde_json::Value::Null),
        received_at_us: unix_us(),
    });
    let parse = |_| Malformed;
    let answered = match op {
        op::REQUEST_GUILD_MEMBERS => {
            members(shared, session, serde_json::from_str(d).map_err(parse)?)?
        }
        op::VOICE_STATE_UPDATE => voice(shared, session, &serde_json::from_str(d).map_err(parse)?),
        op::REQUEST_SOUNDBOARD_SOUNDS => {
            let request: SoundsRequest = serde_json::from_str(d).map_err(parse)?;
            sounds(shared, session, &request)
        }
        REQUEST_CHANNEL_INFO => {
            channel_info(shared, session, &serde_json::from_str(d).map_err(parse)?)
        }
        op::PRESENCE_UPDATE => {
            serde_json::from_str::<PresenceRequest>(d).map_err(parse)?;
            false
        }
        _ => false,
    };
    if answered {
        session.notify.notify_one();
    }
    Ok(())
}

/// The index of guild `id` if it is the bot's and on `session`'s shard (of the
/// session's own shard count).
fn own_guild(shared: &Shared, session: &Session, id: Option<u64>) -> Option<u32> {
    let id = id?;
    let world = &shared.world;
    world.guild_of(id).filter(|&g| {
        world.guild_id(g) == id && world.shard_in(g, session.shard_count) == session.shard
    })
}

/// Answers op 8 with `GUILD_MEMBERS_CHUNK`s, or `RATE_LIMITED`; true if it answered.
///
/// # Errors
///
/// [`Malformed`] without `query` or `user_ids`, or with a `query` but no `limit`
/// (Discord requires both).
fn members(shared: &Shared, session: &Session, request: MembersRequest) -> Result<bool, Malformed> {
    if request.user_ids.is_none() && (request.query.is_none() || request.limit.is_none()) {
        return Err(Malformed);
    }
    Ok(answer_members(shared, session, request))
}

fn answer_members(shared: &Shared, session: &Session, request: MembersRequest) -> bool {
    let guild_id = request.guild_id.get();
    let Some(guild) = own_guild(shared, session, guild_id) else {
        return false;
    };
    let guild_id = shared.world.guild_id(guild);
    let roster = Roster::new(shared.world, guild, shared.config.guild_members);
    let nonce = request.nonce.filter(|nonce| nonce.len() <= MAX_NONCE);
    let presences = request.presences && session.intents & GUILD_PRESENCES != 0;
    let mut not_found = None;
    let found = if let Some(ids) = request.user_ids {
        let ids = match ids {
            OneOrMany::One(id) => vec![id],
            OneOrMany::Many(ids) => ids,
        };
        let mut missing = Vec::new();
        let mut found = Vec::new();
        for id in ids.iter().take(SEARCH_LIMIT).filter_map(Snowflake::get) {
            match roster.member_of(id) {
                Some(k) => found.push(k),
                None => missing.push(id),
            }
        }
        not_found = Some(missing);
        found
    } else {
        let query = request.query.unwrap_or_default();
        let limit = request.limit.unwrap_or(0);
        if query.is_empty() && limit == 0 {
            if session.intents & GUILD_MEMBERS == 0 {
                return false;
            }
            if let Err(wait) = shared.commands.grant_all_members(guild_id, Instant::now()) {
                let d = rate_limited_d(guild_id, nonce.as_deref(), wait);
                return session.push(EventKind::RateLimited, guild_id, &d);
            }
            roster.matching("", None)
        } else {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let limit = match (query.is_empty(), limit) {
                (true, limit) => limit,
                (false, 0) => SEARCH_LIMIT,
                (false, limit) => limit.min(SEARCH_LIMIT),
            };
            roster.matching(&query, Some(limit))
        }
    };
    let chunks: Vec<&[u32]> = if found.is_empty() {
        vec![&[]]
    } else {
        found.chunks(CHUNK_SIZE).collect()
    };
    let count = chunks.len();
    let mut d = String::with_capacity(256);
    for (index, chunk) in chunks.into_iter().enumerate() {
        d.clear();
        let _ = write!(d, r#"{{"guild_id":"{guild_id}","members":["#);
        for (n, &k) in chunk.iter().enumerate() {
            if n > 0 {
                d.push(',');
            }
            roster.write_member(&mut d, k);
        }
        let _ = write!(d, r#"],"chunk_index":{index},"chunk_count":{count}"#);
        if let Some(missing) = not_found.as_ref().filter(|_| index == 0) {
            d.push_str(r#","not_found":["#);
            for (n, id) in missing.iter().enumerate() {
                if n > 0 {
                    d.push(',');
                }
                let _ = write!(d, r#""{id}""#);
            }
            d.push(']');
        }
        if presences {
            d.push_str(r#","presences":["#);
            for (n, &k) in chunk.iter().enumerate() {
                if n > 0 {
                    d.push(',');
                }
                roster.write_presence(&mut d, k);
            }
            d.push(']');
        }
        push_nonce(&mut d, nonce.as_deref());
        d.push('}');
        if !session.push(EventKind::GuildMembersChunk, guild_id, &d) {
            return false;
        }
    }
    true
}

/// Appends `,"nonce":…` when there is one.
fn push_nonce(d: &mut String, nonce: Option<&str>) {
    if let Some(nonce) = nonce {
        d.push_str(r#","nonce":"#);
        d.push_str(&serde_json::to_string(nonce).expect("a string serializes"));
    }
}

/// The `d` of `RATE_LIMITED` for an op 8 refused for `wait`.
fn rate_limited_d(guild_id: u64, nonce: Option<&str>, wait: Duration) -> String {
    let mut d = format!(
        r#"{{"opcode":8,"retry_after":{:.3},"meta":{{"guild_id":"{guild_id}""#,
        wait.as_secs_f64()
    );
    push_nonce(&mut d, nonce);
    d.push_str("}}");
    d
}

/// Answers op 4 with the bot's `VOICE_STATE_UPDATE`, then `VOICE_SERVER_UPDATE` when it
/// joins a channel; true if it answered.
fn voice(shared: &Shared, session: &Session, request: &VoiceRequest) -> bool {
    let Some(guild) = own_guild(shared, session, request.guild_id.get()) else {
        return false;
    };
    let world = &shared.world;
    let guild_id = world.guild_id(guild);
    let channel = match &request.channel_id {
        None => None,
        Some(id) => match id
            .get()
            .filter(|&c| world.guild_of_channel(c) == Some(guild))
        {
            Some(channel) => Some(channel),
            // Not a channel of this guild: nothing to join.
            None => return false,
        },
    };
    let roster = Roster::new(*world, guild, shared.config.guild_members);
    let mut d = format!(r#"{{"guild_id":"{guild_id}","channel_id":"#);
    match channel {
        Some(channel) => {
            let _ = write!(d, r#""{channel}""#);
        }
        None => d.push_str("null"),
    }
    let _ = write!(d, r#","user_id":"{BOT_USER_ID}","member":"#);
    roster.write_member(&mut d, 0);
    let _ = write!(
        d,
        r#","session_id":"{}","deaf":false,"mute":false,"self_deaf":{},"self_mute":{},"self_stream":false,"self_video":false,"suppress":false,"request_to_speak_timestamp":null}}"#,
        session.id, request.self_deaf, request.self_mute
    );
    if !session.push(EventKind::VoiceStateUpdate, guild_id, &d) {
        return false;
    }
    if let Some(channel) = channel {
        let token = (guild_id ^ channel).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ session.id.0;
        let d = format!(
            r#"{{"token":"{token:016x}","guild_id":"{guild_id}","endpoint":"{VOICE_ENDPOINT}"}}"#
        );
        session.push(EventKind::VoiceServerUpdate, guild_id, &d);
    }
    true
}

/// Answers op 31 with one `SOUNDBOARD_SOUNDS` per guild of the shard asked for (the
/// simulated guilds have no sounds); true if it answered.
fn sounds(shared: &Shared, session: &Session, request: &SoundsRequest) -> bool {
    let mut answered = false;
    for id in &request.guild_ids {
        if let Some(guild) = own_guild(shared, session, id.get()) {
            let guild_id = shared.world.guild_id(guild);
            let d = format!(r#"{{"guild_id":"{guild_id}","soundboard_sounds":[]}}"#);
            answered |= session.push(EventKind::SoundboardSounds, guild_id, &d);
        }
    }
    answered
}

/// Answers op 43 with `CHANNEL_INFO`: every channel of the guild with the requested
/// known fields; true if it answered.
fn channel_info(shared: &Shared, session: &Session, request: &ChannelInfoRequest) -> bool {
    let Some(guild) = own_guild(shared, session, request.guild_id.get()) else {
        return false;
    };
    let world = &shared.world;
    let guild_id = world.guild_id(guild);
    let wants = |field: &str| request.fields.iter().any(|f| f == field);
    let mut d = format!(r#"{{"guild_id":"{guild_id}","channels":["#);
    for k in 0..crate::world::CHANNELS_PER_GUILD {
        if k > 0 {
            d.push(',');
        }
        let _ = write!(d, r#"{{"id":"{}""#, world.channel_id(guild, k));
        if wants("status") {
            d.push_str(r#","status":null"#);
        }
        if wants("voice_start_time") {
            d.push_str(r#","voice_start_time":null"#);
        }
        d.push('}');
    }
    d.push_str("]}");
    session.push(EventKind::ChannelInfo, guild_id, &d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_members_are_granted_once_per_guild_per_30_seconds() {
        let commands = Commands::new(10);
        let now = Instant::now();
        assert_eq!(commands.grant_all_members(1, now), Ok(()));
        assert_eq!(commands.grant_all_members(2, now), Ok(()), "per guild");
        let later = now + Duration::from_secs(10);
        assert_eq!(
            commands.grant_all_members(1, later),
            Err(Duration::from_secs(20))
        );
        assert_eq!(
            commands.grant_all_members(1, now + ALL_MEMBERS_INTERVAL),
            Ok(())
        );
    }

    #[test]
    fn rate_limited_has_discords_shape() {
        let d = rate_limited_d(7, Some("n\"1"), Duration::from_millis(12_500));
        let value: serde_json::Value = serde_json::from_str(&d).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"opcode": 8, "retry_after": 12.5, "meta": {"guild_id": "7", "nonce": "n\"1"}})
        );
        let d = rate_limited_d(7, None, Duration::from_secs(1));
        let value: serde_json::Value = serde_json::from_str(&d).unwrap();
        assert!(value["meta"].get("nonce").is_none());
    }
}
