//! Gateway frame text: compact JSON with `t`, `s` and `op` before `d`, as Discord sends
//! it and as twilight's cheap deserializer expects (it scans for `"op":`, `"s":` and
//! `"t":` before `d`). Built by hand, never with `serde_json::json!` (it sorts keys).

use std::fmt::Write as _;

use crate::traffic::EventKind;
use crate::world::{APPLICATION_FLAGS, BOT_USER_ID, BOT_USER_JSON, World, write_timestamp};

/// Gateway opcodes the simulator sends or reads.
pub(crate) mod op {
    pub const HEARTBEAT: u64 = 1;
    pub const IDENTIFY: u64 = 2;
    pub const PRESENCE_UPDATE: u64 = 3;
    pub const VOICE_STATE_UPDATE: u64 = 4;
    pub const RESUME: u64 = 6;
    pub const REQUEST_GUILD_MEMBERS: u64 = 8;
    pub const REQUEST_SOUNDBOARD_SOUNDS: u64 = 31;
}

/// HELLO (op 10).
pub(crate) fn hello(heartbeat_interval_ms: u64) -> String {
    format!(r#"{{"t":null,"s":null,"op":10,"d":{{"heartbeat_interval":{heartbeat_interval_ms}}}}}"#)
}

/// HEARTBEAT ACK (op 11).
pub(crate) const HEARTBEAT_ACK: &str = r#"{"t":null,"s":null,"op":11,"d":null}"#;

/// A heartbeat request from the server (op 1): the client must heartbeat now.
pub(crate) const HEARTBEAT_REQUEST: &str = r#"{"t":null,"s":null,"op":1,"d":null}"#;

/// RECONNECT (op 7).
pub(crate) const RECONNECT: &str = r#"{"t":null,"s":null,"op":7,"d":null}"#;

/// INVALID SESSION (op 9) with whether the session may be resumed.
pub(crate) fn invalid_session(resumable: bool) -> &'static str {
    if resumable {
        r#"{"t":null,"s":null,"op":9,"d":true}"#
    } else {
        r#"{"t":null,"s":null,"op":9,"d":false}"#
    }
}

/// A dispatch frame around an already serialized `d`.
pub(crate) fn dispatch(kind: EventKind, seq: u64, d: &str) -> String {
    let t = kind.as_str();
    let mut frame = String::with_capacity(d.len() + t.len() + 40);
    let _ = write!(frame, r#"{{"t":"{t}","s":{seq},"op":0,"d":"#);
    frame.push_str(d);
    frame.push('}');
    frame
}

/// The `d` of RESUMED.
pub(crate) const RESUMED_D: &str = r#"{"_trace":["[\"shardmesh-sim\"]"]}"#;

/// The `d` of READY for a new session of shard `[shard, count]`: the guilds that
/// shard of that count receives.
pub(crate) fn ready_d(
    world: &World,
    [shard, count]: [u32; 2],
    session_id: &str,
    resume_url: &str,
) -> String {
    let mut d = String::with_capacity(256 + 40 * world.guilds().div_ceil(count.max(1)) as usize);
    let _ = write!(
        d,
        r#"{{"v":10,"user":{BOT_USER_JSON},"user_settings":{{}},"relationships":[],"guild_join_requests":[],"private_channels":[],"presences":[],"geo_ordered_rtc_regions":["us-east","us-central","us-south","us-west","atlanta"],"guilds":["#
    );
    for (n, guild) in world.guilds_of_shard_in(shard, count).enumerate() {
        if n > 0 {
            d.push(',');
        }
        let _ = write!(
            d,
            r#"{{"id":"{}","unavailable":true}}"#,
            world.guild_id(guild)
        );
    }
    let _ = write!(
        d,
        r#"],"session_id":"{session_id}","session_type":"normal","resume_gateway_url":"{resume_url}","shard":[{shard},{count}],"application":{{"id":"{BOT_USER_ID}","flags":{APPLICATION_FLAGS}}}}}"#
    );
    d
}

/// How many members a guild has and when IDENTIFY counts it as `large`.
#[derive(Clone, Copy)]
pub(crate) struct GuildMembers {
    pub(crate) count: u32,
    pub(crate) large_threshold: u32,
}

/// The `d` of `GUILD_CREATE` for guild `index` (available, with its channels and the
/// `@everyone` role).
pub(crate) fn guild_create_d(world: &World, index: u32, members: GuildMembers) -> String {
    let id = world.guild_id(index);
    let mut d = String::with_capacity(1_536);
    let _ = write!(
        d,
        r#"{{"id":"{id}","name":"sim guild {index}","icon":null,"splash":null,"discovery_splash":null,"banner":null,"description":null,"owner_id":"{}","afk_channel_id":null,"afk_timeout":300,"default_message_notifications":1,"explicit_content_filter":0,"mfa_level":0,"nsfw_level":0,"verification_level":1,"premium_tier":0,"premium_subscription_count":0,"features":[],"preferred_locale":"en-US","system_channel_id":"{}","system_channel_flags":0,"premium_progress_bar_enabled":false,"application_id":null,"rules_channel_id":null,"public_updates_channel_id":null,"safety_alerts_channel_id":null,"vanity_url_code":null,"widget_enabled":false,"widget_channel_id":null,"max_members":500000,"max_presences":null,"max_video_channel_users":25,"max_stage_video_channel_users":50,"incidents_data":null,"unavailable":false,"large":{},"member_count":{},"joined_at":""#,
        world.owner_id(index),
        world.channel_id(index, 0),
        members.count > members.large_threshold,
        members.count,
    );
    write_timestamp(&mut d, crate::world::snowflake_unix_ms(id));
    let _ = write!(
        d,
        r#"","roles":[{{"id":"{id}","name":"@everyone","color":0,"colors":{{"primary_color":0,"secondary_color":null,"tertiary_color":null}},"hoist":false,"icon":null,"unicode_emoji":null,"managed":false,"mentionable":false,"permissions":"2248473465835073","position":0,"flags":0}}],"emojis":[],"stickers":[],"channels":["#
    );
    for k in 0..crate::world::CHANNELS_PER_GUILD {
        if k > 0 {
            d.push(',');
        }
        write_text_channel(&mut d, id, world.channel_id(index, k));
    }
    // The bot's own member: Discord lists it in `members` even without the members
    // intent (the rest arrive through op 8).
    d.push_str(r#"],"threads":[],"members":[{"user":"#);
    d.push_str(BOT_USER_JSON);
    d.push_str(r#","roles":[],"joined_at":""#);
    write_timestamp(&mut d, crate::world::snowflake_unix_ms(id));
    d.push_str(r#"","nick":null,"avatar":null,"banner":null,"premium_since":null,"deaf":false,"mute":false,"flags":0,"pending":false,"communication_disabled_until":null,"avatar_decoration_data":null}],"presences":[],"voice_states":[],"stage_instances":[],"guild_scheduled_events":[],"soundboard_sounds":[]}"#);
    d
}

/// A text channel object (`GUILD_CREATE`'s `channels`, an interaction's `channel`):
/// channel `k` of its guild is named `channel-{k}` and sits at position `k`.
/// `last_pin_timestamp` is sent as `null` (nothing was ever pinned); `guild_id` is
/// kept in `GUILD_CREATE` too, where Discord leaves it out, because clients fill it in
/// there anyway and need it everywhere else.
pub(crate) fn write_text_channel(out: &mut String, guild: u64, channel: u64) {
    let k = (channel & 0x3F_FFFF).saturating_sub(1);
    let _ = write!(
        out,
        r#"{{"id":"{channel}","type":0,"guild_id":"{guild}","name":"channel-{k}","position":{k},"parent_id":null,"topic":null,"nsfw":false,"last_message_id":null,"last_pin_timestamp":null,"rate_limit_per_user":0,"flags":0,"permission_overwrites":[]}}"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_in_order(frame: &str) {
        let t = frame.find(r#""t":"#).unwrap();
        let s = frame.find(r#""s":"#).unwrap();
        let op = frame.find(r#""op":"#).unwrap();
        let d = frame.find(r#""d":"#).unwrap();
        assert!(t < s && s < op && op < d, "{frame}");
    }

    #[test]
    fn frames_put_t_s_op_before_d() {
        keys_in_order(&hello(41_250));
        keys_in_order(HEARTBEAT_ACK);
        keys_in_order(HEARTBEAT_REQUEST);
        keys_in_order(RECONNECT);
        keys_in_order(invalid_session(true));
        keys_in_order(&dispatch(
            EventKind::MessageCreate,
            7,
            r#"{"op":3,"s":1,"t":2}"#,
        ));
    }

    #[test]
    fn dispatch_frame_is_exact() {
        assert_eq!(
            dispatch(EventKind::Resumed, 42, RESUMED_D),
            r#"{"t":"RESUMED","s":42,"op":0,"d":{"_trace":["[\"shardmesh-sim\"]"]}}"#
        );
    }

    #[test]
    fn ready_and_guild_create_are_json() {
        let world = World::new(5, 2);
        let ready = ready_d(&world, [1, 2], "abc", "ws://127.0.0.1:1");
        let value: serde_json::Value = serde_json::from_str(&ready).unwrap();
        assert_eq!(value["guilds"].as_array().unwrap().len(), 2);
        assert_eq!(value["shard"], serde_json::json!([1, 2]));
        let wider: serde_json::Value =
            serde_json::from_str(&ready_d(&world, [3, 4], "abc", "ws://127.0.0.1:1")).unwrap();
        assert_eq!(wider["guilds"].as_array().unwrap().len(), 1);
        assert_eq!(wider["shard"], serde_json::json!([3, 4]));
        let members = GuildMembers {
            count: 51,
            large_threshold: 50,
        };
        let guild: serde_json::Value =
            serde_json::from_str(&guild_create_d(&world, 3, members)).unwrap();
        assert_eq!(guild["id"], world.guild_id(3).to_string());
        assert_eq!(guild["channels"].as_array().unwrap().len(), 4);
        assert_eq!(guild["member_count"], 51);
        assert_eq!(guild["large"], true);
    }
}
