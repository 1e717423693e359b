//! Running conditional writes (LWT) and reading their outcome.
//!
//! `[applied]` is read by column name: ScyllaDB returns it together with the old row on
//! every conditional write, Cassandra returns the old row only when the write was not
//! applied, and the set of columns differs by statement kind, so nothing but the name is
//! stable.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use super::errors::{execution_error, invalid_data, may_have_applied};
use crate::{Error, ErrorKind};

/// How many times an operation whose write outcome stayed unknown is tried before it
/// gives up with [`ErrorKind::OutcomeUnknown`].
pub(super) const UNKNOWN_OUTCOME_ATTEMPTS: usize = 3;

/// The outcome of one conditional write.
#[derive(Debug)]
pub(super) enum Cas {
    /// The coordinator answered: the conditions held (`true`) or did not (`false`).
    Decided(bool),
    /// The write may or may not have been applied; only a serial read can tell.
    Unknown(Box<ExecutionError>),
}

/// Runs the conditional `statement` with `values` on behalf of operation `what`.
///
/// # Errors
///
/// The mapped driver error when the write certainly did not apply.
pub(super) async fn cas(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
    what: &str,
) -> Result<Cas, Error> {
    match session.execute_unpaged(statement, values).await {
        Ok(result) => applied(result, what).map(Cas::Decided),
        Err(error) if may_have_applied(&error) => Ok(Cas::Unknown(Box::new(error))),
        Err(error) => Err(execution_error(what, error)),
    }
}

/// Reads `[applied]` from the result of a conditional write.
fn applied(result: QueryResult, what: &str) -> Result<bool, Error> {
    let rows = result.into_rows_result().map_err(|error| {
        invalid_data(what, format!("conditional write returned no rows: {error}"))
    })?;
    let Some((index, _)) = rows.column_specs().get_by_name("[applied]") else {
        return Err(invalid_data(
            what,
            "conditional write result lacks [applied]",
        ));
    };
    let row: Row = rows
        .first_row()
        .map_err(|error| invalid_data(what, format!("conditional write result: {error}")))?;
    match row.columns.get(index) {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(invalid_data(what, format!("[applied] is {other:?}"))),
    }
}

/// The error when a write's outcome stayed unknown through every attempt: the last
/// driver error as its source.
pub(super) fn outcome_unknown(what: &str, last: Box<ExecutionError>) -> Error {
    Error::new(
        ErrorKind::OutcomeUnknown,
        format!(
            "scylla {what}: conditional write timed out {UNKNOWN_OUTCOME_ATTEMPTS} times \
             and reading it back did not settle it"
        ),
    )
    .with_source(last)
}

/// The error when reading back an unknown outcome failed too.
pub(super) fn read_back_failed(what: &str, write: &ExecutionError, read: Error) -> Error {
    Error::new(
        ErrorKind::OutcomeUnknown,
        format!(
            "scylla {what}: conditional write timed out ({write}) and reading it back \
             failed: {read}"
        ),
    )
    .with_source(read)
}

/// A short pause before retrying after contention, spread so that contenders that
/// collided do not collide again in lockstep.
pub(super) async fn back_off(attempt: usize) {
    // The random bits of a v7 UUID are a cheap source of jitter.
    let spread = u64::try_from(uuid::Uuid::now_v7().as_u128() % 16).unwrap_or(0);
    let base = 5_u64 << attempt.min(5);
    tokio::time::sleep(Duration::from_millis(base + spread)).await;
}
