//! Turning driver errors into store errors a user can act on, and telling a write that
//! failed from a write whose outcome is unknown.

use scylla::errors::{
    DbError, ExecutionError, NewSessionError, PrepareError, RequestAttemptError, UseKeyspaceError,
};

use crate::{Error, ErrorKind};

/// Cassandra's `CAS_WRITE_UNKNOWN` error code (protocol v5), which the driver reports as
/// `DbError::Other`: the LWT may or may not have been applied.
const CAS_WRITE_UNKNOWN: i32 = 0x1700;

/// Why a session could not be built: the contact points are named so the one line says
/// where, and a missing keyspace says what to run.
pub(super) fn connect_error(nodes: &[String], keyspace: &str, error: NewSessionError) -> Error {
    let nodes = nodes.join(", ");
    if let NewSessionError::UseKeyspaceError(UseKeyspaceError::RequestError(
        RequestAttemptError::DbError(_, message),
    )) = &error
        && names_missing_schema(message)
    {
        return Error::new(
            ErrorKind::SchemaMismatch,
            format!(
                "scylla at {nodes}: keyspace {keyspace} does not exist ({message}); \
                 run `shardmesh store init`"
            ),
        )
        .with_source(error);
    }
    Error::new(
        ErrorKind::Unreachable,
        format!("scylla at {nodes}: {}", one_line(&error)),
    )
    .with_source(error)
}

/// Why a statement could not be prepared. A table, column or type the statement needs
/// that the keyspace lacks is a schema mismatch, not an outage.
pub(super) fn prepare_error(statement: &str, keyspace: &str, error: &PrepareError) -> Error {
    let kind = match error {
        PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(_, message),
        } if names_missing_schema(message) => {
            return Error::new(
                ErrorKind::SchemaMismatch,
                format!(
                    "keyspace {keyspace} lacks what statement {statement} needs ({message}); \
                     run `shardmesh store init`"
                ),
            )
            .with_source(error.clone());
        }
        PrepareError::ConnectionPoolError(_) => ErrorKind::Unreachable,
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_kind(first_attempt),
        _ => ErrorKind::Backend,
    };
    Error::new(
        kind,
        format!(
            "preparing {statement} in keyspace {keyspace}: {}",
            one_line(error)
        ),
    )
    .with_source(error.clone())
}

/// An error of a statement run by operation `what` (e.g. `acquire shard/3`).
pub(super) fn execution_error(what: &str, error: ExecutionError) -> Error {
    let kind = match &error {
        ExecutionError::ConnectionPoolError(_) | ExecutionError::EmptyPlan => {
            ErrorKind::Unreachable
        }
        ExecutionError::LastAttemptError(attempt) => attempt_kind(attempt),
        _ => ErrorKind::Backend,
    };
    Error::new(kind, format!("scylla {what}: {}", one_line(&error))).with_source(error)
}

/// A stored value that does not decode into what this build expects.
pub(super) fn invalid_data(what: &str, problem: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidData, format!("scylla {what}: {problem}"))
}

/// Whether a conditional write that failed with `error` may nevertheless have been
/// applied, so that only reading the row back (at SERIAL) can tell.
///
/// A timeout after the request left (server- or client-side) or a connection that broke
/// under it leaves the Paxos round possibly accepted; errors raised before the
/// coordinator started the round (unavailable, overloaded, no connection) do not.
pub(super) fn may_have_applied(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::BrokenConnectionError(_) => true,
            RequestAttemptError::DbError(db, _) => matches!(
                db,
                DbError::WriteTimeout { .. }
                    | DbError::WriteFailure { .. }
                    | DbError::Other(CAS_WRITE_UNKNOWN)
            ),
            _ => false,
        },
        _ => false,
    }
}

fn attempt_kind(attempt: &RequestAttemptError) -> ErrorKind {
    match attempt {
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => ErrorKind::Unreachable,
        RequestAttemptError::DbError(DbError::Invalid | DbError::SyntaxError, message)
            if names_missing_schema(message) =>
        {
            ErrorKind::SchemaMismatch
        }
        _ => ErrorKind::Backend,
    }
}

/// Whether a server message says the keyspace lacks a keyspace, table, column or type.
/// ScyllaDB says "unconfigured table", "Undefined name", "Unknown identifier", "Unknown
/// type"; Cassandra says "table ... does not exist", "Undefined column name".
fn names_missing_schema(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "unconfigured table",
        "undefined column",
        "undefined name",
        "unknown identifier",
        "unknown type",
        "does not exist",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

/// The driver's message on one line: some of its errors embed newlines.
fn one_line(error: &impl std::fmt::Display) -> String {
    error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scylla::errors::WriteType;
    use scylla::statement::Consistency;

    use super::*;

    fn db(error: DbError, message: &str) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, message.into()))
    }

    fn write_timeout(write_type: WriteType) -> DbError {
        DbError::WriteTimeout {
            consistency: Consistency::LocalSerial,
            received: 0,
            required: 1,
            write_type,
        }
    }

    #[test]
    fn a_timed_out_cas_write_may_have_applied() {
        assert!(may_have_applied(&db(write_timeout(WriteType::Cas), "")));
        // The commit round of an LWT times out as a simple write: accepted, maybe applied.
        assert!(may_have_applied(&db(write_timeout(WriteType::Simple), "")));
        assert!(may_have_applied(&db(DbError::Other(CAS_WRITE_UNKNOWN), "")));
        assert!(may_have_applied(&ExecutionError::RequestTimeout(
            Duration::from_secs(5)
        )));
    }

    #[test]
    fn errors_before_the_paxos_round_did_not_apply() {
        let unavailable = DbError::Unavailable {
            consistency: Consistency::LocalQuorum,
            required: 2,
            alive: 1,
        };
        assert!(!may_have_applied(&db(unavailable, "")));
        assert!(!may_have_applied(&db(DbError::Overloaded, "")));
        assert!(!may_have_applied(&db(DbError::Invalid, "bad")));
        assert!(!may_have_applied(&ExecutionError::EmptyPlan));
    }

    #[test]
    fn missing_tables_and_columns_are_schema_mismatches() {
        for message in [
            "unconfigured table leases",
            "Undefined name state_kind in selection clause",
            "Unknown identifier stream_offset",
            "Unknown type shardmesh.dedup_mark",
            "table leases does not exist",
        ] {
            let error = PrepareError::AllAttemptsFailed {
                first_attempt: RequestAttemptError::DbError(DbError::Invalid, message.into()),
            };
            let error = prepare_error("lease_renew", "shardmesh", &error);
            assert_eq!(error.kind(), ErrorKind::SchemaMismatch, "{message}");
            let text = error.to_string();
            assert!(text.contains("lease_renew"), "{text}");
            assert!(text.contains("shardmesh store init"), "{text}");
        }
    }

    #[test]
    fn a_missing_keyspace_names_it_and_the_fix() {
        let error = NewSessionError::UseKeyspaceError(UseKeyspaceError::RequestError(
            RequestAttemptError::DbError(DbError::Invalid, "Keyspace 'mesh' does not exist".into()),
        ));
        let error = connect_error(&["10.0.0.1:9042".into()], "mesh", error);
        assert_eq!(error.kind(), ErrorKind::SchemaMismatch);
        assert_eq!(
            error.to_string(),
            "store schema mismatch: scylla at 10.0.0.1:9042: keyspace mesh does not exist \
             (Keyspace 'mesh' does not exist); run `shardmesh store init`"
        );
    }

    #[test]
    fn an_unreachable_cluster_is_one_line_naming_the_contact_points() {
        let error = connect_error(
            &["10.0.0.1:9042".into(), "10.0.0.2:9042".into()],
            "shardmesh",
            NewSessionError::FailedToResolveAnyHostname(vec!["scylla.invalid:9042".into()]),
        );
        assert_eq!(error.kind(), ErrorKind::Unreachable);
        let text = error.to_string();
        assert!(
            text.starts_with("store unreachable: scylla at 10.0.0.1:9042, 10.0.0.2:9042: "),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }
}
