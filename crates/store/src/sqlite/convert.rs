//! Conversions between the store's types and SQLite values, and SQLite errors into
//! [`Error`]s that name the file and the operation.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::ErrorCode;

use crate::{Error, ErrorKind};

/// Why a blocking store call failed, before the file and operation are named.
///
/// Keeping raw SQLite errors apart lets the closures use `?` on rusqlite calls while
/// [`describe`] adds the context once, in one place.
pub(super) enum Failure {
    /// SQLite refused the statement.
    Sql(rusqlite::Error),
    /// A store-level failure that already says what went wrong.
    Store(Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(error)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Store(error)
    }
}

impl Failure {
    /// The [`Error`] a caller sees: `sqlite file <path>: <op>: <reason>`.
    pub(super) fn into_error(self, path: &Path, op: &str) -> Error {
        match self {
            Self::Sql(error) => describe(path, op, &error),
            Self::Store(error) => error,
        }
    }
}

/// Classifies a SQLite error: locks held too long are retryable, a damaged file is not.
pub(super) fn describe(path: &Path, op: &str, error: &rusqlite::Error) -> Error {
    let kind = match error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => ErrorKind::Corrupt,
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
                ErrorKind::Unreachable
            }
            _ => ErrorKind::Backend,
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => ErrorKind::InvalidData,
        _ => ErrorKind::Backend,
    };
    let reason = match error.sqlite_error_code() {
        // SQLite's own text ("database is locked") hides that the busy timeout already
        // ran out; say so, since it tells the operator where to look.
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "still locked by another connection after the busy timeout".to_owned()
        }
        _ => error.to_string(),
    };
    Error::new(
        kind,
        format!("sqlite file {}: {op}: {reason}", path.display()),
    )
}

/// The store clock: wall-clock milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch; times before it are negative, times past year
/// 292 million saturate.
pub(super) fn to_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// [`to_ms`] rounded up to the next whole millisecond, for stamps that must not appear
/// earlier than the moment they record.
pub(super) fn to_ms_ceil(time: SystemTime) -> i64 {
    let floor = to_ms(time);
    if from_ms(floor) < time {
        floor.saturating_add(1)
    } else {
        floor
    }
}

/// The inverse of [`to_ms`].
pub(super) fn from_ms(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// A duration in whole milliseconds, saturating; leases and TTLs are far below the limit.
pub(super) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A counter (epoch, seq, offset) as a SQLite integer, which is signed.
pub(super) fn to_sql_int(what: &str, value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{what} {value} exceeds the sqlite integer range"),
        )
    })
}

/// Reads an unsigned counter from a SQLite integer column.
pub(super) fn from_sql_int(value: i64, column: usize) -> rusqlite::Result<u64> {
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millisecond_times_round_trip() {
        for ms in [0, 1, 1_700_000_000_123, -1_500] {
            assert_eq!(to_ms(from_ms(ms)), ms);
        }
    }

    #[test]
    fn stamps_round_up_to_the_next_millisecond() {
        let whole = from_ms(1_700_000_000_123);
        assert_eq!(to_ms_ceil(whole), 1_700_000_000_123);
        let just_after = whole + Duration::from_micros(1);
        assert_eq!(to_ms(just_after), 1_700_000_000_123);
        assert_eq!(to_ms_ceil(just_after), 1_700_000_000_124);
    }

    #[test]
    fn busy_errors_are_retryable_and_name_the_file() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let error = describe(Path::new("/tmp/s.sqlite"), "renew shard/1", &busy);
        assert!(error.is_retryable());
        assert_eq!(
            error.to_string(),
            "store operation failed: sqlite file /tmp/s.sqlite: renew shard/1: \
             still locked by another connection after the busy timeout"
        );
    }

    #[test]
    fn counters_beyond_sqlite_range_are_refused() {
        assert_eq!(to_sql_int("seq", 7).unwrap(), 7);
        assert_eq!(
            to_sql_int("seq", u64::MAX).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
    }
}
