//! What a simulator instance looks like: plain data, validated before anything starts.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// Intents Discord treats as privileged: `GUILD_MEMBERS`, `GUILD_PRESENCES`,
/// `MESSAGE_CONTENT`.
pub const PRIVILEGED_INTENTS: u64 = (1 << 1) | (1 << 8) | (1 << 15);

/// Every intent bit Discord defines; a bit outside this mask is an invalid intent (4013).
pub const VALID_INTENTS: u64 = 0x1_FFFF | (1 << 20) | (1 << 21) | (1 << 24) | (1 << 25);

/// A bot token; its `Debug` output is `<redacted>` so it never reaches logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token as the bot sends it, without a `Bot ` prefix.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` (from IDENTIFY, RESUME or an `Authorization` header) is this
    /// token, with or without the `Bot ` prefix Discord accepts.
    pub fn matches(&self, presented: &str) -> bool {
        presented.strip_prefix("Bot ").unwrap_or(presented) == self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything that shapes one simulated Discord.
///
/// Building it needs no runtime; [`SimConfig::validate`] names the first bad key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// The bot token clients must present. Default `sim-token`.
    pub token: Token,
    /// The bot's shard count: what `GET /gateway/bot` recommends until
    /// `POST /_sim/recommended_shards` changes it, and the count an IDENTIFY without
    /// `shard` must match. Default 1; 1..=65,535. Sessions may identify with any other
    /// count that gives every shard at most
    /// [`max_guilds_per_shard`](Self::max_guilds_per_shard) guilds (re-sharding).
    pub shards: u32,
    /// Guilds the bot is in, spread evenly over shards by `(guild_id >> 22) % count`
    /// for every count. Default 10; at most `max_guilds_per_shard` per shard.
    pub guilds: u32,
    /// Discord's sharding rule: an IDENTIFY whose shard count leaves more guilds than
    /// this on a shard is closed with 4011 "sharding required". Default 2,500
    /// (Discord's); 1..=2,500, lower to test 4011 with a small world.
    pub max_guilds_per_shard: u32,
    /// Synthetic dispatches per second across all guilds. Default 0 (idle); 0..=10,000,000.
    pub rate: f64,
    /// Identify buckets (`shard_id % max_concurrency`), one IDENTIFY per bucket per
    /// [`identify_interval_ms`](Self::identify_interval_ms). Default 1; 1..=65,535.
    pub max_concurrency: u16,
    /// Seed of the traffic generator: the same seed gives the same event sequence.
    /// Default 0.
    pub seed: u64,
    /// Heartbeat interval sent in HELLO, in milliseconds. Default 41,250 (Discord's);
    /// 100..=600,000. A connection silent for 1.5 intervals is closed with 4009.
    pub heartbeat_interval_ms: u64,
    /// How long a session stays resumable after its connection ends without a
    /// 1000/1001 close, in milliseconds. Default 180,000; at least 1.
    pub resume_window_ms: u64,
    /// Daily session-start budget (`session_start_limit.total`). Default 1,000. Each
    /// granted IDENTIFY spends one; once none is left an IDENTIFY is closed with 4004
    /// (Discord resets the token of a bot that overspends).
    pub session_start_total: u32,
    /// `session_start_limit.reset_after` reported by `GET /gateway/bot`, in
    /// milliseconds. Default 86,400,000. The simulator never refills the budget.
    pub session_start_reset_after_ms: u64,
    /// Minimum time between two IDENTIFYs of one bucket, in milliseconds. Default 5,000
    /// (Discord's); 0 disables pacing. An IDENTIFY too soon gets op 9 `false` and is
    /// counted as a pacing violation.
    pub identify_interval_ms: u64,
    /// Tolerance on [`identify_interval_ms`](Self::identify_interval_ms) for clock and
    /// network jitter between a queue's grant and the IDENTIFY reaching the simulator,
    /// in milliseconds. Default 100; below the interval.
    pub identify_slack_ms: u64,
    /// Privileged intents the bot may use; asking for another is closed with 4014.
    /// Default [`PRIVILEGED_INTENTS`] (all of them).
    pub privileged_intents: u64,
    /// Dispatches each session keeps for RESUME replay (and as its outbound queue).
    /// A client further behind than this cannot resume. Default 4,096; at least
    /// guilds per shard + 2 so the READY burst fits.
    pub replay_capacity: usize,
    /// Ground-truth records kept; older ones are dropped (and counted). Default
    /// 1,000,000 (about 64 MB); 0 keeps none, for benchmarks. The log of gateway
    /// commands received keeps as many, separately.
    pub truth_capacity: usize,
    /// REST requests per second before the global 429. Default 50; at least 1.
    pub rest_global_limit: u32,
    /// Members of every guild, the bot and the guild's owner included, as op 8
    /// REQUEST GUILD MEMBERS lists them. Default 2 (bot and owner); 2..=1,000,000.
    pub guild_members: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            token: Token::new("sim-token"),
            shards: 1,
            guilds: 10,
            max_guilds_per_shard: 2_500,
            rate: 0.0,
            max_concurrency: 1,
            seed: 0,
            heartbeat_interval_ms: 41_250,
            resume_window_ms: 180_000,
            session_start_total: 1_000,
            session_start_reset_after_ms: 86_400_000,
            identify_interval_ms: 5_000,
            identify_slack_ms: 100,
            privileged_intents: PRIVILEGED_INTENTS,
            replay_capacity: 4_096,
            truth_capacity: 1_000_000,
            rest_global_limit: 50,
            guild_members: 2,
        }
    }
}

impl SimConfig {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] naming the first key out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |key: &'static str, reason: &'static str| Err(Error::invalid_config(key, reason));
        if self.token.expose().is_empty() {
            return bad("token", "must not be empty");
        }
        if self.shards == 0 || self.shards > 65_535 {
            return bad("shards", "must be 1..=65535");
        }
        if !(1..=2_500).contains(&self.max_guilds_per_shard) {
            return bad("max_guilds_per_shard", "must be 1..=2500");
        }
        if u64::from(self.guilds) > u64::from(self.shards) * u64::from(self.max_guilds_per_shard) {
            return bad("guilds", "more than max_guilds_per_shard per shard");
        }
        if !(0.0..=10_000_000.0).contains(&self.rate) {
            return bad("rate", "must be 0..=10000000");
        }
        if self.max_concurrency == 0 {
            return bad("max_concurrency", "must be at least 1");
        }
        if !(100..=600_000).contains(&self.heartbeat_interval_ms) {
            return bad("heartbeat_interval_ms", "must be 100..=600000");
        }
        if self.resume_window_ms == 0 {
            return bad("resume_window_ms", "must be at least 1");
        }
        if self.identify_slack_ms >= self.identify_interval_ms && self.identify_interval_ms > 0 {
            return bad("identify_slack_ms", "must be below identify_interval_ms");
        }
        if self.privileged_intents & !PRIVILEGED_INTENTS != 0 {
            return bad("privileged_intents", "has non-privileged bits");
        }
        let per_shard = self.guilds.div_ceil(self.shards) as usize;
        if self.replay_capacity < per_shard + 2 {
            return bad(
                "replay_capacity",
                "must hold the READY burst (guilds per shard + 2)",
            );
        }
        if self.rest_global_limit == 0 {
            return bad("rest_global_limit", "must be at least 1");
        }
        if !(2..=crate::members::MAX_MEMBERS).contains(&self.guild_members) {
            return bad("guild_members", "must be 2..=1000000");
        }
        Ok(())
    }

    /// The fewest shards Discord's rule allows: every shard at most
    /// [`max_guilds_per_shard`](Self::max_guilds_per_shard) guilds (at least 1).
    pub fn min_shards(&self) -> u32 {
        self.guilds
            .div_ceil(self.max_guilds_per_shard.max(1))
            .max(1)
    }

    /// [`heartbeat_interval_ms`](Self::heartbeat_interval_ms) as a duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// [`resume_window_ms`](Self::resume_window_ms) as a duration.
    pub fn resume_window(&self) -> Duration {
        Duration::from_millis(self.resume_window_ms)
    }
}

impl ErrorKind {
    #[cfg(test)]
    fn key(&self) -> Option<&'static str> {
        match self {
            ErrorKind::InvalidConfig { key, .. } => Some(key),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let token = Token::new("very-secret");
        assert_eq!(format!("{token:?}"), "<redacted>");
        assert!(!format!("{:?}", SimConfig::default()).contains("sim-token"));
    }

    #[test]
    fn token_matches_with_or_without_bot_prefix() {
        let token = Token::new("abc");
        assert!(token.matches("abc"));
        assert!(token.matches("Bot abc"));
        assert!(!token.matches("Bot abd"));
        assert!(!token.matches("Bearer abc"));
    }

    #[test]
    fn default_is_valid() {
        SimConfig::default().validate().unwrap();
    }

    #[test]
    fn min_shards_follows_the_guilds_per_shard_limit() {
        let config = |guilds, max_guilds_per_shard| SimConfig {
            guilds,
            max_guilds_per_shard,
            ..SimConfig::default()
        };
        assert_eq!(config(0, 2_500).min_shards(), 1);
        assert_eq!(config(2_500, 2_500).min_shards(), 1);
        assert_eq!(config(2_501, 2_500).min_shards(), 2);
        assert_eq!(config(40, 5).min_shards(), 8);
    }

    #[test]
    fn validate_names_the_bad_key() {
        type Breaker = fn(&mut SimConfig);
        let cases: [(&str, Breaker); 7] = [
            ("shards", |c| c.shards = 0),
            ("guilds", |c| c.guilds = 2_501),
            ("guilds", |c| c.max_guilds_per_shard = 5),
            ("max_guilds_per_shard", |c| c.max_guilds_per_shard = 0),
            ("max_concurrency", |c| c.max_concurrency = 0),
            ("replay_capacity", |c| c.replay_capacity = 3),
            ("privileged_intents", |c| c.privileged_intents = 1),
        ];
        for (key, break_it) in cases {
            let mut config = SimConfig::default();
            break_it(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.kind().key(), Some(key), "{error}");
        }
    }
}
