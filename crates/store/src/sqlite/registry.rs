//! The cluster spec, the node registry, the action log, and deleting a cluster.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shardmesh_proto::{NodeRole, NodeState};

use super::convert::{Failure, duration_ms, from_ms, now_ms, to_ms};
use super::schema;
use crate::cluster::spec_conflict;
use crate::{Action, ClusterIdentity, ClusterSpec, Error, ErrorKind, NodeRecord};

/// Records `proposed` unless a spec is recorded; the first writer wins.
pub(super) fn agree_spec(
    conn: &mut Connection,
    cluster: &str,
    proposed: ClusterSpec,
) -> Result<ClusterSpec, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "INSERT INTO cluster_spec (cluster, shard_count, partitions, max_concurrency, agreed_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (cluster) DO NOTHING",
    )?
    .execute((
        cluster,
        proposed.shard_count,
        proposed.partitions,
        proposed.max_concurrency,
        now_ms(),
    ))?;
    let recorded = spec(&tx, cluster)?.unwrap_or(proposed);
    tx.commit()?;
    if recorded == proposed {
        Ok(recorded)
    } else {
        Err(spec_conflict(cluster, recorded, proposed).into())
    }
}

/// The recorded spec, if any.
pub(super) fn spec(conn: &Connection, cluster: &str) -> Result<Option<ClusterSpec>, Failure> {
    Ok(conn
        .prepare_cached(
            "SELECT shard_count, partitions, max_concurrency FROM cluster_spec WHERE cluster = ?1",
        )?
        .query_row([cluster], |row| {
            Ok(ClusterSpec {
                shard_count: row.get(0)?,
                partitions: row.get(1)?,
                max_concurrency: row.get(2)?,
            })
        })
        .optional()?)
}

/// The cluster's identity, created unless one is recorded; the first writer wins.
pub(super) fn cluster_identity(
    conn: &mut Connection,
    cluster: &str,
) -> Result<ClusterIdentity, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "INSERT INTO cluster_identity (cluster, id, created_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (cluster) DO NOTHING",
    )?
    .execute((cluster, uuid::Uuid::now_v7().to_string(), now_ms()))?;
    let (id, created_at_ms): (String, i64) = tx
        .prepare_cached("SELECT id, created_at_ms FROM cluster_identity WHERE cluster = ?1")?
        .query_row([cluster], |row| Ok((row.get(0)?, row.get(1)?)))?;
    tx.commit()?;
    Ok(ClusterIdentity {
        id,
        created_at: from_ms(created_at_ms),
    })
}

/// Writes the node's row to expire `ttl` from now, and purges rows already expired so
/// the table does not grow with every process start.
pub(super) fn register_node(
    conn: &mut Connection,
    cluster: &str,
    node: &NodeRecord,
    ttl: Duration,
) -> Result<(), Failure> {
    let now = now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached("DELETE FROM nodes WHERE cluster = ?1 AND expires_at_ms <= ?2")?
        .execute((cluster, now))?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO nodes (cluster, node, role, consumer_group, state, address,
                                       started_at_ms, seen_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute((
        cluster,
        &node.node,
        name_of(&node.role)?,
        &node.group,
        name_of(&node.state)?,
        &node.address,
        to_ms(node.started_at),
        to_ms(node.seen_at),
        now.saturating_add(duration_ms(ttl)),
    ))?;
    tx.commit()?;
    Ok(())
}

/// The unexpired registry rows, by node id.
pub(super) fn nodes(conn: &Connection, cluster: &str) -> Result<Vec<NodeRecord>, Failure> {
    let mut stmt = conn.prepare_cached(
        "SELECT node, role, consumer_group, state, address, started_at_ms, seen_at_ms
         FROM nodes WHERE cluster = ?1 AND expires_at_ms > ?2 ORDER BY node",
    )?;
    let nodes = stmt
        .query_map((cluster, now_ms()), read_node)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(nodes)
}

fn read_node(row: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    Ok(NodeRecord {
        node: row.get(0)?,
        role: from_name::<NodeRole>(row, 1)?,
        group: row.get(2)?,
        state: from_name::<NodeState>(row, 3)?,
        address: row.get(4)?,
        started_at: from_ms(row.get(5)?),
        seen_at: from_ms(row.get(6)?),
    })
}

/// The wire name of an enum (`gateway`, `ready`), so rows read the same as announcements.
fn name_of(value: &impl Serialize) -> Result<String, Error> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        other => Err(Error::new(
            ErrorKind::InvalidData,
            format!("cannot name a node role or state for storage: {other:?}"),
        )),
    }
}

fn from_name<T: DeserializeOwned>(row: &Row<'_>, column: usize) -> rusqlite::Result<T> {
    let name: String = row.get(column)?;
    serde_json::from_value(serde_json::Value::String(name)).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            Box::new(error),
        )
    })
}

/// Appends one action.
pub(super) fn log_action(conn: &Connection, cluster: &str, action: &Action) -> Result<(), Failure> {
    conn.prepare_cached(
        "INSERT INTO actions (cluster, at_ms, actor, action, args, result)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute((
        cluster,
        to_ms(action.at),
        &action.actor,
        &action.action,
        &action.args,
        &action.result,
    ))?;
    Ok(())
}

/// The `limit` newest actions, newest first; ties in time go to the later append.
pub(super) fn recent_actions(
    conn: &Connection,
    cluster: &str,
    limit: usize,
) -> Result<Vec<Action>, Failure> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT actor, action, args, result, at_ms FROM actions
         WHERE cluster = ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
    )?;
    let actions = stmt
        .query_map((cluster, limit), |row| {
            Ok(Action {
                actor: row.get(0)?,
                action: row.get(1)?,
                args: row.get(2)?,
                result: row.get(3)?,
                at: from_ms(row.get(4)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(actions)
}

/// Deletes every row of `cluster` from every table, atomically.
pub(super) fn delete_cluster(conn: &mut Connection, cluster: &str) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for table in schema::table_names() {
        tx.execute(
            &format!("DELETE FROM {table} WHERE cluster = ?1"),
            [cluster],
        )?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_names_every_differing_field_with_both_values() {
        let recorded = ClusterSpec {
            shard_count: 32,
            partitions: 16,
            max_concurrency: 1,
        };
        let proposed = ClusterSpec {
            shard_count: 64,
            partitions: 16,
            max_concurrency: 16,
        };
        assert_eq!(
            spec_conflict("prod", recorded, proposed).to_string(),
            "cluster spec conflict: cluster \"prod\" has shard_count 32, this node was given 64; \
             max_concurrency 1, this node was given 16"
        );
    }

    #[test]
    fn roles_and_states_are_stored_by_their_wire_names() {
        assert_eq!(name_of(&NodeRole::Gateway).unwrap(), "gateway");
        assert_eq!(name_of(&NodeState::Draining).unwrap(), "draining");
    }
}
