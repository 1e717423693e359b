//! The embedded store: one SQLite file in WAL mode, shared by every process on a host.

mod convert;
mod identify;
mod lease;
mod registry;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

use self::convert::Failure;
use crate::{
    Action, ClusterIdentity, ClusterSpec, Error, ErrorKind, IdentifyBudget, IdentifyGrant, Lease,
    LeaseGrant, LeaseKey, LeaseState, NodeRecord, SqliteConfig, Store,
};

/// The embedded store backend: one SQLite file in WAL mode.
///
/// Several processes on one host may open the same file: every conditional write is a
/// single statement or a `BEGIN IMMEDIATE` transaction, so SQLite's file lock makes it
/// atomic across processes. Rows are plain columns (times in Unix milliseconds, dedup
/// marks as JSON text), so `sqlite3 shardmesh.sqlite 'select * from leases'` shows the
/// state of the cluster.
///
/// Calls run on tokio's blocking pool, never on the runtime's worker threads. Times are
/// kept to the millisecond. Clones share one connection; open the file again for
/// another.
///
/// ```no_run
/// # async fn demo() -> Result<(), shardmesh_store::Error> {
/// use shardmesh_store::{SqliteConfig, SqliteStore, Store};
///
/// let store = SqliteStore::open(&SqliteConfig::default(), "default").await?;
/// println!("{} leases", store.leases().await?.len());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    cluster: Arc<str>,
    db: Arc<Db>,
}

/// The connection and the path that names it in errors.
struct Db {
    path: PathBuf,
    /// One connection per handle: SQLite admits one writer at a time anyway. A std
    /// `Mutex` is fine because it is only locked inside `spawn_blocking` closures and
    /// never held across an `.await`.
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("cluster", &self.cluster)
            .field("path", &self.db.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store file of `config` (creating it and its tables if absent) as a
    /// handle on `cluster`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unreachable`] when the file cannot be opened (missing directory,
    /// permission), with the OS reason; [`ErrorKind::Corrupt`] when it is damaged or is
    /// another program's database; [`ErrorKind::SchemaMismatch`] when its tables lack
    /// columns this build needs or were written by a newer schema. Each names the path.
    pub async fn open(config: &SqliteConfig, cluster: &str) -> Result<Self, Error> {
        let path = config
            .resolved_path()
            .map_err(|problem| Error::new(ErrorKind::Unreachable, problem))?;
        if config.path.starts_with("~")
            && let Some(directory) = path.parent()
        {
            // The default location: made on first use, as a user's state directory is.
            std::fs::create_dir_all(directory).map_err(|error| {
                Error::new(
                    ErrorKind::Unreachable,
                    format!(
                        "sqlite file {}: cannot create {}: {error}",
                        path.display(),
                        directory.display()
                    ),
                )
            })?;
        }
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let opened = tokio::task::spawn_blocking(move || {
            schema::open(&path, busy_timeout).map(|conn| (path, conn))
        })
        .await
        .map_err(|error| task_failed(&config.path, "open", error))?;
        let (path, conn) = opened?;
        tracing::debug!(path = %path.display(), cluster, "sqlite store opened");
        Ok(Self {
            cluster: cluster.into(),
            db: Arc::new(Db {
                path,
                conn: Mutex::new(conn),
            }),
        })
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// Runs `work` on the blocking pool with the connection; `op` names the operation
    /// in errors (`acquire shard/3`).
    async fn run<T, F>(&self, op: impl Into<String>, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, Failure> + Send + 'static,
    {
        let op = op.into();
        let op_name = op.clone();
        let db = Arc::clone(&self.db);
        let cluster = Arc::clone(&self.cluster);
        tokio::task::spawn_blocking(move || {
            // A panic inside `work` rolls back its transaction on unwind, so the
            // connection is sound even if the mutex was poisoned.
            let mut conn = db.conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn, &cluster).map_err(|failure| failure.into_error(&db.path, &op))
        })
        .await
        .map_err(|error| task_failed(&self.db.path, &op_name, error))?
    }
}

/// This host's name, so a SQLite path (meaningful on one host only) says which host's
/// file it is.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this host".into())
}

/// A blocking task that panicked (a bug) or was cancelled by a runtime shutting down.
fn task_failed(path: &Path, op: &str, error: tokio::task::JoinError) -> Error {
    let what = if error.is_panic() {
        "panicked"
    } else {
        "was cancelled"
    };
    Error::new(
        ErrorKind::Backend,
        format!("sqlite file {}: {op}: blocking task {what}", path.display()),
    )
    .with_source(error)
}

impl Store for SqliteStore {
    fn cluster(&self) -> &str {
        &self.cluster
    }

    async fn agree_spec(&self, proposed: ClusterSpec) -> Result<ClusterSpec, Error> {
        self.run("agree spec", move |conn, cluster| {
            registry::agree_spec(conn, cluster, proposed)
        })
        .await
    }

    async fn spec(&self) -> Result<Option<ClusterSpec>, Error> {
        self.run("read spec", |conn, cluster| registry::spec(conn, cluster))
            .await
    }

    async fn cluster_identity(&self) -> Result<ClusterIdentity, Error> {
        self.run("read cluster identity", |conn, cluster| {
            registry::cluster_identity(conn, cluster)
        })
        .await
    }

    fn location(&self) -> String {
        format!("sqlite file {} on {}", self.db.path.display(), host_name())
    }

    async fn acquire(
        &self,
        key: &LeaseKey,
        owner: &str,
        duration: Duration,
    ) -> Result<Option<Lease>, Error> {
        let (key, owner) = (key.clone(), owner.to_owned());
        self.run(format!("acquire {key}"), move |conn, cluster| {
            lease::acquire(conn, cluster, &key, &owner, duration)
        })
        .await
    }

    async fn renew(
        &self,
        grant: &LeaseGrant,
        duration: Duration,
        state: &LeaseState,
    ) -> Result<bool, Error> {
        let (grant, state) = (grant.clone(), state.clone());
        self.run(format!("renew {}", grant.key), move |conn, cluster| {
            lease::renew(conn, cluster, &grant, duration, &state)
        })
        .await
    }

    async fn release(&self, grant: &LeaseGrant, state: &LeaseState) -> Result<bool, Error> {
        let (grant, state) = (grant.clone(), state.clone());
        self.run(format!("release {}", grant.key), move |conn, cluster| {
            lease::release(conn, cluster, &grant, &state)
        })
        .await
    }

    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, Error> {
        let key = key.clone();
        self.run(format!("read lease {key}"), move |conn, cluster| {
            lease::lease(conn, cluster, &key)
        })
        .await
    }

    async fn leases(&self) -> Result<Vec<Lease>, Error> {
        self.run("list leases", |conn, cluster| lease::leases(conn, cluster))
            .await
    }

    async fn set_identify_budget(&self, budget: IdentifyBudget) -> Result<(), Error> {
        self.run("set identify budget", move |conn, cluster| {
            identify::set_budget(conn, cluster, budget)
        })
        .await
    }

    async fn identify_budget(&self) -> Result<Option<IdentifyBudget>, Error> {
        self.run("read identify budget", |conn, cluster| {
            identify::budget(conn, cluster)
        })
        .await
    }

    async fn grant_identify(&self, bucket: u32) -> Result<IdentifyGrant, Error> {
        self.run(
            format!("grant identify in bucket {bucket}"),
            move |conn, cluster| identify::grant(conn, cluster, bucket),
        )
        .await
    }

    async fn register_node(&self, node: &NodeRecord, ttl: Duration) -> Result<(), Error> {
        let node = node.clone();
        self.run(
            format!("register node {}", node.node),
            move |conn, cluster| registry::register_node(conn, cluster, &node, ttl),
        )
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, Error> {
        self.run("list nodes", |conn, cluster| registry::nodes(conn, cluster))
            .await
    }

    async fn log_action(&self, action: &Action) -> Result<(), Error> {
        let action = action.clone();
        self.run("log action", move |conn, cluster| {
            registry::log_action(conn, cluster, &action)
        })
        .await
    }

    async fn recent_actions(&self, limit: usize) -> Result<Vec<Action>, Error> {
        self.run("read actions", move |conn, cluster| {
            registry::recent_actions(conn, cluster, limit)
        })
        .await
    }

    async fn delete_cluster(&self) -> Result<(), Error> {
        self.run("delete cluster", |conn, cluster| {
            registry::delete_cluster(conn, cluster)
        })
        .await
    }
}
