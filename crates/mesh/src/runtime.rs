//! What every node does around its role's work, written once: serve `/health` `/ready`
//! `/metrics` from the first moment, wait for the store and the broker (retrying with
//! capped backoff, one WARN line per attempt), join the node bus, run the mesh loop,
//! and stop in the documented order.
//!
//! A role's runner (the gateway's, the consumer's) reads as: [`NodeRuntime::start`],
//! then, until [`NodeRuntime::crash_signal`]: [`NodeRuntime::open_store`], its own
//! set-up through [`NodeRuntime::broker_step`], [`NodeRuntime::join`],
//! [`NodeRuntime::set_probes`], [`NodeRuntime::run`], stop its own parts; then
//! [`NodeRuntime::finish`].
//!
//! [`NodeTask`] runs such a runner on its own task for tests, benchmarks and programs
//! holding several nodes: it watches the node's status, drains it, or ends it as a
//! crash would.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use shardmesh_broker::{Incoming, NodeBus, Topology};
use shardmesh_proto::{NodeRole, NodeState, StoreIdentity};
use shardmesh_store::{AnyStore, Backend, LeaseKey, Store as _};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::{NodeHttp, Probes};
use crate::keeper::LeaseHolder;
use crate::node::{MeshNode, NodeIdentity, NodeStatus, unix_ms};
use crate::{Error, MeshSettings};

/// One node's shared parts, from start-up to the last announcement.
pub struct NodeRuntime {
    settings: MeshSettings,
    role: NodeRole,
    group: Option<String>,
    node: String,
    http: NodeHttp,
    status_tx: watch::Sender<NodeStatus>,
    /// Cancelled last: the bus and the role's broker connections live until the drain's
    /// final announcement and confirms went out.
    links: CancellationToken,
    /// Cancelled by [`NodeTask::crash`]; never for a node nobody holds that way.
    crash: CancellationToken,
    bus: Option<NodeBus>,
    inbox: Option<mpsc::UnboundedReceiver<Incoming>>,
    /// The cluster as the store knows it, once [`NodeRuntime::open_store`] read it.
    store_identity: Option<StoreIdentity>,
}

impl NodeRuntime {
    /// Checks `settings`, picks the node id and serves the node's HTTP face (answering
    /// not-ready with the start-up step until [`NodeRuntime::set_probes`]). `group` is
    /// the consumer group of a consumer node. `stdout_is_data` moves the `listening on`
    /// line to stderr (a sink writes events to stdout). `controls` come from
    /// [`NodeTask::spawn`], or are [`NodeControls::default`] for a node nobody watches.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for settings that cannot be used, [`Error::Http`] when
    /// `node.http_bind` cannot be bound.
    pub async fn start(
        settings: MeshSettings,
        role: NodeRole,
        group: Option<String>,
        stdout_is_data: bool,
        controls: NodeControls,
    ) -> Result<Self, Error> {
        settings.validate()?;
        let node = settings.node.node_id();
        let http = NodeHttp::serve(&settings.node.http_bind, stdout_is_data).await?;
        tracing::info!(cluster = %settings.cluster.name, %node, ?role, "starting node");
        Ok(Self {
            settings,
            role,
            group,
            node,
            http,
            status_tx: controls.status,
            links: CancellationToken::new(),
            crash: controls.crash,
            bus: None,
            inbox: None,
            store_identity: None,
        })
    }

    /// The node id (fresh per process start unless `node.id` is set).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The settings the node started with.
    pub fn settings(&self) -> &MeshSettings {
        &self.settings
    }

    /// Where `/health`, `/ready` and `/metrics` are served, if anywhere.
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http.address()
    }

    /// The node's life-cycle state, updated by the mesh loop.
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.status_tx.subscribe()
    }

    /// A token cancelled after the node's last announcement: give it to the role's own
    /// broker connections (a publisher) so they outlive the drain.
    pub fn links(&self) -> CancellationToken {
        self.links.clone()
    }

    /// Cancelled when the node is to end as a crash would ([`NodeTask::crash`]). A
    /// runner runs its work with `crash_signal().run_until_cancelled_owned(work)` and
    /// hands the outcome to [`NodeRuntime::finish`]: `None` once crashed, the work
    /// dropped where it stood, having handed nothing over and announced no leaving.
    pub fn crash_signal(&self) -> CancellationToken {
        self.crash.clone()
    }

    /// Opens the cluster's store, waiting while a ScyllaDB store is unreachable, and
    /// reads the cluster's identity there (creating it for a new cluster), which the
    /// node announces.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store refuses for good, [`Error::Stopped`] when
    /// `shutdown` is cancelled first.
    pub async fn open_store(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Arc<AnyStore>, Error> {
        let store = &self.settings.store;
        let cluster = &self.settings.cluster.name;
        // A SQLite file that cannot be opened is a path or permission mistake, which
        // waiting does not fix; a ScyllaDB cluster may just not be up yet.
        let waits = store.backend == Backend::Scylla;
        let opened = self
            .retry(
                "opening the store",
                shutdown,
                |error: &shardmesh_store::Error| waits && error.is_retryable(),
                || shardmesh_store::open(store, cluster),
            )
            .await
            .map_err(|outcome| outcome.into_error(|step, source| Error::Store { step, source }))?;
        let identity = self
            .retry(
                "reading the cluster's identity",
                shutdown,
                |error: &shardmesh_store::Error| error.is_retryable(),
                || opened.cluster_identity(),
            )
            .await
            .map_err(|outcome| outcome.into_error(|step, source| Error::Store { step, source }))?;
        let location = opened.location();
        tracing::info!(store = %location, cluster_id = %identity.id, "store opened");
        self.store_identity = Some(StoreIdentity {
            cluster_id: identity.id,
            created_at_ms: unix_ms(identity.created_at),
            location,
        });
        Ok(Arc::new(opened))
    }

    /// The partition count of the cluster: the recorded one, or the configured one
    /// while no gateway node has recorded a spec (the first one proposes the same).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store cannot be read.
    pub async fn partitions(&self, store: &AnyStore) -> Result<u32, Error> {
        let configured = self.settings.cluster.partitions;
        let recorded = store.spec().await.map_err(|source| Error::Store {
            step: "reading the cluster spec".into(),
            source,
        })?;
        Ok(match recorded {
            Some(spec) if spec.partitions != configured => {
                tracing::warn!(
                    recorded = spec.partitions,
                    configured,
                    "cluster.partitions differs from the cluster's; using the cluster's"
                );
                spec.partitions
            }
            Some(spec) => spec.partitions,
            None => configured,
        })
    }

    /// Declares `topology` and joins the node bus, waiting while the broker is
    /// unreachable.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] when the broker refuses for good, [`Error::Stopped`] when
    /// `shutdown` is cancelled first.
    pub async fn join(
        &mut self,
        topology: &Topology,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let broker = self.settings.broker.clone();
        let declaring = format!("declaring the streams on {}", broker.url);
        self.broker_step(&declaring, shutdown, || topology.declare(&broker))
            .await?;
        let (node, links) = (self.node.clone(), self.links.clone());
        let (bus, inbox) = self
            .broker_step("joining the node bus", shutdown, || {
                NodeBus::connect(&broker, topology, &node, links.clone())
            })
            .await?;
        self.bus = Some(bus);
        self.inbox = Some(inbox);
        Ok(())
    }

    /// Runs `attempt`, a step that needs the broker, until it succeeds, waiting while
    /// the broker is unreachable.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] when the broker refuses for good, [`Error::Stopped`] when
    /// `shutdown` is cancelled first.
    pub async fn broker_step<T, F, Fut>(
        &self,
        step: &str,
        shutdown: &CancellationToken,
        attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, shardmesh_broker::Error>>,
    {
        self.retry(
            step,
            shutdown,
            shardmesh_broker::Error::is_retryable,
            attempt,
        )
        .await
        .map_err(|outcome| outcome.into_error(|step, source| Error::Broker { step, source }))
    }

    /// Runs `attempt` until it succeeds or fails with an error `retryable` refuses,
    /// waiting the broker's backoff between attempts and logging each failure once.
    async fn retry<T, E, F, Fut>(
        &self,
        step: &str,
        shutdown: &CancellationToken,
        retryable: impl Fn(&E) -> bool,
        mut attempt: F,
    ) -> Result<T, Failed<E>>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let backoff = self.settings.broker.backoff();
        self.http.starting(step);
        for failures in 0_u32.. {
            let result = tokio::select! {
                () = shutdown.cancelled() => return Err(Failed::Stopped),
                result = attempt() => result,
            };
            match result {
                Ok(value) => return Ok(value),
                Err(error) if retryable(&error) => {
                    let wait = backoff.next_delay(failures);
                    tracing::warn!(
                        %error,
                        attempt = failures + 1,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "{step}: not reachable yet, retrying"
                    );
                    self.http
                        .starting(format!("{step} (attempt {} failed: {error})", failures + 1));
                    tokio::select! {
                        () = shutdown.cancelled() => return Err(Failed::Stopped),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(error) => return Err(Failed::Refused(step.to_owned(), error)),
            }
        }
        unreachable!("the attempt counter does not run out")
    }

    /// Says what the node is doing while it starts (the `/ready` body until
    /// [`NodeRuntime::set_probes`]).
    pub fn starting(&self, step: &str) {
        self.http.starting(step);
    }

    /// From now on `/ready` and `/metrics` answer from the role's `probes`.
    pub fn set_probes(&self, probes: Probes) {
        self.http.set_probes(probes);
    }

    /// Runs the mesh loop with `holder` owning `keys` until `drain` is cancelled,
    /// `failure` resolves, or the node learns that it runs on another store than the
    /// cluster's live nodes; then drains (every lease handed over, a `leaving`
    /// announcement sent) and returns why it ended, if not by `drain`.
    ///
    /// # Panics
    ///
    /// If called before [`NodeRuntime::join`].
    pub async fn run<H: LeaseHolder, T>(
        &mut self,
        store: Arc<AnyStore>,
        keys: Vec<LeaseKey>,
        holder: H,
        drain: CancellationToken,
        failure: impl Future<Output = T>,
    ) -> Option<Ended<T>> {
        let (Some(bus), Some(inbox)) = (&self.bus, self.inbox.take()) else {
            panic!("NodeRuntime::run before NodeRuntime::join");
        };
        let Some(store_identity) = self.store_identity.clone() else {
            panic!("NodeRuntime::run before NodeRuntime::open_store");
        };
        let mesh_node = MeshNode {
            identity: NodeIdentity {
                node: self.node.clone(),
                role: self.role,
                group: self.group.clone(),
                capacity: self.settings.node.capacity,
                address: self.http.address().map(|address| address.to_string()),
            },
            keys,
            store,
            store_identity,
            holder,
            lease: self.settings.lease.clone(),
            membership: self.settings.membership.clone(),
        };
        let meshing = crate::run(mesh_node, bus, inbox, &self.status_tx, drain.clone());
        tokio::pin!(meshing);
        tokio::pin!(failure);
        tokio::select! {
            meshed = &mut meshing => meshed.err().map(Ended::Refused),
            failed = &mut failure => {
                drain.cancel();
                match meshing.await {
                    Ok(()) => Some(Ended::Failed(failed)),
                    Err(refused) => Some(Ended::Refused(refused)),
                }
            }
        }
    }

    /// Ends the node after its role's work: `served` is what the work returned, `None`
    /// when it was cut short by [`NodeRuntime::crash_signal`].
    ///
    /// After the work, what every node shares stops in order: the node bus (after the
    /// last announcement), the role's broker connections, then the HTTP face. After a
    /// crash the bus and the role's connections are dropped at once and nothing more is
    /// sent; the leases are left to expire. A stop while starting (an error `stopped`
    /// recognises as [`Error::Stopped`]) is a clean stop, `Ok`.
    ///
    /// # Errors
    ///
    /// What the work returned, but a stop while starting.
    pub async fn finish<E>(
        mut self,
        served: Option<Result<(), E>>,
        stopped: impl FnOnce(&E) -> bool,
    ) -> Result<(), E> {
        let bus = self.bus.take();
        if served.is_none() {
            tracing::warn!(node = %self.node, "node crashed: nothing handed over");
            drop(bus);
        } else if let Some(bus) = bus {
            bus.shutdown().await;
        }
        self.links.cancel();
        self.http.close().await;
        match served {
            Some(Err(error)) if stopped(&error) => {
                tracing::info!("stopped before the node was ready");
                Ok(())
            }
            Some(outcome) => outcome,
            None => Ok(()),
        }
    }
}

/// Why [`NodeRuntime::run`] ended before its drain was asked for.
#[derive(Debug)]
pub enum Ended<T> {
    /// The role's `failure` future resolved, with this.
    Failed(T),
    /// The node runs on another store than the cluster's live nodes
    /// ([`Error::ForeignStore`]): it took no work, or handed back what it took.
    Refused(Error),
}

/// What a node's owner hands its runner, for [`NodeRuntime::start`]: the status channel
/// the owner watches and the owner's signal to end the node as a crash would.
/// [`NodeControls::default`] is for a node nobody holds ([`NodeTask`] makes its own).
pub struct NodeControls {
    status: watch::Sender<NodeStatus>,
    crash: CancellationToken,
}

impl Default for NodeControls {
    fn default() -> Self {
        Self {
            status: watch::Sender::new(NodeStatus {
                state: NodeState::Starting,
                owns: Vec::new(),
                peers: 0,
            }),
            crash: CancellationToken::new(),
        }
    }
}

/// A node runner on its own task, as a test, a benchmark or a program holding several
/// nodes keeps it: the node's status, a drain, and a crash. The role crates wrap it in
/// their own handles (with the role's observations); a runner built on
/// [`NodeRuntime`] needs nothing else to be held this way. Dropped, it leaves the node
/// running.
pub struct NodeTask<E> {
    status: watch::Receiver<NodeStatus>,
    drain: CancellationToken,
    crash: CancellationToken,
    /// `None` once the runner's outcome was taken.
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E: Send + 'static> NodeTask<E> {
    /// Spawns `runner` on the tokio runtime with the [`NodeControls`] it must give
    /// [`NodeRuntime::start`] and its drain token (a child of `shutdown`: cancelling
    /// either drains the node).
    pub fn spawn<F>(
        shutdown: &CancellationToken,
        runner: impl FnOnce(NodeControls, CancellationToken) -> F,
    ) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let controls = NodeControls::default();
        let status = controls.status.subscribe();
        let crash = controls.crash.clone();
        let drain = shutdown.child_token();
        let task = tokio::spawn(runner(controls, drain.clone()));
        Self {
            status,
            drain,
            crash,
            task: Some(task),
        }
    }

    /// The node's life-cycle state and what it owns, updated by its mesh loop.
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Drains the node (every lease handed over, a leaving announcement sent, its parts
    /// stopped in order) and returns the runner's outcome; `Ok` when it was taken
    /// before.
    ///
    /// # Errors
    ///
    /// What the runner returned.
    ///
    /// # Panics
    ///
    /// With the runner's panic, or if its task was cancelled (the tokio runtime shut
    /// down).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the node goes on draining; call `stop` again, or
    /// [`NodeTask::crash`], to wait for it.
    pub async fn stop(&mut self) -> Result<(), E> {
        self.drain.cancel();
        self.join().await
    }

    /// Ends the node as a crash would: its work is dropped where it stood (no
    /// hand-over, no leaving announcement), its broker connections are dropped and its
    /// leases are left to expire. Returns once the runner has ended.
    ///
    /// # Panics
    ///
    /// As [`NodeTask::stop`].
    pub async fn crash(mut self) {
        self.crash.cancel();
        // A crashed node's outcome says nothing: the crash cut it short.
        let _ = self.join().await;
    }

    async fn join(&mut self) -> Result<(), E> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let ended = task.await;
        self.task = None;
        match ended {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("the node's task ended without an outcome: {error}"),
        }
    }
}

/// Why a retried step ended without a value.
enum Failed<E> {
    Stopped,
    Refused(String, E),
}

impl<E> Failed<E> {
    fn into_error(self, refused: impl FnOnce(String, E) -> Error) -> Error {
        match self {
            Self::Stopped => Error::Stopped,
            Self::Refused(step, error) => refused(step, error),
        }
    }
}
