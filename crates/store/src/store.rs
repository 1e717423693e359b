//! The `Store` trait: every operation shardmesh needs from its source of truth.

use std::future::Future;
use std::time::Duration;

use crate::{
    Action, ClusterIdentity, ClusterSpec, Error, IdentifyBudget, IdentifyGrant, Lease, LeaseGrant,
    LeaseKey, LeaseState, NodeRecord,
};

/// The shared source of truth of one cluster: ownership, sessions, checkpoints,
/// identify pacing, node registry and action log.
///
/// A store handle is bound to one cluster name at open time; every row it reads or
/// writes is namespaced by it. Implementations: [`SqliteStore`](crate::SqliteStore)
/// (one host) and [`ScyllaStore`](crate::ScyllaStore) (many hosts). Both pass the same
/// conformance suite.
///
/// Times are the store's clock (the wall clock of the calling host); holders of a lease
/// must self-fence on their own monotonic clock before `lease_until` (see
/// `docs/design.md`).
///
/// # Cancel safety
///
/// Dropping a returned future may or may not have applied the write; the conditional
/// operations stay correct either way because the next call re-checks owner and epoch.
pub trait Store: Send + Sync + 'static {
    /// The cluster name this handle is bound to.
    fn cluster(&self) -> &str;

    /// Records `proposed` as the cluster spec if none is recorded, and returns the
    /// recorded one (first writer wins).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::SpecConflict`](crate::ErrorKind::SpecConflict) naming both values when
    /// the recorded spec differs from `proposed`.
    fn agree_spec(
        &self,
        proposed: ClusterSpec,
    ) -> impl Future<Output = Result<ClusterSpec, Error>> + Send;

    /// The recorded cluster spec, if any node agreed one.
    fn spec(&self) -> impl Future<Output = Result<Option<ClusterSpec>, Error>> + Send;

    /// The cluster's identity in this store, created by the first call (first writer
    /// wins, like the spec); every later call, from any node on this store, returns
    /// the same.
    fn cluster_identity(&self) -> impl Future<Output = Result<ClusterIdentity, Error>> + Send;

    /// Where this store is, for people: `sqlite file /abs/path on host`, `scylla
    /// keyspace k at host:port`. Named in the refusal of a node on another store.
    fn location(&self) -> String;

    /// Takes the lease on `key` for `owner` if it is free (never held, released) or
    /// expired, raising its epoch by one. Returns `None` when someone else holds it.
    ///
    /// The returned lease carries the state the previous holder saved: the session to
    /// resume, or the checkpoint to read from.
    fn acquire(
        &self,
        key: &LeaseKey,
        owner: &str,
        duration: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, Error>> + Send;

    /// Extends the lease to now + `duration` and saves `state`, if `grant` still holds
    /// it (same owner and epoch). Returns `false`, changing nothing, when it does not.
    fn renew(
        &self,
        grant: &LeaseGrant,
        duration: Duration,
        state: &LeaseState,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Saves the final `state` and frees the lease, if `grant` still holds it. Returns
    /// `false`, changing nothing, when it does not. The epoch stays.
    fn release(
        &self,
        grant: &LeaseGrant,
        state: &LeaseState,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// The lease row of `key`, if it was ever acquired.
    fn lease(&self, key: &LeaseKey) -> impl Future<Output = Result<Option<Lease>, Error>> + Send;

    /// Every lease row of the cluster, ordered by key.
    fn leases(&self) -> impl Future<Output = Result<Vec<Lease>, Error>> + Send;

    /// Records the daily session-start budget as `GET /gateway/bot` reported it.
    /// Until a budget is recorded, grants are paced but not counted.
    fn set_identify_budget(
        &self,
        budget: IdentifyBudget,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The recorded budget, with `remaining` as spent so far.
    fn identify_budget(&self)
    -> impl Future<Output = Result<Option<IdentifyBudget>, Error>> + Send;

    /// Asks for an IDENTIFY slot in `bucket` (`shard % max_concurrency`): granted at most
    /// once per [`IDENTIFY_INTERVAL`](crate::IDENTIFY_INTERVAL) per bucket across the
    /// cluster, and never beyond the daily budget. A grant spends one unit of budget.
    fn grant_identify(
        &self,
        bucket: u32,
    ) -> impl Future<Output = Result<IdentifyGrant, Error>> + Send;

    /// Writes this node's registry row; it disappears after `ttl` unless written again.
    fn register_node(
        &self,
        node: &NodeRecord,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The registry rows that have not expired.
    fn nodes(&self) -> impl Future<Output = Result<Vec<NodeRecord>, Error>> + Send;

    /// Appends to the action log.
    fn log_action(&self, action: &Action) -> impl Future<Output = Result<(), Error>> + Send;

    /// The `limit` most recent actions, newest first.
    fn recent_actions(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Action>, Error>> + Send;

    /// Deletes every row of this cluster (for tests and `shardmesh ctl`).
    fn delete_cluster(&self) -> impl Future<Output = Result<(), Error>> + Send;
}
