//! `[gateway]`: what a gateway node needs besides the cluster spec.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use shardmesh_proto::{InvalidConfig, check_range};

use crate::Compression;

/// The bot token; its `Debug` output is `<redacted>` so it never reaches logs.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BotToken(String);

impl BotToken {
    /// Wraps a token (with or without the `Bot ` prefix).
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the one place that sends it to Discord.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[gateway]`: how this node's shards connect to Discord and publish what they receive.
///
/// Shard count, partitions and `max_concurrency` are not here: the cluster agrees on
/// them in the store ([`ClusterSpec`](shardmesh_store::ClusterSpec)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Bot token. Default empty, which [`GatewayConfig::validate`] refuses.
    pub token: BotToken,
    /// Gateway intents as Discord's bit set. Default 513 (`GUILDS | GUILD_MESSAGES`).
    /// Bits Discord does not know are sent as given: Discord closes with 4013, and the
    /// shard stops.
    pub intents: u64,
    /// Transport compression Discord applies to what the shards receive:
    /// `"zstd-stream"`, `"zlib-stream"` or `"none"`. Default: what this build speaks
    /// (zstd-stream unless built otherwise, see [`Compression`]); another value is
    /// refused, since twilight-gateway fixes it at build time.
    pub compression: Compression,
    /// Gateway URL to connect to instead of Discord's, e.g. the simulator's
    /// `ws://127.0.0.1:PORT` (no trailing slash). Default none (Discord).
    pub gateway_url: Option<String>,
    /// Discord REST API to ask `GET /gateway/bot` instead of Discord's, e.g. the
    /// simulator's `http://127.0.0.1:PORT` (plain HTTP) or an `https://` proxy. Default
    /// none (`https://discord.com`).
    pub api_url: Option<String>,
    /// Events received but not yet handed to the publisher, across all shards of the
    /// node; when it is full shards stop reading (back-pressure to Discord).
    /// Default 1024; 1..=1,000,000.
    pub publish_queue: usize,
    /// Most events one stream message carries. The publisher batches only what is
    /// already queued for one shard session, never waiting for more, so batches grow
    /// under load and stay at one event when traffic is light. Default 64; 1..=10,000
    /// (1 turns batching off).
    pub batch_max_events: usize,
    /// Most payload bytes one stream message carries; an event larger than this goes
    /// alone. Default 262,144 (256 KiB); 1,024..=16,777,216.
    pub batch_max_bytes: usize,
    /// How long a hand-over waits for Discord's close echo after closing with RESUME,
    /// in ms. Default 2000; 100..=60000. Keep it well below the lease's fence time.
    pub close_timeout_ms: u64,
    /// How long a hand-over waits for broker confirms of what the shard received, in
    /// ms; after that it saves the last confirmed seq and Discord replays the rest.
    /// Default 5000; 100..=60000.
    pub confirm_timeout_ms: u64,
    /// How long the publisher may take to confirm what is queued when the node stops,
    /// in ms. Default 5000; 100..=60000.
    pub drain_timeout_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            token: BotToken::default(),
            intents: 513,
            compression: Compression::BUILT,
            gateway_url: None,
            api_url: None,
            publish_queue: 1_024,
            batch_max_events: 64,
            batch_max_bytes: 256 * 1_024,
            close_timeout_ms: 2_000,
            confirm_timeout_ms: 5_000,
            drain_timeout_ms: 5_000,
        }
    }
}

impl GatewayConfig {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first offending key (`gateway.…`).
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.token.expose().trim().is_empty() {
            return Err(InvalidConfig::new(
                "gateway.token",
                "the bot token is required; set it in [gateway] or in SHARDMESH__GATEWAY__TOKEN",
            ));
        }
        if let Some(url) = &self.gateway_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err(InvalidConfig::new(
                "gateway.gateway_url",
                format!("{url:?} must start with ws:// or wss://"),
            ));
        }
        if let Some(url) = &self.gateway_url
            && url.ends_with('/')
        {
            return Err(InvalidConfig::new(
                "gateway.gateway_url",
                format!("{url:?} must not end with `/` (the shard appends `/?v=10`)"),
            ));
        }
        if let Some(url) = &self.api_url {
            api_address(url)?;
        }
        if self.compression != Compression::BUILT {
            return Err(InvalidConfig::new(
                "gateway.compression",
                format!(
                    "{:?}: this build speaks {:?} (twilight-gateway fixes it at build time); \
                     build shardmesh with {} for it",
                    self.compression.to_string(),
                    Compression::BUILT.to_string(),
                    self.compression.build_flags()
                ),
            ));
        }
        check_range(
            "gateway.publish_queue",
            self.publish_queue as u64,
            1,
            1_000_000,
        )?;
        check_range(
            "gateway.batch_max_events",
            self.batch_max_events as u64,
            1,
            10_000,
        )?;
        check_range(
            "gateway.batch_max_bytes",
            self.batch_max_bytes as u64,
            1_024,
            16 * 1_024 * 1_024,
        )?;
        check_range(
            "gateway.close_timeout_ms",
            self.close_timeout_ms,
            100,
            60_000,
        )?;
        check_range(
            "gateway.confirm_timeout_ms",
            self.confirm_timeout_ms,
            100,
            60_000,
        )?;
        check_range(
            "gateway.drain_timeout_ms",
            self.drain_timeout_ms,
            100,
            60_000,
        )
    }

    /// Where REST requests go instead of Discord: `(host:port, plain http)`, or none
    /// for Discord itself. Valid once [`GatewayConfig::validate`] passed.
    pub fn api_proxy(&self) -> Option<(String, bool)> {
        self.api_url
            .as_deref()
            .and_then(|url| api_address(url).ok())
    }

    pub(crate) fn close_timeout(&self) -> Duration {
        Duration::from_millis(self.close_timeout_ms)
    }

    pub(crate) fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }
}

/// `http://host:port` → `("host:port", true)`; `https://host[:port]` → `(.., false)`.
fn api_address(url: &str) -> Result<(String, bool), InvalidConfig> {
    let (rest, plain) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, true)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (rest, false)
    } else {
        return Err(InvalidConfig::new(
            "gateway.api_url",
            format!("{url:?} must start with http:// or https://"),
        ));
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(InvalidConfig::new(
            "gateway.api_url",
            format!("{url:?} must be a scheme and host[:port] only, e.g. http://127.0.0.1:8080"),
        ));
    }
    Ok((host.to_owned(), plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> GatewayConfig {
        GatewayConfig {
            token: BotToken::new("very-secret"),
            ..GatewayConfig::default()
        }
    }

    #[test]
    fn token_never_reaches_debug_output() {
        assert_eq!(format!("{:?}", BotToken::new("very-secret")), "<redacted>");
        assert!(!format!("{:?}", valid()).contains("very-secret"));
    }

    #[test]
    fn defaults_with_a_token_are_valid() {
        valid().validate().unwrap();
        assert!(matches!(
            GatewayConfig::default().validate(),
            Err(InvalidConfig {
                key: "gateway.token",
                ..
            })
        ));
    }

    #[test]
    fn validate_names_the_bad_key() {
        type Breaker = fn(&mut GatewayConfig);
        let cases: [(&str, Breaker); 9] = [
            ("gateway.api_url", |c| c.api_url = Some("ws://x".into())),
            ("gateway.api_url", |c| {
                c.api_url = Some("http://x/api/v10".into());
            }),
            ("gateway.gateway_url", |c| {
                c.gateway_url = Some("http://x".into());
            }),
            ("gateway.gateway_url", |c| {
                c.gateway_url = Some("ws://x/".into());
            }),
            ("gateway.publish_queue", |c| c.publish_queue = 0),
            ("gateway.batch_max_events", |c| c.batch_max_events = 0),
            ("gateway.batch_max_bytes", |c| c.batch_max_bytes = 100),
            ("gateway.close_timeout_ms", |c| c.close_timeout_ms = 10),
            ("gateway.confirm_timeout_ms", |c| {
                c.confirm_timeout_ms = 600_000;
            }),
        ];
        for (key, break_it) in cases {
            let mut config = valid();
            break_it(&mut config);
            match config.validate() {
                Err(InvalidConfig { key: found, .. }) => assert_eq!(found, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_compression_this_build_does_not_speak_is_refused_with_the_build_to_use() {
        let mut config = valid();
        config.compression = Compression::None;
        let refusal = config.validate().unwrap_err();
        assert_eq!(refusal.key, "gateway.compression");
        assert_eq!(
            refusal.problem,
            "\"none\": this build speaks \"zstd-stream\" (twilight-gateway fixes it at build \
             time); build shardmesh with `--no-default-features` for it"
        );
        let unknown = serde_json::from_str::<GatewayConfig>(r#"{"compression":"gzip"}"#);
        assert!(unknown.unwrap_err().to_string().contains("zstd-stream"));
    }

    #[test]
    fn api_url_becomes_a_proxy_address() {
        let mut config = valid();
        assert_eq!(config.api_proxy(), None);
        config.api_url = Some("http://127.0.0.1:8080/".into());
        assert_eq!(config.api_proxy(), Some(("127.0.0.1:8080".into(), true)));
        config.api_url = Some("https://rest.example".into());
        assert_eq!(config.api_proxy(), Some(("rest.example".into(), false)));
    }

    #[test]
    fn an_empty_table_is_the_default() {
        let config: GatewayConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, GatewayConfig::default());
    }
}
