//! Broker settings: plain serde data, checked by [`BrokerConfig::validate`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lapin::uri::AMQPUri;
use serde::{Deserialize, Serialize};

use shardmesh_proto::{InvalidConfig, check_range};

/// How this node talks to RabbitMQ. Partition counts are not here: they belong to the
/// cluster and come from the store.
///
/// Every field has a default, so an empty `[broker]` section is valid.
///
/// ```
/// use shardmesh_broker::BrokerConfig;
///
/// let config: BrokerConfig = toml::from_str("confirm_window = 256")?;
/// config.validate()?;
/// assert_eq!(config.prefetch, 1000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// `amqp://user:password@host:port/vhost` (vhost URL-encoded, `%2f` for `/`).
    /// Default `amqp://guest:guest@127.0.0.1:5672/%2f`. `amqps://` connects over TLS
    /// (rustls, server verified against the webpki roots; the binary installs the ring
    /// crypto provider at start-up).
    pub url: BrokerUrl,
    /// How long one connection attempt (TCP + AMQP handshake) may take, in milliseconds.
    /// Default 5,000; range 100..=600,000.
    pub connect_timeout_ms: u64,
    /// First reconnect delay, in milliseconds; doubles per failed attempt, with jitter.
    /// Default 100; range 1..=`backoff_max_ms`.
    pub backoff_min_ms: u64,
    /// Longest reconnect delay, in milliseconds. Default 10,000; range
    /// `backoff_min_ms`..=600,000.
    pub backoff_max_ms: u64,
    /// Published messages awaiting a broker confirm before publishing waits
    /// (back-pressure). Default 1,024; range 1..=65,535.
    pub confirm_window: u32,
    /// Stream deliveries the broker may send ahead of acks. Default 1,000; range
    /// 2..=65,535.
    pub prefetch: u16,
    /// Stream retention by age (`x-max-age`): a number and one unit of `Y`, `M`, `D`,
    /// `h`, `m`, `s` (RabbitMQ's units: `M` is months, `m` minutes). Default `24h`.
    pub max_age: String,
    /// Stream retention by size per partition (`x-max-length-bytes`). Default
    /// 5,000,000,000 (5 GB); range 1..=`i64::MAX`.
    pub max_length_bytes: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            url: BrokerUrl::default(),
            connect_timeout_ms: 5_000,
            backoff_min_ms: 100,
            backoff_max_ms: 10_000,
            confirm_window: 1_024,
            prefetch: 1_000,
            max_age: "24h".into(),
            max_length_bytes: 5_000_000_000,
        }
    }
}

impl BrokerConfig {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first offending key (`broker.…`).
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let invalid = |key, problem: &str| Err(InvalidConfig::new(key, problem));
        self.url.check()?;
        check_range(
            "broker.connect_timeout_ms",
            self.connect_timeout_ms,
            100,
            600_000,
        )?;
        if self.backoff_min_ms == 0 || self.backoff_min_ms > self.backoff_max_ms {
            return invalid("broker.backoff_min_ms", "must be 1..=backoff_max_ms");
        }
        check_range("broker.backoff_max_ms", self.backoff_max_ms, 0, 600_000)?;
        check_range("broker.confirm_window", self.confirm_window, 1, 65_535)?;
        check_range("broker.prefetch", self.prefetch, 2, 65_535)?;
        if !valid_max_age(&self.max_age) {
            return invalid(
                "broker.max_age",
                "must be a positive number and one unit of Y M D h m s, e.g. 24h",
            );
        }
        // RabbitMQ reads the limit as a signed 64-bit integer.
        check_range(
            "broker.max_length_bytes",
            self.max_length_bytes,
            1,
            i64::MAX.unsigned_abs(),
        )
    }

    /// The backoff `backoff_min_ms`..`backoff_max_ms` every reconnect uses.
    pub fn backoff(&self) -> crate::Backoff {
        crate::Backoff::new(
            Duration::from_millis(self.backoff_min_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

fn valid_max_age(value: &str) -> bool {
    let Some(unit) = value.chars().last() else {
        return false;
    };
    let number = &value[..value.len() - unit.len_utf8()];
    matches!(unit, 'Y' | 'M' | 'D' | 'h' | 'm' | 's')
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && number.bytes().any(|b| b != b'0')
}

/// A broker URL. `Debug` and `Display` print it with the password replaced by
/// `<redacted>`; [`BrokerUrl::expose`] gives the real one to the connection code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// Wraps a URL; it is checked by [`BrokerConfig::validate`].
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for connecting. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn check(&self) -> Result<AMQPUri, InvalidConfig> {
        // The parser's message may quote the URL, password included: don't pass it on.
        AMQPUri::from_str(&self.0).map_err(|_| {
            InvalidConfig::new(
                "broker.url",
                "not a valid amqp://user:password@host:port/vhost URL",
            )
        })
    }

    fn redacted(&self) -> String {
        // scheme://user:password@host...: hide what lies between the first ':' after
        // the scheme and the last '@' of the authority.
        let Some(scheme_end) = self.0.find("://") else {
            return "<redacted>".into();
        };
        let rest = &self.0[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let Some(at) = authority.rfind('@') else {
            return self.0.clone();
        };
        let user = authority[..at].split(':').next().unwrap_or_default();
        format!(
            "{}{user}:<redacted>{}",
            &self.0[..scheme_end + 3],
            &rest[at..]
        )
    }
}

impl Default for BrokerUrl {
    fn default() -> Self {
        Self::new("amqp://guest:guest@127.0.0.1:5672/%2f")
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BrokerUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BrokerConfig::default().validate().unwrap();
    }

    #[test]
    fn password_never_shows_in_debug_or_display() {
        let url = BrokerUrl::new("amqp://bot:s3cr3t@rabbit.internal:5672/prod");
        let config = BrokerConfig {
            url: url.clone(),
            ..BrokerConfig::default()
        };
        for text in [format!("{url}"), format!("{url:?}"), format!("{config:?}")] {
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(
                text.contains("bot:<redacted>@rabbit.internal:5672/prod"),
                "{text}"
            );
        }
        assert_eq!(
            BrokerUrl::new("amqp://host/%2f").to_string(),
            "amqp://host/%2f"
        );
    }

    #[test]
    fn validate_names_the_key() {
        type Change = fn(&mut BrokerConfig);
        let cases: [(Change, &str); 6] = [
            (|c| c.url = BrokerUrl::new("http://x"), "broker.url"),
            (|c| c.confirm_window = 0, "broker.confirm_window"),
            (|c| c.prefetch = 1, "broker.prefetch"),
            (|c| c.max_age = "24x".into(), "broker.max_age"),
            (|c| c.backoff_min_ms = 20_000, "broker.backoff_min_ms"),
            (|c| c.max_length_bytes = 0, "broker.max_length_bytes"),
        ];
        for (change, key) in cases {
            let mut config = BrokerConfig::default();
            change(&mut config);
            match config.validate() {
                Err(InvalidConfig { key: found, .. }) => assert_eq!(found, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn max_age_uses_rabbitmq_units() {
        for ok in ["24h", "7D", "1Y", "30m", "90s", "2M"] {
            assert!(valid_max_age(ok), "{ok}");
        }
        for bad in ["", "h", "0h", "24", "24H", "1.5h", "-1h", "24hh"] {
            assert!(!valid_max_age(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error = toml::from_str::<BrokerConfig>("partitions = 16").unwrap_err();
        assert!(error.to_string().contains("partitions"), "{error}");
        let config: BrokerConfig = toml::from_str("max_age = \"7D\"").unwrap();
        assert_eq!(config.max_age, "7D");
    }
}
