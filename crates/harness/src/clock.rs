//! Wall-clock time as the wire formats carry it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
///
/// # Panics
///
/// If the clock is before 1970.
pub fn unix_ms() -> u64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970");
    u64::try_from(elapsed.as_millis()).expect("milliseconds fit u64")
}
