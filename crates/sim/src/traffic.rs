//! Synthetic traffic: a seeded generator of guild events with Discord's payload shapes.
//!
//! Every generated dispatch carries a fresh snowflake as its unique id, in the field
//! named by [`EventKind::id_field`]. Pure code: the async driver lives in `sim.rs`.

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::frames::write_text_channel;
use crate::world::{BOT_USER_ID, Snowflakes, World, snowflake_unix_ms, write_timestamp};

/// The dispatch types the simulator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// The first dispatch of a session.
    Ready,
    /// One per guild of the shard, after READY.
    GuildCreate,
    /// Ends a RESUME's replay; carries the session's current seq, not a new one.
    Resumed,
    /// A message was posted (generated, or created through REST).
    MessageCreate,
    /// A message was edited.
    MessageUpdate,
    /// A message was deleted.
    MessageDelete,
    /// A user started typing.
    TypingStart,
    /// A member's presence changed.
    PresenceUpdate,
    /// A user joined a guild.
    GuildMemberAdd,
    /// A slash command was used.
    InteractionCreate,
    /// An answer to op 8 REQUEST GUILD MEMBERS (`commands.rs`).
    GuildMembersChunk,
    /// A gateway command was refused for its rate limit (op 8 for all members).
    RateLimited,
    /// The bot's voice state, answering op 4.
    VoiceStateUpdate,
    /// The voice server to connect to, answering op 4 joining a channel.
    VoiceServerUpdate,
    /// A guild's soundboard sounds, answering op 31.
    SoundboardSounds,
    /// Ephemeral channel data of a guild, answering op 43.
    ChannelInfo,
}

impl EventKind {
    /// The generated kinds with their weights in the traffic mix (out of 100).
    pub const MIX: [(EventKind, u32); 7] = [
        (EventKind::MessageCreate, 40),
        (EventKind::TypingStart, 20),
        (EventKind::PresenceUpdate, 20),
        (EventKind::MessageUpdate, 8),
        (EventKind::MessageDelete, 4),
        (EventKind::GuildMemberAdd, 4),
        (EventKind::InteractionCreate, 4),
    ];

    /// The event name Discord puts in `t`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Ready => "READY",
            EventKind::GuildCreate => "GUILD_CREATE",
            EventKind::Resumed => "RESUMED",
            EventKind::MessageCreate => "MESSAGE_CREATE",
            EventKind::MessageUpdate => "MESSAGE_UPDATE",
            EventKind::MessageDelete => "MESSAGE_DELETE",
            EventKind::TypingStart => "TYPING_START",
            EventKind::PresenceUpdate => "PRESENCE_UPDATE",
            EventKind::GuildMemberAdd => "GUILD_MEMBER_ADD",
            EventKind::InteractionCreate => "INTERACTION_CREATE",
            EventKind::GuildMembersChunk => "GUILD_MEMBERS_CHUNK",
            EventKind::RateLimited => "RATE_LIMITED",
            EventKind::VoiceStateUpdate => "VOICE_STATE_UPDATE",
            EventKind::VoiceServerUpdate => "VOICE_SERVER_UPDATE",
            EventKind::SoundboardSounds => "SOUNDBOARD_SOUNDS",
            EventKind::ChannelInfo => "CHANNEL_INFO",
        }
    }

    /// Which field of `d` holds the dispatch's unique id.
    ///
    /// `None` for READY and RESUMED (recorded with id 0: a session has one READY, at
    /// seq 1). `GUILD_CREATE`'s id is the guild's, so it repeats once per session; a
    /// traffic event's id is fresh, shared only by the sessions of one shard that all
    /// receive that same event.
    pub const fn id_field(self) -> Option<&'static str> {
        match self {
            EventKind::Resumed | EventKind::Ready => None,
            EventKind::GuildCreate
            | EventKind::MessageCreate
            | EventKind::MessageUpdate
            | EventKind::MessageDelete
            | EventKind::InteractionCreate => Some("id"),
            EventKind::TypingStart => Some("user_id"),
            EventKind::PresenceUpdate | EventKind::GuildMemberAdd => Some("user.id"),
            // Command answers go to the asking session only; the guild names them.
            EventKind::GuildMembersChunk
            | EventKind::VoiceStateUpdate
            | EventKind::VoiceServerUpdate
            | EventKind::SoundboardSounds
            | EventKind::ChannelInfo => Some("guild_id"),
            EventKind::RateLimited => Some("meta.guild_id"),
        }
    }

    /// The intent a session needs to receive this kind (0: always sent).
    pub(crate) const fn required_intent(self) -> u64 {
        match self {
            EventKind::MessageCreate | EventKind::MessageUpdate | EventKind::MessageDelete => {
                1 << 9
            }
            EventKind::TypingStart => 1 << 11,
            EventKind::PresenceUpdate => 1 << 8,
            EventKind::GuildMemberAdd => 1 << 1,
            EventKind::Ready
            | EventKind::GuildCreate
            | EventKind::Resumed
            | EventKind::InteractionCreate
            | EventKind::GuildMembersChunk
            | EventKind::RateLimited
            | EventKind::VoiceStateUpdate
            | EventKind::VoiceServerUpdate
            | EventKind::SoundboardSounds
            | EventKind::ChannelInfo => 0,
        }
    }
}

/// One generated event: where it goes, what it is, and its unique id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Generated {
    pub kind: EventKind,
    pub guild: u32,
    pub id: u64,
}

/// Seeded source of traffic events: the same seed and world give the same events.
#[derive(Debug)]
pub(crate) struct TrafficGen {
    rng: StdRng,
    world: World,
}

const WORDS: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod \
tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud \
exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat duis aute irure dolor \
in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur excepteur \
sint occaecat cupidatat non proident sunt in culpa qui officia deserunt mollit anim id est";

/// Users who post messages; other kinds get a fresh user per event so the id is unique.
const AUTHORS: u64 = 1_000;

impl TrafficGen {
    pub(crate) fn new(seed: u64, world: World) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            world,
        }
    }

    /// Generates the next event and writes its `d` payload into `out` (cleared first).
    ///
    /// Returns `None` when the world has no guilds.
    pub(crate) fn next_into(&mut self, ids: &Snowflakes, out: &mut String) -> Option<Generated> {
        if self.world.guilds() == 0 {
            return None;
        }
        out.clear();
        let guild = self.rng.random_range(0..self.world.guilds());
        let mut pick = self.rng.random_range(0..100);
        let kind = EventKind::MIX
            .iter()
            .find(|(_, weight)| {
                let hit = pick < *weight;
                pick = pick.saturating_sub(*weight);
                hit
            })
            .map_or(EventKind::MessageCreate, |(kind, _)| *kind);
        let id = ids.next();
        let channel = self.world.channel_id(guild, self.rng.random_range(0..4));
        let guild_id = self.world.guild_id(guild);
        match kind {
            EventKind::MessageCreate | EventKind::MessageUpdate => {
                let author = author_id(self.rng.random_range(0..AUTHORS));
                let len = self.rng.random_range(4..=WORDS.len());
                let content = &WORDS[..len];
                let edited = kind == EventKind::MessageUpdate;
                write_message(out, id, channel, Some(guild_id), author, content, edited);
            }
            EventKind::MessageDelete => {
                let _ = write!(
                    out,
                    r#"{{"id":"{id}","channel_id":"{channel}","guild_id":"{guild_id}"}}"#
                );
            }
            EventKind::TypingStart => {
                let _ = write!(
                    out,
                    r#"{{"user_id":"{id}","channel_id":"{channel}","guild_id":"{guild_id}","timestamp":{},"member":"#,
                    snowflake_unix_ms(id) / 1000
                );
                write_member(out, id, id);
                out.push('}');
            }
            EventKind::PresenceUpdate => {
                let status = ["online", "idle", "dnd"][self.rng.random_range(0..3)];
                let _ = write!(
                    out,
                    r#"{{"user":{{"id":"{id}"}},"guild_id":"{guild_id}","status":"{status}","activities":[],"client_status":{{"desktop":"{status}"}}}}"#
                );
            }
            EventKind::GuildMemberAdd => {
                let _ = write!(out, r#"{{"guild_id":"{guild_id}","#);
                write_member_fields(out, id, id);
                out.push('}');
            }
            EventKind::InteractionCreate => {
                let user = author_id(self.rng.random_range(0..AUTHORS));
                write_interaction(out, id, guild_id, channel, user);
            }
            EventKind::Ready
            | EventKind::GuildCreate
            | EventKind::Resumed
            | EventKind::GuildMembersChunk
            | EventKind::RateLimited
            | EventKind::VoiceStateUpdate
            | EventKind::VoiceServerUpdate
            | EventKind::SoundboardSounds
            | EventKind::ChannelInfo => {
                unreachable!("not in the traffic mix")
            }
        }
        Some(Generated { kind, guild, id })
    }
}

/// The id of author number `n`.
fn author_id(n: u64) -> u64 {
    // Authors live in 2019, away from guilds (2020) and events (2025).
    ((1_546_300_800_000 - crate::world::DISCORD_EPOCH_MS + n) << 22) | 7
}

/// Another user as Discord shows them in events: the public part of the User object.
/// `mfa_enabled`, `locale`, `verified`, `email`, `premium_type`, `flags`, `banner` and
/// `accent_color` are only sent to the user themselves (`/users/@me`, READY), so they
/// are left out here as Discord leaves them out; `system` is sent only when true.
fn write_user(out: &mut String, id: u64, bot: bool) {
    let _ = write!(
        out,
        r#"{{"id":"{id}","username":"user{}","discriminator":"0","global_name":null,"avatar":null,"public_flags":0,"avatar_decoration_data":null,"collectibles":null,"primary_guild":null,"bot":{bot}}}"#,
        id % 100_000
    );
}

/// A guild member object (user included) who joined at the time of `joined`.
fn write_member(out: &mut String, user: u64, joined: u64) {
    out.push('{');
    write_member_fields(out, user, joined);
    out.push('}');
}

/// The fields of a member object, without braces.
fn write_member_fields(out: &mut String, user: u64, joined: u64) {
    out.push_str(r#""user":"#);
    write_user(out, user, false);
    out.push_str(r#","roles":[],"joined_at":""#);
    write_timestamp(out, snowflake_unix_ms(joined));
    out.push_str(
        r#"","nick":null,"avatar":null,"banner":null,"premium_since":null,"communication_disabled_until":null,"deaf":false,"mute":false,"flags":0,"pending":false,"avatar_decoration_data":null"#,
    );
}

/// A generated message object for `MESSAGE_CREATE` / `MESSAGE_UPDATE`, written
/// straight into `out` (messages created on request are shaped in `messages.rs`).
fn write_message(
    out: &mut String,
    id: u64,
    channel: u64,
    guild: Option<u64>,
    author: u64,
    content: &str,
    edited: bool,
) {
    let _ = write!(out, r#"{{"id":"{id}","type":0,"channel_id":"{channel}","#);
    if let Some(guild) = guild {
        let _ = write!(out, r#""guild_id":"{guild}","#);
    }
    out.push_str(r#""author":"#);
    write_user(out, author, author == BOT_USER_ID);
    if guild.is_some() {
        out.push_str(r#","member":{"roles":[],"joined_at":""#);
        write_timestamp(out, snowflake_unix_ms(author));
        // The partial member of a message: every member field but `user` (the author
        // is beside it) and `permissions` (interactions only).
        out.push_str(
            r#"","deaf":false,"mute":false,"flags":0,"nick":null,"avatar":null,"banner":null,"premium_since":null,"pending":false,"communication_disabled_until":null,"avatar_decoration_data":null}"#,
        );
    }
    out.push_str(r#","content":"#);
    let _ = write!(out, "{}", serde_json::Value::from(content));
    out.push_str(r#","timestamp":""#);
    write_timestamp(out, snowflake_unix_ms(id));
    out.push_str(r#"","edited_timestamp":"#);
    if edited {
        out.push('"');
        write_timestamp(out, snowflake_unix_ms(id) + 1_000);
        out.push('"');
    } else {
        out.push_str("null");
    }
    out.push_str(
        r#","tts":false,"mention_everyone":false,"mentions":[],"mention_roles":[],"attachments":[],"embeds":[],"components":[],"pinned":false,"flags":0}"#,
    );
}

/// An application command interaction from a guild channel. `user` is sent only for
/// DMs and `message` only for component interactions, so both are left out; `guild`
/// and `channel` are the partial objects Discord documents.
fn write_interaction(out: &mut String, id: u64, guild: u64, channel: u64, user: u64) {
    let _ = write!(
        out,
        r#"{{"id":"{id}","application_id":"{BOT_USER_ID}","type":2,"data":{{"id":"{}","name":"ping","type":1,"options":[]}},"guild":{{"id":"{guild}","locale":"en-US","features":[]}},"guild_id":"{guild}","channel":"#,
        BOT_USER_ID + 1
    );
    write_text_channel(out, guild, channel);
    let _ = write!(out, r#","channel_id":"{channel}","member":"#);
    out.push('{');
    write_member_fields(out, user, user);
    out.push_str(r#","permissions":"2248473465835073"}"#);
    let _ = write!(
        out,
        r#","token":"aW50ZXJhY3Rpb246{id:020}OnNpbXVsYXRlZC10b2tlbi1mb3Itc2hhcmRtZXNoLXNpbS1pbnRlcmFjdGlvbnMtd2l0aC1yZWFsaXN0aWMtbGVuZ3Ro","version":1,"app_permissions":"2248473465835073","locale":"en-US","guild_locale":"en-US","entitlements":[],"authorizing_integration_owners":{{"0":"{guild}"}},"context":0,"attachment_size_limit":26214400}}"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(seed: u64, count: usize) -> Vec<(Generated, String)> {
        let mut traffic = TrafficGen::new(seed, World::new(20, 4));
        let ids = Snowflakes::default();
        let mut out = String::new();
        (0..count)
            .map(|_| {
                let event = traffic.next_into(&ids, &mut out).unwrap();
                (event, out.clone())
            })
            .collect()
    }

    #[test]
    fn same_seed_same_traffic() {
        assert_eq!(generate(7, 200), generate(7, 200));
        assert_ne!(generate(7, 200), generate(8, 200));
    }

    #[test]
    fn every_payload_is_json_with_its_unique_id() {
        let events = generate(1, 2_000);
        for kind in EventKind::MIX.map(|(kind, _)| kind) {
            assert!(
                events.iter().any(|(e, _)| e.kind == kind),
                "{kind:?} never generated"
            );
        }
        for (event, d) in &events {
            let value: serde_json::Value =
                serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"));
            let field = event.kind.id_field().unwrap();
            let found = field.split('.').fold(&value, |v, key| &v[key]);
            assert_eq!(found.as_str(), Some(event.id.to_string().as_str()), "{d}");
        }
    }
}
