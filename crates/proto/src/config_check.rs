//! The one shape every part's configuration check reports in, so a node's start-up can
//! name the offending key and where its value came from, whichever part refused it.

/// A configuration value that cannot be used.
///
/// `key` is the full dotted key as it appears in the config file (`lease.duration_ms`,
/// `gateway.token`), so the settings loader can add the file or environment variable
/// that set it without translating anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct InvalidConfig {
    /// Full dotted key, e.g. `store.sqlite.busy_timeout_ms`.
    pub key: &'static str,
    /// What is wrong and what is allowed, lowercase.
    pub problem: String,
}

impl InvalidConfig {
    /// A refusal of `key` because of `problem`.
    pub fn new(key: &'static str, problem: impl Into<String>) -> Self {
        Self {
            key,
            problem: problem.into(),
        }
    }
}

/// Checks that `value` lies in `low..=high`, the range a field's doc comment gives.
///
/// # Errors
///
/// [`InvalidConfig`] for `key`, saying the value and the range.
pub fn check_range(
    key: &'static str,
    value: impl Into<u64>,
    low: u64,
    high: u64,
) -> Result<(), InvalidConfig> {
    let value = value.into();
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(InvalidConfig::new(
            key,
            format!("{value} is outside {low}..={high}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_inclusive_and_the_refusal_names_key_and_bounds() {
        assert_eq!(
            check_range("lease.renew_interval_ms", 100_u64, 100, 60_000),
            Ok(())
        );
        assert_eq!(
            check_range("lease.renew_interval_ms", 60_000_u64, 100, 60_000),
            Ok(())
        );
        let refused = check_range("node.capacity", 0_u32, 1, 1000).unwrap_err();
        assert_eq!(refused.to_string(), "node.capacity: 0 is outside 1..=1000");
    }
}
