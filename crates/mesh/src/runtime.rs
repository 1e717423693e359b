//! What every node does around its role's work, written once: serve `/health` `/ready`
//! `/metrics` from the first moment, wait for the store and the broker (retrying with
//! capped backoff, one WARN line per attempt), join the node bus, run the mesh loop,
//! and stop in the documented order.
//!
//! A role's runner (the gateway's, the consumer's) reads as: [`NodeRuntime::start`],
//! [`NodeRuntime::open_store`], its own set-up through [`NodeRuntime::retry`],
//! [`NodeRuntime::join`], [`NodeRuntime::set_probes`], [`NodeRuntime::run`], stop its
//! own parts, [`NodeRuntime::close`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use shardmesh_broker::{Incoming, NodeBus, Topology};
use shardmesh_proto::{NodeRole, NodeState};
use shardmesh_store::{AnyStore, Backend, LeaseKey, Store as _};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::http::{NodeHttp, Probes};
use crate::keeper::LeaseHolder;
use crate::node::{MeshNode, NodeIdentity, NodeStatus};
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
    bus: Option<NodeBus>,
    inbox: Option<mpsc::UnboundedReceiver<Incoming>>,
}

impl NodeRuntime {
    /// Checks `settings`, picks the node id and serves the node's HTTP face (answering
    /// not-ready with the start-up step until [`NodeRuntime::set_probes`]). `group` is
    /// the consumer group of a consumer node. `stdout_is_data` moves the `listening on`
    /// line to stderr (a sink writes events to stdout).
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
    ) -> Result<Self, Error> {
        settings.validate()?;
        let node = settings.node.node_id();
        let http = NodeHttp::serve(&settings.node.http_bind, stdout_is_data).await?;
        let (status_tx, _) = watch::channel(NodeStatus {
            state: NodeState::Starting,
            owns: Vec::new(),
            peers: 0,
        });
        tracing::info!(cluster = %settings.cluster.name, %node, ?role, "starting node");
        Ok(Self {
            settings,
            role,
            group,
            node,
            http,
            status_tx,
            links: CancellationToken::new(),
            bus: None,
            inbox: None,
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

    /// Opens the cluster's store, waiting while a ScyllaDB store is unreachable.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store refuses for good, [`Error::Stopped`] when
    /// `shutdown` is cancelled first.
    pub async fn open_store(&self, shutdown: &CancellationToken) -> Result<Arc<AnyStore>, Error> {
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

    /// Runs the mesh loop with `holder` owning `keys` until `drain` is cancelled or
    /// `failure` resolves; then drains (every lease handed over, a `leaving`
    /// announcement sent) and returns what `failure` gave, if it ended first.
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
    ) -> Option<T> {
        let (Some(bus), Some(inbox)) = (&self.bus, self.inbox.take()) else {
            panic!("NodeRuntime::run before NodeRuntime::join");
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
            holder,
            lease: self.settings.lease.clone(),
            membership: self.settings.membership.clone(),
        };
        let meshing = crate::run(mesh_node, bus, inbox, &self.status_tx, drain.clone());
        tokio::pin!(meshing);
        tokio::pin!(failure);
        tokio::select! {
            () = &mut meshing => None,
            failed = &mut failure => {
                drain.cancel();
                meshing.await;
                Some(failed)
            }
        }
    }

    /// Stops what every node shares, in order: the node bus (after the last
    /// announcement), the role's broker connections, then the HTTP face.
    pub async fn close(mut self) {
        if let Some(bus) = self.bus.take() {
            bus.shutdown().await;
        }
        self.links.cancel();
        self.http.close().await;
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
