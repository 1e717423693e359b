//! `[consumer]`: the consumer group and how its partitions are handled.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use shardmesh_proto::{InvalidConfig, check_range};

/// `[consumer]`: which group this node reads for, how often it checkpoints, and how
/// handler failures are retried.
///
/// The partition count is not here: the cluster agrees on it in the store
/// ([`ClusterSpec`](shardmesh_store::ClusterSpec)) and the broker
/// [`Topology`](shardmesh_broker::Topology) carries it.
///
/// ```
/// use shardmesh_consumer::ConsumerConfig;
///
/// let config: ConsumerConfig = toml::from_str("group = \"bots\"\ncheckpoint_every_events = 1")?;
/// config.validate()?;
/// assert_eq!(config.handler_attempts, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Consumer group: the nodes of one group share the partitions, and every group
    /// sees every event. Part of lease keys (`partition/<group>/<p>`) and of the
    /// dead-letter stream's name (`shardmesh.<cluster>.dlq.<group>`). Default
    /// `default`; 1..=100 ASCII letters, digits, `-` or `_`.
    pub group: String,
    /// Write a checkpoint after this many handled events, besides the one every lease
    /// renewal saves. A consumer killed mid-stream repeats at most this many events
    /// (and the one in flight); 1 checkpoints every event. Default 1,000;
    /// 1..=1,000,000.
    pub checkpoint_every_events: u64,
    /// Write a checkpoint this long after the first event not yet saved, in ms, even if
    /// fewer than `checkpoint_every_events` came. Default 1,000; 10..=600,000.
    pub checkpoint_every_ms: u64,
    /// How many times the handler is called for one event before it is dead-lettered,
    /// the first call included. A panic counts as a failed attempt. Default 3;
    /// 1..=100.
    pub handler_attempts: u32,
    /// Wait before the first retry of a failed handler call, in ms; doubles per retry.
    /// Default 100; 1..=`handler_backoff_max_ms`.
    pub handler_backoff_min_ms: u64,
    /// Longest wait between retries of a failed handler call, in ms. Default 5,000;
    /// `handler_backoff_min_ms`..=600,000.
    pub handler_backoff_max_ms: u64,
    /// Where `POST /commands` (gateway commands from bots in any language) listens,
    /// e.g. `127.0.0.1:8081`. Default empty: not served. An address other than loopback
    /// needs `commands_token`.
    pub commands_bind: String,
    /// A bearer token `POST /commands` requires (`Authorization: Bearer …`); its
    /// `Debug` output is `<redacted>`. Default empty: none required.
    pub commands_token: ApiToken,
}

/// A bearer token for the command API; its `Debug` output is `<redacted>` so it never
/// reaches logs.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// Whether no token is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `offered` is the token, compared in constant time.
    pub fn matches(&self, offered: &str) -> bool {
        let (ours, theirs) = (self.0.as_bytes(), offered.as_bytes());
        ours.len() == theirs.len()
            && ours
                .iter()
                .zip(theirs)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            group: "default".into(),
            checkpoint_every_events: 1_000,
            checkpoint_every_ms: 1_000,
            handler_attempts: 3,
            handler_backoff_min_ms: 100,
            handler_backoff_max_ms: 5_000,
            commands_bind: String::new(),
            commands_token: ApiToken::default(),
        }
    }
}

impl ConsumerConfig {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first offending key (`consumer.…`).
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        check_group(&self.group)?;
        check_range(
            "consumer.checkpoint_every_events",
            self.checkpoint_every_events,
            1,
            1_000_000,
        )?;
        check_range(
            "consumer.checkpoint_every_ms",
            self.checkpoint_every_ms,
            10,
            600_000,
        )?;
        check_range(
            "consumer.handler_attempts",
            u64::from(self.handler_attempts),
            1,
            100,
        )?;
        check_range(
            "consumer.handler_backoff_max_ms",
            self.handler_backoff_max_ms,
            1,
            600_000,
        )?;
        check_range(
            "consumer.handler_backoff_min_ms",
            self.handler_backoff_min_ms,
            1,
            self.handler_backoff_max_ms,
        )?;
        self.check_commands_bind()
    }

    /// A command API reachable from other hosts must require a token.
    fn check_commands_bind(&self) -> Result<(), InvalidConfig> {
        if self.commands_bind.is_empty() {
            return Ok(());
        }
        let address: std::net::SocketAddr = self.commands_bind.parse().map_err(|_| {
            InvalidConfig::new(
                "consumer.commands_bind",
                format!("`{}` is not an ip:port address", self.commands_bind),
            )
        })?;
        if !address.ip().is_loopback() && self.commands_token.is_empty() {
            return Err(InvalidConfig::new(
                "consumer.commands_bind",
                format!("`{address}` is reachable from other hosts: set consumer.commands_token"),
            ));
        }
        Ok(())
    }

    pub(crate) fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_every_ms)
    }

    /// The wait before retry number `retry` (1 for the first retry).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let doubled = self
            .handler_backoff_min_ms
            .saturating_mul(1_u64 << retry.saturating_sub(1).min(32));
        Duration::from_millis(doubled.min(self.handler_backoff_max_ms))
    }
}

fn check_group(group: &str) -> Result<(), InvalidConfig> {
    if group.is_empty() || group.len() > 100 {
        return Err(InvalidConfig::new(
            "consumer.group",
            format!("{group:?} must be 1 to 100 bytes long"),
        ));
    }
    if let Some(bad) = group
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(InvalidConfig::new(
            "consumer.group",
            format!("{group:?} holds {bad:?}: only ASCII letters, digits, `-` and `_` are allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ConsumerConfig::default().validate().unwrap();
    }

    #[test]
    fn validate_names_the_bad_key() {
        type Breaker = fn(&mut ConsumerConfig);
        let cases: [(&str, Breaker); 8] = [
            ("consumer.group", |c| c.group = String::new()),
            ("consumer.group", |c| c.group = "a/b".into()),
            ("consumer.checkpoint_every_events", |c| {
                c.checkpoint_every_events = 0;
            }),
            ("consumer.checkpoint_every_ms", |c| {
                c.checkpoint_every_ms = 1;
            }),
            ("consumer.handler_attempts", |c| c.handler_attempts = 0),
            ("consumer.handler_backoff_min_ms", |c| {
                c.handler_backoff_min_ms = 0;
            }),
            ("consumer.handler_backoff_min_ms", |c| {
                c.handler_backoff_min_ms = 6_000;
            }),
            ("consumer.handler_backoff_max_ms", |c| {
                c.handler_backoff_max_ms = 700_000;
            }),
        ];
        for (key, break_it) in cases {
            let mut config = ConsumerConfig::default();
            break_it(&mut config);
            match config.validate() {
                Err(InvalidConfig { key: found, .. }) => assert_eq!(found, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_empty_table_is_the_default() {
        let config: ConsumerConfig = toml::from_str("").unwrap();
        assert_eq!(config, ConsumerConfig::default());
        assert!(toml::from_str::<ConsumerConfig>("groups = \"x\"").is_err());
    }

    #[test]
    fn a_command_api_off_loopback_needs_a_token() {
        let with = |bind: &str, token: &str| ConsumerConfig {
            commands_bind: bind.into(),
            commands_token: ApiToken::new(token),
            ..ConsumerConfig::default()
        };
        assert!(with("127.0.0.1:8081", "").validate().is_ok());
        assert!(with("[::1]:8081", "").validate().is_ok());
        assert!(with("0.0.0.0:8081", "secret").validate().is_ok());
        let open = with("0.0.0.0:8081", "").validate().unwrap_err();
        assert_eq!(open.key, "consumer.commands_bind");
        assert!(open.problem.contains("commands_token"), "{open}");
        let garbage = with("localhost", "").validate().unwrap_err();
        assert_eq!(garbage.key, "consumer.commands_bind");
        assert_eq!(format!("{:?}", ApiToken::new("secret")), "<redacted>");
        assert!(ApiToken::new("secret").matches("secret"));
        assert!(!ApiToken::new("secret").matches("secreT"));
        assert!(!ApiToken::new("secret").matches("secret2"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = ConsumerConfig {
            handler_backoff_min_ms: 100,
            handler_backoff_max_ms: 350,
            ..ConsumerConfig::default()
        };
        let waits: Vec<u64> = (1..=4)
            .map(|retry| u64::try_from(config.backoff(retry).as_millis()).unwrap())
            .collect();
        assert_eq!(waits, [100, 200, 350, 350]);
        assert_eq!(config.backoff(200).as_millis(), 350);
    }
}
