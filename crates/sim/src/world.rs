//! The simulated bot's world: guilds, channels, users and snowflakes, all derived from
//! arithmetic on ids (or hashes of names) so nothing per guild is stored.
//!
//! Guild `i` has the snowflake whose timestamp part is `base + i`, so guilds fall on
//! shards round-robin under Discord's `(guild_id >> 22) % count` for *every* count, not
//! only the configured one (a bot re-sharding to another count finds its guilds spread
//! evenly there too). `base` is a multiple of the configured count and of 2^16, so
//! guild 0 is on shard 0 for the configured count and for every power-of-two count, and
//! guild `i` on shard `i % count` for those: what a re-sharding test expects. Every id
//! that belongs to a guild (channels, the webhook, the owner) shares the guild's
//! timestamp part, so `id >> 22` finds the guild back.
//!
//! What happens in the world at runtime (messages posted, webhooks created) is kept in
//! `channels.rs`; this file only describes what exists from the start.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Discord's epoch (2015-01-01) in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Channels each guild has; channel `k` of guild `g` is `g | (k + 1)`.
pub const CHANNELS_PER_GUILD: u64 = 4;

/// Timestamp part (ms since the Discord epoch) of the first guild: 2020-01-01.
const GUILD_BASE_MS: u64 = 1_577_836_800_000 - DISCORD_EPOCH_MS;
/// Timestamp part of the first generated (event) snowflake: 2025-01-01.
const EVENT_BASE_MS: u64 = 1_735_689_600_000 - DISCORD_EPOCH_MS;
/// The low bits of a guild-space id marking the guild's webhook.
const WEBHOOK_TAG: u64 = 0x800;
/// The low bits of a guild-space id marking the guild's owner.
const OWNER_TAG: u64 = 0x900;

/// Timestamp part of users named by [`user_id`]: 2016-01-01, before every guild.
const NAMED_USER_BASE_MS: u64 = 1_451_606_400_000 - DISCORD_EPOCH_MS;

/// The bot's own user id (and its application id).
pub const BOT_USER_ID: u64 = 1_000_000_000_000_000_001;

/// The bot's username, as READY and the `user` of its webhooks show it.
pub(crate) const BOT_USERNAME: &str = "shardmesh-sim";

/// The bot's complete User object, as `GET /users/@me` and READY's `user` show it.
///
/// Written out (with [`BOT_USER_ID`] and [`BOT_USERNAME`] inlined; a test checks
/// they agree) so READY copies a literal. A bot has no email, banner, accent colour,
/// decoration or Nitro: Discord sends those keys as `null` (`premium_type` as 0).
pub(crate) const BOT_USER_JSON: &str = concat!(
    r#"{"id":"1000000000000000001","username":"shardmesh-sim","discriminator":"0","#,
    r#""global_name":null,"avatar":null,"bot":true,"system":false,"mfa_enabled":true,"#,
    r#""banner":null,"accent_color":null,"locale":"en-US","verified":true,"email":null,"#,
    r#""flags":0,"premium_type":0,"public_flags":0,"avatar_decoration_data":null,"#,
    r#""collectibles":null,"primary_guild":null}"#
);

/// The bot application's flags, in READY's `application` and `GET
/// /applications/@me`: `GATEWAY_PRESENCE_LIMITED | GATEWAY_GUILD_MEMBERS_LIMITED |
/// GATEWAY_MESSAGE_CONTENT_LIMITED`, what an unverified bot with the privileged intents
/// switched on in the developer portal has (the simulator accepts them).
pub(crate) const APPLICATION_FLAGS: u64 = (1 << 13) | (1 << 15) | (1 << 19);

/// The user id of the human who owns the bot application.
pub(crate) const APPLICATION_OWNER_ID: u64 = 1_000_000_000_000_000_002;

/// The name of each guild's built-in webhook ([`GuildInfo::webhook_id`]).
pub(crate) const GUILD_WEBHOOK_NAME: &str = "shardmesh-sim webhook";

/// A guild of the simulated bot, with the ids REST requests can use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuildInfo {
    /// Position among the bot's guilds.
    pub index: u32,
    /// The guild's id (a string in JSON, as every snowflake here).
    #[serde(serialize_with = "crate::string_ids::one")]
    pub id: u64,
    /// The shard that receives its events.
    pub shard: u32,
    /// Its text channels (`POST /channels/{id}/messages` works on each).
    #[serde(serialize_with = "crate::string_ids::each")]
    pub channels: Vec<u64>,
    /// Its built-in webhook's id; the webhook posts into `channels[0]`.
    #[serde(serialize_with = "crate::string_ids::one")]
    pub webhook_id: u64,
    /// Its built-in webhook's token (`POST /webhooks/{id}/{token}`).
    pub webhook_token: String,
}

/// Layout of guilds over shards.
#[derive(Clone, Copy, Debug)]
pub(crate) struct World {
    guilds: u32,
    shards: u32,
    /// Timestamp part of guild 0, rounded so guild 0 lands on shard 0 of the
    /// configured count and of every power-of-two count.
    base: u64,
}

/// Every power-of-two shard count up to 65,536 divides this.
const POWERS_OF_TWO: u64 = 1 << 16;

impl World {
    pub(crate) fn new(guilds: u32, shards: u32) -> Self {
        let shards_u64 = u64::from(shards.max(1));
        // At most 65,535 * 65,536 ms (about 50 days) before 2020: still after the
        // authors (2019-01-01) and named users (2016).
        let round = shards_u64 / gcd(shards_u64, POWERS_OF_TWO) * POWERS_OF_TWO;
        let base = GUILD_BASE_MS - GUILD_BASE_MS % round;
        Self {
            guilds,
            shards,
            base,
        }
    }

    pub(crate) fn guilds(&self) -> u32 {
        self.guilds
    }

    pub(crate) fn guild_id(&self, index: u32) -> u64 {
        (self.base + u64::from(index)) << 22
    }

    pub(crate) fn channel_id(&self, index: u32, channel: u64) -> u64 {
        self.guild_id(index) | (channel % CHANNELS_PER_GUILD + 1)
    }

    pub(crate) fn webhook_id(&self, index: u32) -> u64 {
        self.guild_id(index) | WEBHOOK_TAG
    }

    pub(crate) fn owner_id(&self, index: u32) -> u64 {
        self.guild_id(index) | OWNER_TAG
    }

    /// The guild whose id space holds `id`, if it is one of ours.
    pub(crate) fn guild_of(&self, id: u64) -> Option<u32> {
        let index = (id >> 22).checked_sub(self.base)?;
        u32::try_from(index).ok().filter(|&i| i < self.guilds)
    }

    /// The guild a channel id names, if the channel exists.
    pub(crate) fn guild_of_channel(&self, channel_id: u64) -> Option<u32> {
        let low = channel_id & 0x3F_FFFF;
        (1..=CHANNELS_PER_GUILD)
            .contains(&low)
            .then(|| self.guild_of(channel_id))
            .flatten()
    }

    /// The guild a webhook id belongs to, if the webhook exists.
    pub(crate) fn guild_of_webhook(&self, webhook_id: u64) -> Option<u32> {
        (webhook_id & 0x3F_FFFF == WEBHOOK_TAG)
            .then(|| self.guild_of(webhook_id))
            .flatten()
    }

    /// Discord's rule for the configured count: `(guild_id >> 22) % shards`.
    pub(crate) fn shard_of(&self, index: u32) -> u32 {
        self.shard_in(index, self.shards)
    }

    /// Discord's rule for any count: `(guild_id >> 22) % count`.
    pub(crate) fn shard_in(&self, index: u32, count: u32) -> u32 {
        shard_of_id(self.guild_id(index), count)
    }

    /// Guild indexes on `shard` of the configured count, in order.
    #[cfg(test)]
    pub(crate) fn guilds_of_shard(&self, shard: u32) -> impl Iterator<Item = u32> + use<> {
        self.guilds_of_shard_in(shard, self.shards)
    }

    /// Guild indexes on `shard` of a set of `count` shards, in order: consecutive
    /// timestamps, so every `count`-th guild from the first one that lands there.
    pub(crate) fn guilds_of_shard_in(
        &self,
        shard: u32,
        count: u32,
    ) -> impl Iterator<Item = u32> + use<> {
        let count = count.max(1);
        let offset = u32::try_from(self.base % u64::from(count)).expect("below a u32 count");
        let first = (shard % count + count - offset) % count;
        (first..self.guilds).step_by(count as usize)
    }

    /// Every guild with its ids, in index order.
    pub(crate) fn guild_infos(&self) -> Vec<GuildInfo> {
        (0..self.guilds)
            .map(|index| GuildInfo {
                index,
                id: self.guild_id(index),
                shard: self.shard_of(index),
                channels: (0..CHANNELS_PER_GUILD)
                    .map(|k| self.channel_id(index, k))
                    .collect(),
                webhook_id: self.webhook_id(index),
                webhook_token: webhook_token(index),
            })
            .collect()
    }
}

/// Discord's rule: the shard of `count` that receives guild `guild_id`'s events.
pub(crate) fn shard_of_id(guild_id: u64, count: u32) -> u32 {
    u32::try_from((guild_id >> 22) % u64::from(count.max(1))).expect("below a u32 count")
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The token of guild `index`'s built-in webhook.
pub(crate) fn webhook_token(index: u32) -> String {
    format!("sim-webhook-{index}")
}

/// The id of the human user called `username`: stable, so the same name posting twice
/// is the same user, and in its own id space (2016) away from guilds and events.
pub(crate) fn user_id(username: &str) -> u64 {
    ((NAMED_USER_BASE_MS + (fnv1a(username.as_bytes(), 0) & 0xFFFF_FFFF)) << 22) | 0x3
}

/// Where Discord serves user avatars: `{CDN_AVATARS}{user id}/{hash}.{ext}`.
const CDN_AVATARS: &str = "https://cdn.discordapp.com/avatars/";

/// The avatar hash a webhook message shows for `avatar_url`: what twilight's
/// `ImageHash` parses (32 lowercase hex digits, `a_` in front when animated).
///
/// Discord downloads an `avatar_url` and shows it under a hash of its own; the
/// simulator fetches nothing, so it derives the hash from the URL instead:
///
/// - a user avatar on Discord's CDN, `https://cdn.discordapp.com/avatars/{id}/{hash}.png`
///   (what a bot builds to repost as a user), shows that same `hash`, so a mirrored
///   message carries the original author's avatar;
/// - any other URL shows a hash of the URL, the same for the same URL.
///
/// Compare a webhook message's `author.avatar` with `avatar_hash(url)` to check
/// which URL a bot passed.
///
/// ```
/// use shardmesh_sim::avatar_hash;
///
/// let url = "https://cdn.discordapp.com/avatars/80351110224678912/0123456789abcdef0123456789abcdef.png";
/// assert_eq!(avatar_hash(url), "0123456789abcdef0123456789abcdef");
/// assert_eq!(avatar_hash("https://example.com/me.png").len(), 32);
/// ```
pub fn avatar_hash(url: &str) -> String {
    let on_cdn = url
        .strip_prefix(CDN_AVATARS)
        .and_then(|path| path.split_once('/'))
        .and_then(|(_, file)| file.split(['.', '?']).next())
        .filter(|hash| is_image_hash(hash));
    on_cdn.map_or_else(
        || {
            let bytes = url.as_bytes();
            format!("{:016x}{:016x}", fnv1a(bytes, 0), fnv1a(bytes, 1))
        },
        str::to_owned,
    )
}

/// Whether `hash` has the shape of a Discord image hash: 32 lowercase hex digits,
/// `a_` in front for an animated one.
pub(crate) fn is_image_hash(hash: &str) -> bool {
    let digits = hash.strip_prefix("a_").unwrap_or(hash);
    digits.len() == 32
        && digits
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 64-bit FNV-1a, with `seed` mixed in first: stable across runs and platforms, unlike
/// std's hasher, so ids and hashes derived from names never change.
fn fnv1a(bytes: &[u8], seed: u8) -> u64 {
    std::iter::once(seed)
        .chain(bytes.iter().copied())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Hands out unique snowflakes in order: timestamp part from 2025-01-01 on, 4,096 per
/// millisecond, so the same sequence of calls gives the same ids.
#[derive(Debug, Default)]
pub(crate) struct Snowflakes {
    next: AtomicU64,
}

impl Snowflakes {
    pub(crate) fn next(&self) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        ((EVENT_BASE_MS + (n >> 12)) << 22) | (1 << 17) | (n & 0xFFF)
    }
}

/// Unix milliseconds of a snowflake.
pub(crate) fn snowflake_unix_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// Writes `ms` (Unix milliseconds) as the RFC 3339 form Discord uses,
/// `2021-01-01T01:01:01.000000+00:00` (twilight rejects shorter forms).
pub(crate) fn write_timestamp(out: &mut String, ms: u64) {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).expect("timestamps fit i64");
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    );
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).expect("day in 1..=31");
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).expect("month in 1..=12");
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guilds_spread_round_robin_over_shards() {
        let world = World::new(10, 4);
        let shards: Vec<u32> = (0..10).map(|g| world.shard_of(g)).collect();
        assert_eq!(shards, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
        assert_eq!(world.guilds_of_shard(1).collect::<Vec<_>>(), [1, 5, 9]);
        for shard in 0..4 {
            assert!(
                world
                    .guilds_of_shard(shard)
                    .all(|g| world.shard_of(g) == shard)
            );
        }
    }

    #[test]
    fn guilds_spread_over_every_count_not_only_the_configured_one() {
        for (configured, count) in [(8, 16), (8, 8), (3, 16), (5, 7), (16, 8), (1, 2)] {
            let world = World::new(100, configured);
            let mut seen = 0;
            for shard in 0..count {
                let guilds: Vec<u32> = world.guilds_of_shard_in(shard, count).collect();
                assert!(guilds.iter().all(|&g| world.shard_in(g, count) == shard));
                assert!(
                    guilds.len().abs_diff(100 / count as usize) <= 1,
                    "{guilds:?}"
                );
                seen += guilds.len();
            }
            assert_eq!(seen, 100, "every guild on exactly one shard of {count}");
        }
        let world = World::new(32, 8);
        let on_16: Vec<u32> = (0..32).map(|g| world.shard_in(g, 16)).collect();
        assert_eq!(
            on_16[..17],
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0]
        );
        let widest = World::new(10, 65_535);
        assert_eq!(widest.shard_of(0), 0);
        assert!(
            widest.guild_id(0) > author_floor(),
            "guilds stay after authors"
        );
    }

    /// The first author id (2019-01-01), which every guild must come after.
    fn author_floor() -> u64 {
        (1_546_300_800_000 - DISCORD_EPOCH_MS) << 22
    }

    #[test]
    fn ids_lead_back_to_their_guild() {
        let world = World::new(3, 2);
        assert_eq!(world.guild_of_channel(world.channel_id(2, 3)), Some(2));
        assert_eq!(world.guild_of_channel(world.guild_id(2)), None);
        assert_eq!(world.guild_of_webhook(world.webhook_id(1)), Some(1));
        assert_eq!(world.guild_of_webhook(world.channel_id(1, 0)), None);
        assert_eq!(world.guild_of(world.owner_id(0)), Some(0));
        assert_eq!(world.guild_of(world.guild_id(2) + (1 << 22)), None);
        assert_eq!(world.guild_of(5), None);
    }

    #[test]
    fn guild_infos_list_every_guild_with_its_ids() {
        let world = World::new(3, 2);
        let infos = world.guild_infos();
        assert_eq!(infos.len(), 3);
        let second = &infos[1];
        assert_eq!(second.id, world.guild_id(1));
        assert_eq!(second.shard, 1);
        assert_eq!(second.channels.len(), 4);
        assert!(
            second
                .channels
                .iter()
                .all(|&c| world.guild_of_channel(c) == Some(1))
        );
        assert_eq!(world.guild_of_webhook(second.webhook_id), Some(1));
        assert_eq!(second.webhook_token, webhook_token(1));
    }

    #[test]
    fn names_give_stable_ids_and_hashes() {
        assert_eq!(user_id("alice"), user_id("alice"));
        assert_ne!(user_id("alice"), user_id("bob"));
        let world = World::new(10, 1);
        assert_eq!(world.guild_of(user_id("alice")), None);
        assert!(
            user_id("alice") < world.guild_id(0),
            "named users predate guilds"
        );

        let hash = avatar_hash("https://cdn.example/a.png");
        assert_eq!(hash, avatar_hash("https://cdn.example/a.png"));
        assert_ne!(hash, avatar_hash("https://cdn.example/b.png"));
        assert!(is_image_hash(&hash), "{hash}");
        assert!(is_image_hash(&format!("a_{hash}")));
        assert!(!is_image_hash("https://cdn.example/a.png"));
        assert!(!is_image_hash(&hash.to_uppercase()));

        let animated = "a_0123456789abcdef0123456789abcdef";
        let cdn = format!("https://cdn.discordapp.com/avatars/42/{animated}.gif?size=128");
        assert_eq!(avatar_hash(&cdn), animated, "a CDN avatar keeps its hash");
        let default = "https://cdn.discordapp.com/embed/avatars/1.png";
        assert!(is_image_hash(&avatar_hash(default)));
    }

    #[test]
    fn bot_user_json_names_the_bot() {
        let user: serde_json::Value = serde_json::from_str(BOT_USER_JSON).unwrap();
        assert_eq!(user["id"], BOT_USER_ID.to_string());
        assert_eq!(user["username"], BOT_USERNAME);
        assert_eq!(user["bot"], true);
    }

    #[test]
    fn snowflakes_are_unique_and_increasing() {
        let ids = Snowflakes::default();
        let all: Vec<u64> = (0..10_000).map(|_| ids.next()).collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(snowflake_unix_ms(all[0]), 1_735_689_600_000);
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let mut out = String::new();
        write_timestamp(&mut out, 1_609_462_861_123);
        assert_eq!(out, "2021-01-01T01:01:01.123000+00:00");
        out.clear();
        write_timestamp(&mut out, 951_782_400_000);
        assert_eq!(out, "2000-02-29T00:00:00.000000+00:00");
    }
}
