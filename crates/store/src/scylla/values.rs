//! Conversions between the store's types and CQL values: times, integers, node roles,
//! time-based ids and day partitions.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scylla::value::{CqlDate, CqlTimestamp, CqlTimeuuid};
use shardmesh_proto::{NodeRole, NodeState};
use uuid::Uuid;
use uuid::timestamp::Timestamp;
use uuid::timestamp::context::ContextV1;

use super::errors::invalid_data;
use crate::Error;

const DAY_MS: i64 = 24 * 60 * 60 * 1_000;

/// `time` as a CQL timestamp (milliseconds since 1970, negative before), truncated.
pub(super) fn timestamp(time: SystemTime) -> CqlTimestamp {
    let millis = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    };
    CqlTimestamp(millis)
}

/// `time` as a CQL timestamp rounded up to the next millisecond, for stamps that must not
/// appear earlier than the moment they record (an identify grant's time).
pub(super) fn timestamp_ceil(time: SystemTime) -> CqlTimestamp {
    let floor = timestamp(time);
    if system_time(floor) < time {
        CqlTimestamp(floor.0.saturating_add(1))
    } else {
        floor
    }
}

/// The time a CQL timestamp stands for.
pub(super) fn system_time(timestamp: CqlTimestamp) -> SystemTime {
    let magnitude = Duration::from_millis(timestamp.0.unsigned_abs());
    if timestamp.0 >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// A CQL timestamp `duration` after `from`.
pub(super) fn add(from: CqlTimestamp, duration: Duration) -> CqlTimestamp {
    let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    CqlTimestamp(from.0.saturating_add(millis))
}

/// A count kept as CQL `bigint`; every count shardmesh stores fits.
pub(super) fn bigint(value: u64, what: &str) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| invalid_data(what, format!("{value} does not fit a bigint")))
}

/// A stored `bigint` read back as an unsigned count.
pub(super) fn unsigned(value: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| invalid_data(what, format!("negative value {value}")))
}

/// A stored `bigint` read back as a `u32` (shard, partition, budget counts).
pub(super) fn unsigned32(value: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| invalid_data(what, format!("{value} is not a u32")))
}

/// A column that every row of its table has, read back from a row that lacks it.
pub(super) fn required<T>(value: Option<T>, what: &str, column: &str) -> Result<T, Error> {
    value.ok_or_else(|| invalid_data(what, format!("{column} is null")))
}

/// The registry's text for a role; what a user sees in cqlsh.
pub(super) fn role_text(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Gateway => "gateway",
        NodeRole::Consumer => "consumer",
    }
}

pub(super) fn role_from_text(text: &str) -> Result<NodeRole, Error> {
    match text {
        "gateway" => Ok(NodeRole::Gateway),
        "consumer" => Ok(NodeRole::Consumer),
        other => Err(invalid_data("nodes", format!("unknown role {other:?}"))),
    }
}

/// The registry's text for a life-cycle state.
pub(super) fn state_text(state: NodeState) -> &'static str {
    state.as_str()
}

pub(super) fn state_from_text(text: &str) -> Result<NodeState, Error> {
    match text {
        "starting" => Ok(NodeState::Starting),
        "ready" => Ok(NodeState::Ready),
        "draining" => Ok(NodeState::Draining),
        "leaving" => Ok(NodeState::Leaving),
        other => Err(invalid_data("nodes", format!("unknown state {other:?}"))),
    }
}

/// The UTC day `time` falls on, as a CQL `date` (days since 1970 offset by 2^31).
pub(super) fn day(time: SystemTime) -> CqlDate {
    let days = timestamp(time).0.div_euclid(DAY_MS);
    let centered = days + (1_i64 << 31);
    // Any time a SystemTime can hold is within the ±2^31 days a CQL date covers.
    CqlDate(u32::try_from(centered).unwrap_or(if days < 0 { 0 } else { u32::MAX }))
}

/// A version 1 (time-based) UUID for `time`, unique across processes: the node bits are
/// random per process and a shared counter separates ids minted in the same 100 ns.
/// CQL orders `timeuuid` by the time it carries, which is what the action log sorts by.
pub(super) fn timeuuid(time: SystemTime) -> CqlTimeuuid {
    static CONTEXT: OnceLock<(ContextV1, [u8; 6])> = OnceLock::new();
    let (context, node) = CONTEXT.get_or_init(|| {
        let random = Uuid::now_v7().into_bytes();
        let mut node = [0; 6];
        node.copy_from_slice(&random[10..]);
        // RFC 9562: a random node id sets the multicast bit so it never equals a MAC.
        node[0] |= 0x01;
        (ContextV1::new_random(), node)
    });
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let stamp = Timestamp::from_unix(context, since.as_secs(), since.subsec_nanos());
    CqlTimeuuid::from(Uuid::new_v1(stamp, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_to_the_millisecond() {
        let time = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(timestamp(time), CqlTimestamp(1_700_000_000_123));
        assert_eq!(
            system_time(timestamp(time)),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        assert_eq!(timestamp_ceil(time), CqlTimestamp(1_700_000_000_124));
        let exact = UNIX_EPOCH + Duration::from_millis(5);
        assert_eq!(timestamp_ceil(exact), CqlTimestamp(5));
        let before = UNIX_EPOCH - Duration::from_millis(1_500);
        assert_eq!(system_time(timestamp(before)), before);
    }

    #[test]
    fn days_are_utc_and_centered() {
        assert_eq!(day(UNIX_EPOCH), CqlDate(1 << 31));
        let late = UNIX_EPOCH + Duration::from_millis(DAY_MS as u64 - 1);
        assert_eq!(day(late), CqlDate(1 << 31));
        let next = UNIX_EPOCH + Duration::from_millis(DAY_MS as u64);
        assert_eq!(day(next), CqlDate((1 << 31) + 1));
        assert_eq!(
            day(UNIX_EPOCH - Duration::from_millis(1)),
            CqlDate((1 << 31) - 1)
        );
    }

    #[test]
    fn timeuuids_are_version_1_unique_and_carry_their_time() {
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (a, b) = (timeuuid(time), timeuuid(time));
        assert_ne!(a, b, "two ids for one instant must differ");
        let uuid = Uuid::from(a);
        assert_eq!(uuid.get_version_num(), 1);
        let (secs, nanos) = uuid.get_timestamp().expect("v1 carries a time").to_unix();
        assert_eq!((secs, nanos), (1_700_000_000, 0));
    }

    #[test]
    fn roles_and_states_round_trip_through_text() {
        for role in [NodeRole::Gateway, NodeRole::Consumer] {
            assert_eq!(role_from_text(role_text(role)).unwrap(), role);
        }
        for state in [
            NodeState::Starting,
            NodeState::Ready,
            NodeState::Draining,
            NodeState::Leaving,
        ] {
            assert_eq!(state_from_text(state_text(state)).unwrap(), state);
        }
        assert!(role_from_text("admin").is_err());
    }

    #[test]
    fn counts_outside_bigint_are_refused() {
        assert_eq!(bigint(7, "seq").unwrap(), 7);
        assert!(bigint(u64::MAX, "seq").is_err());
        assert!(unsigned(-1, "epoch").is_err());
        assert!(unsigned32(1 << 40, "total").is_err());
    }
}
