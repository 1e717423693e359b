//! The simulated bot's world: guilds, channels, users and snowflakes, all derived from
//! arithmetic on ids so nothing per guild is stored.
//!
//! Guild `i` has the snowflake whose timestamp part is `GUILD_BASE + i`, so guilds
//! fall on shards round-robin under Discord's `(guild_id >> 22) % shards`. Every id
//! that belongs to a guild (channels, the webhook, the owner) shares the guild's
//! timestamp part, so `id >> 22` finds the guild back.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The bot's own user id (and its application id).
pub const BOT_USER_ID: u64 = 1_000_000_000_000_000_001;

/// Layout of guilds over shards.
#[derive(Clone, Copy, Debug)]
pub(crate) struct World {
    guilds: u32,
    shards: u32,
    /// Timestamp part of guild 0, rounded so guild 0 lands on shard 0.
    base: u64,
}

impl World {
    pub(crate) fn new(guilds: u32, shards: u32) -> Self {
        let base = GUILD_BASE_MS - GUILD_BASE_MS % u64::from(shards);
        Self {
            guilds,
            shards,
            base,
        }
    }

    pub(crate) fn guilds(&self) -> u32 {
        self.guilds
    }

    pub(crate) fn shards(&self) -> u32 {
        self.shards
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

    /// Discord's rule: `(guild_id >> 22) % shards`.
    pub(crate) fn shard_of(&self, index: u32) -> u32 {
        u32::try_from((self.guild_id(index) >> 22) % u64::from(self.shards))
            .expect("shard count is a u32")
    }

    /// Guild indexes on `shard`, in order.
    pub(crate) fn guilds_of_shard(&self, shard: u32) -> impl Iterator<Item = u32> + use<> {
        (shard..self.guilds).step_by(self.shards as usize)
    }
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
