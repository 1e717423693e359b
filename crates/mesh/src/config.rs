//! Lease and membership timing (`[lease]` and `[membership]` in the config file).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shardmesh_proto::{InvalidConfig, check_range};

/// `[lease]`: timing of shard and partition leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// How long a lease lasts without renewal, in ms. Default 10000; at least 3 renew
    /// intervals, so two renewals can fail before a lease lapses.
    pub duration_ms: u64,
    /// How often a holder renews (and saves its state), in ms. Default 3000; 100..=60000.
    pub renew_interval_ms: u64,
    /// A holder stops acting this long before its lease could expire, in ms. Default
    /// 1000; above 0 and below `duration_ms - renew_interval_ms`.
    pub fence_margin_ms: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            duration_ms: 10_000,
            renew_interval_ms: 3_000,
            fence_margin_ms: 1_000,
        }
    }
}

impl LeaseConfig {
    /// How long a lease lasts without renewal.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }

    /// How often a holder renews.
    pub fn renew_interval(&self) -> Duration {
        Duration::from_millis(self.renew_interval_ms)
    }

    /// How long after sending a renewal the holder may still act: the lease minus the
    /// fence margin, so it stops before anyone else may acquire.
    pub fn valid_for(&self) -> Duration {
        Duration::from_millis(self.duration_ms.saturating_sub(self.fence_margin_ms))
    }

    /// Checks ranges and relations; the error names the key (`lease.…`).
    ///
    /// # Errors
    ///
    /// The first key out of range, with what is allowed.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        check_range(
            "lease.renew_interval_ms",
            self.renew_interval_ms,
            100,
            60_000,
        )?;
        if self.duration_ms < 3 * self.renew_interval_ms {
            return Err(InvalidConfig::new(
                "lease.duration_ms",
                format!(
                    "{} is shorter than 3 renew intervals (3 x lease.renew_interval_ms = {})",
                    self.duration_ms,
                    3 * self.renew_interval_ms
                ),
            ));
        }
        let ceiling = self.duration_ms - self.renew_interval_ms;
        if self.fence_margin_ms == 0 || self.fence_margin_ms >= ceiling {
            return Err(InvalidConfig::new(
                "lease.fence_margin_ms",
                format!(
                    "{} must be above 0 and below lease.duration_ms - lease.renew_interval_ms = {ceiling}",
                    self.fence_margin_ms
                ),
            ));
        }
        Ok(())
    }
}

/// `[membership]`: timing of announcements and assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MembershipConfig {
    /// How often a node announces itself, in ms. Default 1000; 50..=60000.
    pub announce_interval_ms: u64,
    /// A node unheard of this long is gone, in ms. Default 5000; at least 2 announce
    /// intervals.
    pub node_timeout_ms: u64,
    /// Membership changes are batched for this long before keys move, in ms, so rolling
    /// deploys don't flap. Default 2000; 0..=60000.
    pub settle_delay_ms: u64,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            announce_interval_ms: 1_000,
            node_timeout_ms: 5_000,
            settle_delay_ms: 2_000,
        }
    }
}

impl MembershipConfig {
    /// Checks ranges and relations; the error names the key (`membership.…`).
    ///
    /// # Errors
    ///
    /// The first key out of range, with what is allowed.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        check_range(
            "membership.announce_interval_ms",
            self.announce_interval_ms,
            50,
            60_000,
        )?;
        if self.node_timeout_ms < 2 * self.announce_interval_ms {
            return Err(InvalidConfig::new(
                "membership.node_timeout_ms",
                format!(
                    "{} is shorter than 2 announce intervals (2 x membership.announce_interval_ms = {})",
                    self.node_timeout_ms,
                    2 * self.announce_interval_ms
                ),
            ));
        }
        check_range(
            "membership.settle_delay_ms",
            self.settle_delay_ms,
            0,
            60_000,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fence_before_expiry() {
        let lease = LeaseConfig::default();
        lease.validate().unwrap();
        MembershipConfig::default().validate().unwrap();
        assert_eq!(lease.valid_for(), Duration::from_secs(9));
    }

    #[test]
    fn a_lease_shorter_than_three_renewals_is_refused() {
        let lease = LeaseConfig {
            duration_ms: 5_000,
            ..LeaseConfig::default()
        };
        let refused = lease.validate().unwrap_err();
        assert_eq!(refused.key, "lease.duration_ms");
        assert_eq!(
            refused.problem,
            "5000 is shorter than 3 renew intervals (3 x lease.renew_interval_ms = 9000)"
        );
    }
}
