//! Names no other test, benchmark or run uses, so tests run side by side on one broker
//! and one machine and repeat cleanly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `t-<prefix>-<pid>-<nanos>-<counter>`: a valid cluster name (`a-z 0-9 -`, under the
/// broker's 100 bytes for a prefix of up to 60) that is unique across processes and runs.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    format!(
        "t-{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_and_stay_short() {
        let (first, second) = (unique_name("drain"), unique_name("drain"));
        assert_ne!(first, second);
        assert!(first.len() <= 60, "{first}");
        assert!(
            first
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
