//! The node registry (plain writes with a TTL) and the action log (day partitions).

use std::time::{Duration, SystemTime};

use scylla::DeserializeRow;
use scylla::value::{CqlDate, CqlTimestamp};

use super::ScyllaStore;
use super::errors::{execution_error, invalid_data};
use super::values::{
    add, day, required, role_from_text, role_text, state_from_text, state_text, system_time,
    timestamp, timeuuid,
};
use crate::{Action, Error, NodeRecord, Store};

/// The longest TTL CQL accepts (20 years).
const MAX_TTL_SECONDS: u128 = 630_720_000;

#[derive(Debug, DeserializeRow)]
pub(super) struct NodeRow {
    node: String,
    role: Option<String>,
    consumer_group: Option<String>,
    state: Option<String>,
    address: Option<String>,
    started_at: Option<CqlTimestamp>,
    seen_at: Option<CqlTimestamp>,
    expires_at: Option<CqlTimestamp>,
}

#[derive(Debug, DeserializeRow)]
pub(super) struct ActionRow {
    actor: Option<String>,
    action: Option<String>,
    args: Option<String>,
    result: Option<String>,
    at: Option<CqlTimestamp>,
}

impl ScyllaStore {
    pub(super) async fn write_node(&self, node: &NodeRecord, ttl: Duration) -> Result<(), Error> {
        let what = format!("register node {}", node.node);
        let expires_at = add(timestamp(SystemTime::now()), ttl);
        // CQL TTLs are whole seconds and at least one; `expires_at` keeps the exact end
        // and the TTL, rounded up, only removes the row afterwards.
        let ttl_seconds = i32::try_from(ttl.as_millis().div_ceil(1_000).clamp(1, MAX_TTL_SECONDS))
            .unwrap_or(i32::MAX);
        let values = (
            self.cluster(),
            &node.node,
            role_text(node.role),
            &node.group,
            state_text(node.state),
            &node.address,
            timestamp(node.started_at),
            timestamp(node.seen_at),
            expires_at,
            ttl_seconds,
        );
        self.session()
            .execute_unpaged(&self.statements().node_upsert, values)
            .await
            .map_err(|error| execution_error(&what, error))?;
        Ok(())
    }

    pub(super) async fn live_nodes(&self) -> Result<Vec<NodeRecord>, Error> {
        let what = "list nodes";
        let now = timestamp(SystemTime::now());
        let rows = self
            .session()
            .execute_unpaged(&self.statements().nodes_select, (self.cluster(),))
            .await
            .map_err(|error| execution_error(what, error))?
            .into_rows_result()
            .map_err(|error| invalid_data(what, error))?;
        let mut nodes = Vec::new();
        for row in rows
            .rows::<NodeRow>()
            .map_err(|error| invalid_data(what, error))?
        {
            let row = row.map_err(|error| invalid_data(what, error))?;
            if row.expires_at.is_some_and(|expires| expires.0 <= now.0) {
                continue;
            }
            nodes.push(NodeRecord {
                role: role_from_text(required(row.role, what, "role")?.as_str())?,
                group: row.consumer_group,
                state: state_from_text(required(row.state, what, "state")?.as_str())?,
                address: row.address,
                started_at: system_time(required(row.started_at, what, "started_at")?),
                seen_at: system_time(required(row.seen_at, what, "seen_at")?),
                node: row.node,
            });
        }
        Ok(nodes)
    }

    pub(super) async fn append_action(&self, action: &Action) -> Result<(), Error> {
        let what = format!("log action {}", action.action);
        let day = day(action.at);
        // The day goes into the index first, so no action row exists that
        // `recent_actions` and `delete_cluster` cannot find.
        self.session()
            .execute_unpaged(&self.statements().action_day_insert, (self.cluster(), day))
            .await
            .map_err(|error| execution_error(&what, error))?;
        let values = (
            self.cluster(),
            day,
            timeuuid(action.at),
            &action.actor,
            &action.action,
            &action.args,
            &action.result,
            timestamp(action.at),
        );
        self.session()
            .execute_unpaged(&self.statements().action_insert, values)
            .await
            .map_err(|error| execution_error(&what, error))?;
        Ok(())
    }

    pub(super) async fn newest_actions(&self, limit: usize) -> Result<Vec<Action>, Error> {
        let what = "list recent actions";
        let mut actions = Vec::new();
        if limit == 0 {
            return Ok(actions);
        }
        // Newest day first (the index clusters descending), newest action first within a
        // day: reading stops at the first `limit` rows.
        for day in self.action_days(what).await? {
            let wanted = i32::try_from(limit - actions.len()).unwrap_or(i32::MAX);
            let rows = self
                .session()
                .execute_unpaged(
                    &self.statements().actions_select,
                    (self.cluster(), day, wanted),
                )
                .await
                .map_err(|error| execution_error(what, error))?
                .into_rows_result()
                .map_err(|error| invalid_data(what, error))?;
            for row in rows
                .rows::<ActionRow>()
                .map_err(|error| invalid_data(what, error))?
            {
                let row = row.map_err(|error| invalid_data(what, error))?;
                actions.push(Action {
                    actor: row.actor.unwrap_or_default(),
                    action: row.action.unwrap_or_default(),
                    args: row.args.unwrap_or_default(),
                    result: row.result.unwrap_or_default(),
                    at: system_time(required(row.at, what, "at")?),
                });
            }
            if actions.len() >= limit {
                actions.truncate(limit);
                break;
            }
        }
        Ok(actions)
    }

    /// Deletes the cluster's registry rows, action log and day index.
    pub(super) async fn delete_registry(&self) -> Result<(), Error> {
        let what = "delete nodes and actions";
        self.session()
            .execute_unpaged(&self.statements().nodes_delete, (self.cluster(),))
            .await
            .map_err(|error| execution_error(what, error))?;
        for day in self.action_days(what).await? {
            self.session()
                .execute_unpaged(&self.statements().actions_delete, (self.cluster(), day))
                .await
                .map_err(|error| execution_error(what, error))?;
        }
        self.session()
            .execute_unpaged(&self.statements().action_days_delete, (self.cluster(),))
            .await
            .map_err(|error| execution_error(what, error))?;
        Ok(())
    }

    /// The days that have actions, newest first.
    async fn action_days(&self, what: &str) -> Result<Vec<CqlDate>, Error> {
        self.session()
            .execute_unpaged(&self.statements().action_days_select, (self.cluster(),))
            .await
            .map_err(|error| execution_error(what, error))?
            .into_rows_result()
            .map_err(|error| invalid_data(what, error))?
            .rows::<(CqlDate,)>()
            .map_err(|error| invalid_data(what, error))?
            .map(|row| row.map(|(day,)| day))
            .collect::<Result<_, _>>()
            .map_err(|error| invalid_data(what, error))
    }
}
