//! The configured backend, chosen at start-up.

use std::time::Duration;

use crate::{
    Action, Backend, ClusterIdentity, ClusterSpec, Error, IdentifyBudget, IdentifyGrant, Lease,
    LeaseGrant, LeaseKey, LeaseState, NodeRecord, ScyllaStore, SqliteStore, Store, StoreConfig,
};

/// Whichever backend `store.backend` names; implements [`Store`] by delegation, so nodes
/// are written once against the trait.
pub enum AnyStore {
    /// The embedded backend.
    Sqlite(SqliteStore),
    /// The distributed backend.
    Scylla(ScyllaStore),
}

/// Opens the configured store for `cluster`.
///
/// # Errors
///
/// The store is unreachable, its file is corrupt, or its schema does not match; the
/// message says which store, where, and why.
pub async fn open(config: &StoreConfig, cluster: &str) -> Result<AnyStore, Error> {
    Ok(match config.backend {
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(&config.sqlite, cluster).await?),
        Backend::Scylla => AnyStore::Scylla(ScyllaStore::connect(&config.scylla, cluster).await?),
    })
}

/// Calls the same method on whichever backend is inside.
macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            AnyStore::Sqlite(store) => store.$method($($arg),*).await,
            AnyStore::Scylla(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store for AnyStore {
    fn cluster(&self) -> &str {
        match self {
            Self::Sqlite(store) => store.cluster(),
            Self::Scylla(store) => store.cluster(),
        }
    }

    async fn agree_spec(&self, proposed: ClusterSpec) -> Result<ClusterSpec, Error> {
        delegate!(self.agree_spec(proposed))
    }

    async fn spec(&self) -> Result<Option<ClusterSpec>, Error> {
        delegate!(self.spec())
    }

    async fn cluster_identity(&self) -> Result<ClusterIdentity, Error> {
        delegate!(self.cluster_identity())
    }

    fn location(&self) -> String {
        match self {
            Self::Sqlite(store) => store.location(),
            Self::Scylla(store) => store.location(),
        }
    }

    async fn acquire(
        &self,
        key: &LeaseKey,
        owner: &str,
        duration: Duration,
    ) -> Result<Option<Lease>, Error> {
        delegate!(self.acquire(key, owner, duration))
    }

    async fn renew(
        &self,
        grant: &LeaseGrant,
        duration: Duration,
        state: &LeaseState,
    ) -> Result<bool, Error> {
        delegate!(self.renew(grant, duration, state))
    }

    async fn release(&self, grant: &LeaseGrant, state: &LeaseState) -> Result<bool, Error> {
        delegate!(self.release(grant, state))
    }

    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, Error> {
        delegate!(self.lease(key))
    }

    async fn leases(&self) -> Result<Vec<Lease>, Error> {
        delegate!(self.leases())
    }

    async fn set_identify_budget(&self, budget: IdentifyBudget) -> Result<(), Error> {
        delegate!(self.set_identify_budget(budget))
    }

    async fn identify_budget(&self) -> Result<Option<IdentifyBudget>, Error> {
        delegate!(self.identify_budget())
    }

    async fn grant_identify(&self, bucket: u32) -> Result<IdentifyGrant, Error> {
        delegate!(self.grant_identify(bucket))
    }

    async fn register_node(&self, node: &NodeRecord, ttl: Duration) -> Result<(), Error> {
        delegate!(self.register_node(node, ttl))
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, Error> {
        delegate!(self.nodes())
    }

    async fn log_action(&self, action: &Action) -> Result<(), Error> {
        delegate!(self.log_action(action))
    }

    async fn recent_actions(&self, limit: usize) -> Result<Vec<Action>, Error> {
        delegate!(self.recent_actions(limit))
    }

    async fn delete_cluster(&self) -> Result<(), Error> {
        delegate!(self.delete_cluster())
    }
}
