//! The conformance suite: what every [`Store`] backend must do, as `async fn`s over any
//! backend, so each backend runs exactly the same checks.
//!
//! # Running it against a backend
//!
//! Give [`conformance_suite!`] an expression that evaluates to a *factory*: something
//! callable as `factory(cluster: String)` that returns a future of an opened store bound
//! to that cluster. The macro generates one `#[tokio::test]` per check; the expression
//! is evaluated afresh in each test, so it may set up per-test resources (a temporary
//! directory) that the factory captures. A check calls the factory once or several
//! times (several handles on one cluster, or two clusters that must not see each
//! other), always with cluster names unique to that run, and deletes its clusters with
//! `delete_cluster` when it passes.
//!
//! ```ignore
//! mod conformance;
//!
//! conformance::conformance_suite!({
//!     let dir = tempfile::tempdir().unwrap();
//!     move |cluster: String| {
//!         let config = SqliteConfig { path: dir.path().join("store.sqlite"), ..SqliteConfig::default() };
//!         async move { SqliteStore::open(&config, &cluster).await.unwrap() }
//!     }
//! });
//! ```
//!
//! A check panics with a message saying what broke. Backend-specific behaviour (several
//! OS processes on one SQLite file, damaged files) is tested next to the backend, not here.

#![allow(dead_code, clippy::missing_panics_doc)]

mod identify;
mod lease;
mod registry;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use identify::*;
pub use lease::*;
pub use registry::*;
use shardmesh_store::{Lease, LeaseGrant, Store};

/// Generates one `#[tokio::test]` per conformance check, each calling it with a fresh
/// evaluation of `$factory`. See the module documentation. An attribute written before
/// the factory (`#[ignore = "..."]`) goes on every generated test.
macro_rules! conformance_suite {
    (@one [$($attr:tt)*] $factory:expr; $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $($attr)*
        async fn $check() {
            $crate::conformance::$check($factory).await;
        }
    };
    (@checks $attrs:tt $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            $crate::conformance::conformance_suite!(@one $attrs $factory; $check);
        )+
    };
    (@all $attrs:tt $factory:expr) => {
        $crate::conformance::conformance_suite!(@checks $attrs $factory;
            one_winner_per_epoch_among_fifty_concurrent_acquirers,
            a_held_lease_cannot_be_taken,
            epoch_rises_across_expiry,
            stale_owner_cannot_renew_or_release,
            release_frees_the_key_for_the_next_epoch,
            state_saved_at_renew_reaches_the_owner_after_expiry,
            state_saved_at_release_reaches_the_next_owner,
            leases_are_listed_in_key_order,
            identify_grants_in_one_bucket_are_five_seconds_apart_under_contention,
            identify_buckets_do_not_block_each_other,
            identify_is_refused_when_the_budget_is_spent,
            identify_budget_refills_at_its_reset_time,
            identify_without_budget_is_paced_but_not_counted,
            first_spec_wins_and_a_different_one_is_refused,
            one_identity_per_cluster_whoever_asks_first,
            node_rows_expire,
            action_log_lists_newest_first_up_to_the_limit,
            clusters_do_not_see_each_other,
        );
    };
    (#[$attr:meta] $factory:expr) => {
        $crate::conformance::conformance_suite!(@all [#[$attr]] $factory);
    };
    ($factory:expr) => {
        $crate::conformance::conformance_suite!(@all [] $factory);
    };
}
pub(crate) use conformance_suite;

/// Opens a store handle bound to a cluster; any `Fn(String) -> impl Future<Output = S>`
/// is one.
pub trait OpenStore: Send + Sync + 'static {
    /// The backend under test.
    type Store: Store;

    /// A new handle on `cluster`.
    fn open(&self, cluster: String) -> impl Future<Output = Self::Store> + Send;
}

impl<F, Fut, S> OpenStore for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S> + Send,
    S: Store,
{
    type Store = S;

    fn open(&self, cluster: String) -> impl Future<Output = S> + Send {
        self(cluster)
    }
}

/// A lease long enough never to lapse during a check.
pub const LONG: Duration = Duration::from_secs(60);

/// A lease short enough to wait out; long enough that a store round trip fits in it.
pub const SHORT: Duration = Duration::from_millis(300);

/// How long a check waits for a condition (a lease lapsing, a row expiring) before it
/// fails: generous, because a loaded CI machine is slow, and a passing check returns as
/// soon as the condition holds.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A cluster name no other run or check uses, so checks can share a store (one SQLite
/// file, one keyspace) without seeing each other's rows.
pub fn unique_cluster(check: &str) -> String {
    shardmesh_harness::unique_name(check)
}

/// Opens a handle on a fresh cluster.
pub async fn fresh<O: OpenStore>(open: &O, check: &str) -> O::Store {
    open.open(unique_cluster(check)).await
}

/// Deletes the cluster a passing check used.
pub async fn clean_up(store: &impl Store) {
    store.delete_cluster().await.expect("delete_cluster");
}

/// Polls `probe` until it yields a value, failing the check after [`PATIENCE`].
pub async fn wait_until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    shardmesh_harness::eventually(what, PATIENCE, async || {
        probe().await.ok_or_else(|| "not yet".to_owned())
    })
    .await
}

/// The grant a freshly acquired lease gives its holder.
pub fn grant_of(lease: &Lease) -> LeaseGrant {
    LeaseGrant {
        key: lease.key.clone(),
        owner: lease.owner.clone().expect("an acquired lease has an owner"),
        epoch: lease.epoch,
    }
}

/// Now, to the millisecond: stores keep times to the millisecond, so values a check
/// writes and reads back compare equal.
pub fn now_ms() -> SystemTime {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    UNIX_EPOCH + Duration::from_millis(u64::try_from(since.as_millis()).expect("ms fit u64"))
}
