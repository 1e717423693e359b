//! Every CQL statement `ScyllaStore` prepares, as text, and how each one runs.
//!
//! The texts live here, together, so `tests/cql.rs` can check each of them against a CQL
//! grammar and against `schema.cql` without a server. Table names carry no keyspace: the
//! session uses the configured one.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};

use super::errors::prepare_error;
use crate::Error;

/// First writer wins; the other nodes compare against what it wrote.
pub(crate) const SPEC_INSERT: &str = "INSERT INTO cluster_spec \
     (cluster, shard_count, partitions, max_concurrency, created_at) \
     VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
pub(crate) const SPEC_SELECT: &str =
    "SELECT shard_count, partitions, max_concurrency FROM cluster_spec WHERE cluster = ?";
pub(crate) const SPEC_DELETE: &str = "DELETE FROM cluster_spec WHERE cluster = ? IF EXISTS";

/// First writer wins, like the spec; every node on this keyspace reads the same id.
pub(crate) const CLUSTER_IDENTITY_INSERT: &str = "INSERT INTO cluster_identity \
     (cluster, id, created_at) VALUES (?, ?, ?) IF NOT EXISTS";
pub(crate) const CLUSTER_IDENTITY_SELECT: &str =
    "SELECT id, created_at FROM cluster_identity WHERE cluster = ?";
pub(crate) const CLUSTER_IDENTITY_DELETE: &str =
    "DELETE FROM cluster_identity WHERE cluster = ? IF EXISTS";

/// Read at `LOCAL_QUORUM` before a conditional write (whose conditions catch a stale
/// read, so no Paxos round is spent on it), and at `LOCAL_SERIAL` to settle an unknown
/// outcome.
pub(crate) const LEASE_SELECT: &str = "SELECT lease_key, owner, epoch, lease_until, state_kind, \
     session_id, seq, resume_url, stream_offset, marks \
     FROM leases WHERE cluster = ? AND lease_key = ?";
/// Listing reads many partitions at once, so it cannot be a serial read.
pub(crate) const LEASES_SELECT_IN: &str = "SELECT lease_key, owner, epoch, lease_until, \
     state_kind, session_id, seq, resume_url, stream_offset, marks \
     FROM leases WHERE cluster = ? AND lease_key IN ?";
/// The first acquire of a key ever; every later one goes through [`LEASE_TAKE`].
pub(crate) const LEASE_CREATE: &str = "INSERT INTO leases \
     (cluster, lease_key, owner, epoch, lease_until) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
/// CQL joins conditions with AND only, so "free or expired" cannot be spelled out; a
/// released lease has `lease_until` 0, which makes free a case of expired. The caller
/// checked expiry on the row it read; conditioning on that row's exact epoch and
/// `lease_until` (which every renew and release changes) also guarantees the state it read
/// is the state the lease now carries.
pub(crate) const LEASE_TAKE: &str = "UPDATE leases SET owner = ?, epoch = ?, lease_until = ? \
     WHERE cluster = ? AND lease_key = ? IF epoch = ? AND lease_until = ?";
/// Unset (not null) binds leave the other role's columns alone, so a renew writes no
/// tombstones; `state_kind` says which columns are current.
pub(crate) const LEASE_RENEW: &str = "UPDATE leases SET lease_until = ?, state_kind = ?, \
     session_id = ?, seq = ?, resume_url = ?, stream_offset = ?, marks = ? \
     WHERE cluster = ? AND lease_key = ? IF owner = ? AND epoch = ?";
pub(crate) const LEASE_RELEASE: &str = "UPDATE leases SET owner = null, lease_until = 0, \
     state_kind = ?, session_id = ?, seq = ?, resume_url = ?, stream_offset = ?, marks = ? \
     WHERE cluster = ? AND lease_key = ? IF owner = ? AND epoch = ?";
/// Lease rows are written only with LWT, so they are deleted with LWT too: a plain delete
/// carries a client timestamp that may fall behind the Paxos ballot of the last write.
pub(crate) const LEASE_DELETE: &str =
    "DELETE FROM leases WHERE cluster = ? AND lease_key = ? IF EXISTS";
pub(crate) const LEASE_KEY_INSERT: &str =
    "INSERT INTO lease_keys (cluster, lease_key) VALUES (?, ?)";
pub(crate) const LEASE_KEYS_SELECT: &str = "SELECT lease_key FROM lease_keys WHERE cluster = ?";
pub(crate) const LEASE_KEYS_DELETE: &str = "DELETE FROM lease_keys WHERE cluster = ?";

/// The whole partition: the static budget comes with every bucket row (or alone, on a
/// row with a null bucket, when no bucket was granted yet). Read like [`LEASE_SELECT`].
pub(crate) const IDENTIFY_SELECT: &str = "SELECT bucket, last_grant, grant_id, remaining, \
     total, resets_at FROM identify WHERE cluster = ?";
/// Conditioned on the budget as read, so a grant that spent budget in between is noticed.
pub(crate) const IDENTIFY_SET_BUDGET: &str = "UPDATE identify \
     SET remaining = ?, total = ?, resets_at = ? \
     WHERE cluster = ? IF remaining = ? AND total = ? AND resets_at = ?";
/// One statement on one partition covers the bucket's pacing and the shared budget; a
/// never-granted bucket reads a null `grant_id`, and `= null` holds for a missing row.
pub(crate) const IDENTIFY_GRANT_COUNTED: &str = "UPDATE identify \
     SET last_grant = ?, grant_id = ?, remaining = ?, resets_at = ? \
     WHERE cluster = ? AND bucket = ? IF grant_id = ? AND remaining = ? AND resets_at = ?";
/// Without a recorded budget grants are paced, not counted; `total = null` makes a
/// budget recorded in between fail the grant, which is then retried as a counted one.
pub(crate) const IDENTIFY_GRANT_PACED: &str = "UPDATE identify \
     SET last_grant = ?, grant_id = ? \
     WHERE cluster = ? AND bucket = ? IF grant_id = ? AND total = null";
pub(crate) const IDENTIFY_DELETE_BUCKET: &str =
    "DELETE FROM identify WHERE cluster = ? AND bucket = ? IF EXISTS";
pub(crate) const IDENTIFY_DELETE_BUDGET: &str =
    "DELETE remaining, total, resets_at FROM identify WHERE cluster = ? IF total != null";

pub(crate) const NODE_UPSERT: &str = "INSERT INTO nodes \
     (cluster, node, role, consumer_group, state, address, started_at, seen_at, expires_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?";
pub(crate) const NODES_SELECT: &str = "SELECT node, role, consumer_group, state, address, \
     started_at, seen_at, expires_at FROM nodes WHERE cluster = ?";
pub(crate) const NODES_DELETE: &str = "DELETE FROM nodes WHERE cluster = ?";

pub(crate) const ACTION_DAY_INSERT: &str = "INSERT INTO action_days (cluster, day) VALUES (?, ?)";
pub(crate) const ACTION_INSERT: &str = "INSERT INTO actions \
     (cluster, day, id, actor, action, args, result, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
pub(crate) const ACTION_DAYS_SELECT: &str = "SELECT day FROM action_days WHERE cluster = ?";
pub(crate) const ACTIONS_SELECT: &str =
    "SELECT actor, action, args, result, at FROM actions WHERE cluster = ? AND day = ? LIMIT ?";
pub(crate) const ACTIONS_DELETE: &str = "DELETE FROM actions WHERE cluster = ? AND day = ?";
pub(crate) const ACTION_DAYS_DELETE: &str = "DELETE FROM action_days WHERE cluster = ?";

/// How a statement runs: which consistency, and whether running it twice is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A conditional write (LWT): never retried blindly, an unknown outcome is read back.
    Lwt,
    /// A read at `LOCAL_SERIAL`: sees every committed LWT and finishes in-flight ones.
    SerialRead,
    /// A read at `LOCAL_QUORUM`.
    Read,
    /// A plain write whose repetition writes the same cells again.
    IdempotentWrite,
}

/// The name, text and mode of every statement, in preparation order.
const ALL: &[(&str, &str, Mode)] = &[
    ("spec_insert", SPEC_INSERT, Mode::Lwt),
    ("spec_select", SPEC_SELECT, Mode::SerialRead),
    ("spec_delete", SPEC_DELETE, Mode::Lwt),
    (
        "cluster_identity_insert",
        CLUSTER_IDENTITY_INSERT,
        Mode::Lwt,
    ),
    (
        "cluster_identity_select",
        CLUSTER_IDENTITY_SELECT,
        Mode::SerialRead,
    ),
    (
        "cluster_identity_delete",
        CLUSTER_IDENTITY_DELETE,
        Mode::Lwt,
    ),
    ("lease_select", LEASE_SELECT, Mode::Read),
    ("lease_select_serial", LEASE_SELECT, Mode::SerialRead),
    ("leases_select_in", LEASES_SELECT_IN, Mode::Read),
    ("lease_create", LEASE_CREATE, Mode::Lwt),
    ("lease_take", LEASE_TAKE, Mode::Lwt),
    ("lease_renew", LEASE_RENEW, Mode::Lwt),
    ("lease_release", LEASE_RELEASE, Mode::Lwt),
    ("lease_delete", LEASE_DELETE, Mode::Lwt),
    ("lease_key_insert", LEASE_KEY_INSERT, Mode::IdempotentWrite),
    ("lease_keys_select", LEASE_KEYS_SELECT, Mode::Read),
    (
        "lease_keys_delete",
        LEASE_KEYS_DELETE,
        Mode::IdempotentWrite,
    ),
    ("identify_select", IDENTIFY_SELECT, Mode::Read),
    ("identify_select_serial", IDENTIFY_SELECT, Mode::SerialRead),
    ("identify_set_budget", IDENTIFY_SET_BUDGET, Mode::Lwt),
    ("identify_grant_counted", IDENTIFY_GRANT_COUNTED, Mode::Lwt),
    ("identify_grant_paced", IDENTIFY_GRANT_PACED, Mode::Lwt),
    ("identify_delete_bucket", IDENTIFY_DELETE_BUCKET, Mode::Lwt),
    ("identify_delete_budget", IDENTIFY_DELETE_BUDGET, Mode::Lwt),
    ("node_upsert", NODE_UPSERT, Mode::IdempotentWrite),
    ("nodes_select", NODES_SELECT, Mode::Read),
    ("nodes_delete", NODES_DELETE, Mode::IdempotentWrite),
    (
        "action_day_insert",
        ACTION_DAY_INSERT,
        Mode::IdempotentWrite,
    ),
    // Idempotent because the caller builds the row's timeuuid: a retry rewrites one row.
    ("action_insert", ACTION_INSERT, Mode::IdempotentWrite),
    ("action_days_select", ACTION_DAYS_SELECT, Mode::Read),
    ("actions_select", ACTIONS_SELECT, Mode::Read),
    ("actions_delete", ACTIONS_DELETE, Mode::IdempotentWrite),
    (
        "action_days_delete",
        ACTION_DAYS_DELETE,
        Mode::IdempotentWrite,
    ),
];

/// `(name, cql)` of every statement `ScyllaStore` prepares.
pub(crate) fn all_statements() -> &'static [(&'static str, &'static str)] {
    const fn names_and_texts() -> [(&'static str, &'static str); ALL.len()] {
        let mut out = [("", ""); ALL.len()];
        let mut i = 0;
        while i < ALL.len() {
            out[i] = (ALL[i].0, ALL[i].1);
            i += 1;
        }
        out
    }
    const NAMES_AND_TEXTS: [(&str, &str); ALL.len()] = names_and_texts();
    &NAMES_AND_TEXTS
}

/// Every statement, prepared once per store handle with its consistency, serial
/// consistency, idempotence and request timeout set.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) spec_insert: PreparedStatement,
    pub(crate) spec_select: PreparedStatement,
    pub(crate) spec_delete: PreparedStatement,
    pub(crate) cluster_identity_insert: PreparedStatement,
    pub(crate) cluster_identity_select: PreparedStatement,
    pub(crate) cluster_identity_delete: PreparedStatement,
    pub(crate) lease_select: PreparedStatement,
    pub(crate) lease_select_serial: PreparedStatement,
    pub(crate) leases_select_in: PreparedStatement,
    pub(crate) lease_create: PreparedStatement,
    pub(crate) lease_take: PreparedStatement,
    pub(crate) lease_renew: PreparedStatement,
    pub(crate) lease_release: PreparedStatement,
    pub(crate) lease_delete: PreparedStatement,
    pub(crate) lease_key_insert: PreparedStatement,
    pub(crate) lease_keys_select: PreparedStatement,
    pub(crate) lease_keys_delete: PreparedStatement,
    pub(crate) identify_select: PreparedStatement,
    pub(crate) identify_select_serial: PreparedStatement,
    pub(crate) identify_set_budget: PreparedStatement,
    pub(crate) identify_grant_counted: PreparedStatement,
    pub(crate) identify_grant_paced: PreparedStatement,
    pub(crate) identify_delete_bucket: PreparedStatement,
    pub(crate) identify_delete_budget: PreparedStatement,
    pub(crate) node_upsert: PreparedStatement,
    pub(crate) nodes_select: PreparedStatement,
    pub(crate) nodes_delete: PreparedStatement,
    pub(crate) action_day_insert: PreparedStatement,
    pub(crate) action_insert: PreparedStatement,
    pub(crate) action_days_select: PreparedStatement,
    pub(crate) actions_select: PreparedStatement,
    pub(crate) actions_delete: PreparedStatement,
    pub(crate) action_days_delete: PreparedStatement,
}

impl Statements {
    /// Prepares every statement of [`ALL`] on `session`.
    ///
    /// # Errors
    ///
    /// [`SchemaMismatch`](crate::ErrorKind::SchemaMismatch) naming the statement when the
    /// keyspace lacks a table, column or type it uses; `Unreachable` or `Backend` when the
    /// cluster could not answer.
    pub(crate) async fn prepare(
        session: &Session,
        keyspace: &str,
        request_timeout: Duration,
    ) -> Result<Self, Error> {
        let mut prepared = Vec::with_capacity(ALL.len());
        for &(name, cql, mode) in ALL {
            let mut statement = session
                .prepare(cql)
                .await
                .map_err(|error| prepare_error(name, keyspace, &error))?;
            configure(&mut statement, mode, request_timeout);
            prepared.push(statement);
        }
        let mut next = prepared.into_iter();
        // The order of ALL is the order of the fields; `take` keeps the two in step.
        let mut take = || {
            next.next()
                .expect("one prepared statement per entry of ALL")
        };
        Ok(Self {
            spec_insert: take(),
            spec_select: take(),
            spec_delete: take(),
            cluster_identity_insert: take(),
            cluster_identity_select: take(),
            cluster_identity_delete: take(),
            lease_select: take(),
            lease_select_serial: take(),
            leases_select_in: take(),
            lease_create: take(),
            lease_take: take(),
            lease_renew: take(),
            lease_release: take(),
            lease_delete: take(),
            lease_key_insert: take(),
            lease_keys_select: take(),
            lease_keys_delete: take(),
            identify_select: take(),
            identify_select_serial: take(),
            identify_set_budget: take(),
            identify_grant_counted: take(),
            identify_grant_paced: take(),
            identify_delete_bucket: take(),
            identify_delete_budget: take(),
            node_upsert: take(),
            nodes_select: take(),
            nodes_delete: take(),
            action_day_insert: take(),
            action_insert: take(),
            action_days_select: take(),
            actions_select: take(),
            actions_delete: take(),
            action_days_delete: take(),
        })
    }
}

fn configure(statement: &mut PreparedStatement, mode: Mode, request_timeout: Duration) {
    statement.set_request_timeout(Some(request_timeout));
    // `LOCAL_SERIAL` keeps Paxos rounds inside the local datacenter; the lease margin, not
    // cross-datacenter linearizability, is what protects a holder.
    statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
    match mode {
        Mode::Lwt => {
            statement.set_consistency(Consistency::LocalQuorum);
            statement.set_is_idempotent(false);
        }
        Mode::SerialRead => {
            statement.set_consistency(Consistency::LocalSerial);
            statement.set_is_idempotent(true);
        }
        Mode::Read | Mode::IdempotentWrite => {
            statement.set_consistency(Consistency::LocalQuorum);
            statement.set_is_idempotent(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_texts_end_without_semicolon() {
        let mut names: Vec<_> = all_statements().iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for (name, cql) in all_statements() {
            assert!(!cql.trim_end().ends_with(';'), "{name}");
            assert!(!cql.contains("  "), "{name} has a doubled space: {cql}");
        }
    }

    #[test]
    fn conditional_statements_run_as_lwt_and_only_they_do() {
        for &(name, cql, mode) in ALL {
            let conditional = cql.contains(" IF ");
            assert_eq!(conditional, mode == Mode::Lwt, "{name}: {cql}");
        }
    }
}
