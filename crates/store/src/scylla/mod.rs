//! The distributed backend: ScyllaDB (or Cassandra) through the `scylla` driver.
//!
//! Leases and identify grants are LWTs on one partition each (see `schema.cql`); the node
//! registry and the action log are plain writes. Every statement is prepared once when
//! the store connects, which is also when a keyspace that lacks a table or column is
//! reported.

mod errors;
mod identify;
mod lease_row;
mod leases;
mod lwt;
mod registry;
mod schema;
mod spec;
mod statements;
#[cfg(test)]
mod type_check;
mod values;

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use self::statements::Statements;
use crate::{
    Action, ClusterIdentity, ClusterSpec, Error, IdentifyBudget, IdentifyGrant, Lease, LeaseGrant,
    LeaseKey, LeaseState, NodeRecord, ScyllaConfig, Store,
};

/// The distributed store backend: ScyllaDB, with LWT leases.
///
/// A handle is cheap to clone; clones share one driver session (its connection pools and
/// prepared statements). The driver runs background tasks on the Tokio runtime that
/// connected, so a handle must be used while that runtime runs.
///
/// ```no_run
/// use shardmesh_store::{ScyllaConfig, ScyllaStore, Store};
///
/// # async fn demo() -> Result<(), shardmesh_store::Error> {
/// let config = ScyllaConfig::default();
/// ScyllaStore::init_schema(&config).await?; // what `shardmesh store init` runs
/// let store = ScyllaStore::connect(&config, "default").await?;
/// println!("{} leases", store.leases().await?.len());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ScyllaStore {
    shared: Arc<Shared>,
    cluster: Arc<str>,
}

#[derive(Debug)]
struct Shared {
    session: Session,
    statements: Statements,
    /// `scylla keyspace K at host:port,...`, for [`Store::location`].
    location: String,
}

impl ScyllaStore {
    /// The schema this build needs, as `schema.cql` at the repository root holds it.
    pub const SCHEMA_CQL: &'static str = schema::SCHEMA_CQL;

    /// Connects to the cluster `config` names, prepares every statement in
    /// `config.keyspace`, and binds the handle to the shardmesh cluster `cluster`.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Unreachable`](crate::ErrorKind::Unreachable) naming the contact
    ///   points and the reason when no node answers (or the credentials are refused).
    /// - [`ErrorKind::SchemaMismatch`](crate::ErrorKind::SchemaMismatch) naming the
    ///   missing keyspace, or the statement whose table, column or type is missing, and
    ///   telling to run `shardmesh store init`.
    pub async fn connect(config: &ScyllaConfig, cluster: &str) -> Result<Self, Error> {
        let session = session(config, Some(&config.keyspace)).await?;
        let statements = Statements::prepare(
            &session,
            &config.keyspace,
            Duration::from_millis(config.request_timeout_ms),
        )
        .await?;
        Ok(Self {
            shared: Arc::new(Shared {
                session,
                statements,
                location: format!(
                    "scylla keyspace {} at {}",
                    config.keyspace,
                    config.nodes.join(",")
                ),
            }),
            cluster: cluster.into(),
        })
    }

    /// A handle on another shardmesh cluster in the same keyspace, sharing this handle's
    /// session.
    #[must_use]
    pub fn for_cluster(&self, cluster: &str) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            cluster: cluster.into(),
        }
    }

    /// Creates the keyspace (named by `config.keyspace`), the type and the tables of
    /// [`SCHEMA_CQL`](Self::SCHEMA_CQL), statement by statement. Everything is
    /// `IF NOT EXISTS`, so running it on an initialised keyspace changes nothing. This is
    /// what `shardmesh store init` runs.
    ///
    /// It does not alter existing tables: a keyspace created by an older schema keeps its
    /// tables, and [`connect`](Self::connect) reports what they lack.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unreachable`](crate::ErrorKind::Unreachable) when no node answers or
    /// the keyspace name is not a plain identifier; `Backend` when a statement is refused
    /// (for example, the user may not create keyspaces).
    pub async fn init_schema(config: &ScyllaConfig) -> Result<(), Error> {
        schema::check_keyspace(&config.keyspace)?;
        let session = session(config, None).await?;
        schema::apply(&session, config).await
    }

    /// `(name, cql)` of every statement a store prepares, for the CQL checks in
    /// `tests/cql.rs`.
    #[doc(hidden)]
    pub fn all_statements() -> &'static [(&'static str, &'static str)] {
        statements::all_statements()
    }

    /// The statements [`init_schema`](Self::init_schema) runs, before the configured
    /// keyspace replaces `shardmesh`, for the CQL checks in `tests/cql.rs`.
    #[doc(hidden)]
    pub fn schema_statements() -> Vec<String> {
        schema::schema_statements()
    }

    fn session(&self) -> &Session {
        &self.shared.session
    }

    fn statements(&self) -> &Statements {
        &self.shared.statements
    }
}

/// A driver session on the cluster `config` names, in `keyspace` when given.
async fn session(config: &ScyllaConfig, keyspace: Option<&str>) -> Result<Session, Error> {
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
        // Routing metadata keeps LWTs token-aware (the coordinator is a replica, which
        // saves a hop on every Paxos round); the store names every table and column it
        // uses, so column and type details would only cost time.
        .fetch_schema_metadata(true)
        .fetch_full_schema_metadata(false);
    if let Some(username) = &config.username {
        let password = config
            .password
            .as_ref()
            .map_or("", |secret| secret.expose());
        builder = builder.user(username, password);
    }
    if let Some(keyspace) = keyspace {
        builder = builder.use_keyspace(keyspace, false);
    }
    builder
        .build()
        .await
        .map_err(|error| errors::connect_error(&config.nodes, keyspace.unwrap_or("(none)"), error))
}

impl Store for ScyllaStore {
    fn cluster(&self) -> &str {
        &self.cluster
    }

    async fn agree_spec(&self, proposed: ClusterSpec) -> Result<ClusterSpec, Error> {
        self.agree_cluster_spec(proposed).await
    }

    async fn spec(&self) -> Result<Option<ClusterSpec>, Error> {
        self.cluster_spec().await
    }

    async fn cluster_identity(&self) -> Result<ClusterIdentity, Error> {
        self.claim_cluster_identity().await
    }

    fn location(&self) -> String {
        self.shared.location.clone()
    }

    async fn acquire(
        &self,
        key: &LeaseKey,
        owner: &str,
        duration: Duration,
    ) -> Result<Option<Lease>, Error> {
        self.acquire_lease(key, owner, duration).await
    }

    async fn renew(
        &self,
        grant: &LeaseGrant,
        duration: Duration,
        state: &LeaseState,
    ) -> Result<bool, Error> {
        self.renew_lease(grant, duration, state).await
    }

    async fn release(&self, grant: &LeaseGrant, state: &LeaseState) -> Result<bool, Error> {
        self.release_lease(grant, state).await
    }

    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, Error> {
        self.lease_row(key).await
    }

    async fn leases(&self) -> Result<Vec<Lease>, Error> {
        self.all_leases().await
    }

    async fn set_identify_budget(&self, budget: IdentifyBudget) -> Result<(), Error> {
        self.record_identify_budget(budget).await
    }

    async fn identify_budget(&self) -> Result<Option<IdentifyBudget>, Error> {
        self.current_identify_budget().await
    }

    async fn grant_identify(&self, bucket: u32) -> Result<IdentifyGrant, Error> {
        self.grant_identify_slot(bucket).await
    }

    async fn register_node(&self, node: &NodeRecord, ttl: Duration) -> Result<(), Error> {
        self.write_node(node, ttl).await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, Error> {
        self.live_nodes().await
    }

    async fn log_action(&self, action: &Action) -> Result<(), Error> {
        self.append_action(action).await
    }

    async fn recent_actions(&self, limit: usize) -> Result<Vec<Action>, Error> {
        self.newest_actions(limit).await
    }

    async fn delete_cluster(&self) -> Result<(), Error> {
        self.delete_leases().await?;
        self.delete_identify().await?;
        self.delete_registry().await?;
        self.delete_cluster_identity().await?;
        self.delete_cluster_spec().await
    }
}
