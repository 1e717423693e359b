//! A whole consumer node: the settings it reads, [`run`], which joins the group's
//! share of the partitions, hands every event to the bot's [`Handler`], and when
//! `shutdown` is cancelled hands its partitions over with a final checkpoint, and
//! [`ConsumerNode`], the same node on its own task for tests, benchmarks and programs
//! holding several.

use std::sync::{Arc, OnceLock};

use shardmesh_broker::Topology;
use shardmesh_mesh::{
    Ended, LeaseHolder, NodeControls, NodeRuntime, NodeStatus, NodeTask, Probes, RoleSection,
    RoleSettings,
};
use shardmesh_proto::{InvalidConfig, NodeRole, NodeState};
use shardmesh_store::AnyStore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::command_api::{ApiSetup, CommandApi};
use crate::{
    ConsumerConfig, ConsumerCounters, ConsumerPartitions, ConsumerSetup, Error, Handler, metrics,
};

/// Everything a consumer node reads at start-up: the shared sections and `[consumer]`
/// (in [`RoleSettings::role`]).
pub type ConsumerSettings = RoleSettings<ConsumerConfig>;

impl RoleSection for ConsumerConfig {
    const SECTION: &'static str = "consumer";

    fn validate(&self) -> Result<(), InvalidConfig> {
        ConsumerConfig::validate(self)
    }
}

/// The partitions of a node, once they exist.
type Slot<H> = OnceLock<ConsumerPartitions<AnyStore, H>>;

/// Runs a consumer node with `handler` until `shutdown` is cancelled; then every
/// partition is handed over with a final checkpoint (the event in flight finishes
/// first), so the group's next owner repeats nothing.
///
/// While the store or the broker cannot be reached the node waits, logging one WARN per
/// attempt, and `/ready` says what it waits for.
///
/// # Errors
///
/// Settings that cannot be used, or a store or broker that refuses for good.
/// Cancelling `shutdown` while starting is a clean stop, not an error.
pub async fn run<H: Handler>(
    settings: ConsumerSettings,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let partitions = OnceLock::new();
    let controls = NodeControls::default();
    // Boxed: the whole node's state machine is too large for the caller's stack frame.
    Box::pin(drive(
        settings,
        handler,
        shutdown,
        controls,
        &partitions,
        |partitions| partitions,
    ))
    .await
}

/// A consumer node running on its own task, as [`run`] runs it: a test, a benchmark or
/// a program holding several nodes starts it, watches its partitions and counters, and
/// drains or crashes it. Dropped, it leaves the node running.
pub struct ConsumerNode<H> {
    task: NodeTask<Error>,
    /// Set once the topology is declared and the partitions exist.
    partitions: Arc<Slot<H>>,
}

impl<H: Handler> ConsumerNode<H> {
    /// Starts a consumer node with `handler` on its own task; cancelling `shutdown` (or
    /// [`ConsumerNode::stop`]) drains it.
    pub fn spawn(settings: ConsumerSettings, handler: H, shutdown: &CancellationToken) -> Self {
        Self::spawn_with_holder(settings, handler, shutdown, |partitions| partitions)
    }

    /// Like [`ConsumerNode::spawn`], with the mesh driving the lease holder `holder`
    /// builds around the node's partitions: a wrapper that times or logs take-overs.
    pub fn spawn_with_holder<L: LeaseHolder + 'static>(
        settings: ConsumerSettings,
        handler: H,
        shutdown: &CancellationToken,
        holder: impl FnOnce(ConsumerPartitions<AnyStore, H>) -> L + Send + 'static,
    ) -> Self {
        let partitions = Arc::new(OnceLock::new());
        let slot = Arc::clone(&partitions);
        let task = NodeTask::spawn(shutdown, move |controls, drain| async move {
            drive(settings, handler, drain, controls, &slot, holder).await
        });
        Self { task, partitions }
    }

    /// The node's life-cycle state and the partition leases it holds.
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.task.status()
    }

    /// The partitions the node reads now, ascending; empty until it started.
    pub fn partitions(&self) -> Vec<u32> {
        self.partitions
            .get()
            .map(ConsumerPartitions::partitions)
            .unwrap_or_default()
    }

    /// The node's counters since start; zero until it started.
    pub fn counters(&self) -> ConsumerCounters {
        self.partitions
            .get()
            .map(ConsumerPartitions::counters)
            .unwrap_or_default()
    }

    /// Drains the node (every partition handed over with a final checkpoint) and
    /// returns how the node ended; see [`NodeTask::stop`].
    ///
    /// # Errors
    ///
    /// As [`run`].
    ///
    /// # Panics
    ///
    /// As [`NodeTask::stop`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the node goes on draining; stop or crash it again.
    pub async fn stop(&mut self) -> Result<(), Error> {
        self.task.stop().await
    }

    /// Ends the node as a crash would: no hand-over, no leaving announcement, the
    /// handler calls in flight dropped, its broker connections dropped, its leases left
    /// to expire (the next owner reads on from the last checkpoint). Returns once its
    /// partitions stopped.
    ///
    /// # Panics
    ///
    /// As [`NodeTask::crash`].
    pub async fn crash(self) {
        self.task.crash().await;
    }
}

/// The one wiring of a consumer node, for [`run`] and [`ConsumerNode`]: the partitions
/// go into `slot` once they exist, and the mesh drives `holder(partitions)`.
async fn drive<H: Handler, L: LeaseHolder>(
    settings: ConsumerSettings,
    handler: H,
    shutdown: CancellationToken,
    controls: NodeControls,
    slot: &Slot<H>,
    holder: impl FnOnce(ConsumerPartitions<AnyStore, H>) -> L,
) -> Result<(), Error> {
    let RoleSettings {
        mesh,
        role: consumer,
    } = settings;
    consumer.validate()?;
    let group = consumer.group.clone();
    let stdout_is_data = handler.writes_stdout();
    let mut runtime = NodeRuntime::start(
        mesh,
        NodeRole::Consumer,
        Some(group),
        stdout_is_data,
        controls,
    )
    .await?;
    // Cancelled after the drain: stops any partition still running.
    let stop = CancellationToken::new();
    let served = runtime
        .crash_signal()
        .run_until_cancelled_owned(serve(
            &mut runtime,
            consumer,
            handler,
            holder,
            &shutdown,
            &stop,
            slot,
        ))
        .await;
    let crashed = served.is_none();
    let ended = runtime
        .finish(served, |error| {
            matches!(error, Error::Node(shardmesh_mesh::Error::Stopped))
        })
        .await;
    if crashed {
        // The partitions stop with the process, mid-event.
        stop.cancel();
        if let Some(partitions) = slot.get() {
            partitions.stopped().await;
        }
    }
    ended
}

async fn serve<H: Handler, L: LeaseHolder>(
    runtime: &mut NodeRuntime,
    consumer: ConsumerConfig,
    handler: H,
    holder: impl FnOnce(ConsumerPartitions<AnyStore, H>) -> L,
    shutdown: &CancellationToken,
    stop: &CancellationToken,
    slot: &Slot<H>,
) -> Result<(), Error> {
    let store = runtime.open_store(shutdown).await?;
    let partitions = runtime.partitions(&store).await?;
    let settings = runtime.settings().clone();
    let topology = Topology::new(&settings.cluster.name, partitions, &settings.broker)
        .map_err(|source| shardmesh_mesh::Error::Broker {
            step: "the broker topology".into(),
            source,
        })?
        .with_dead_letters(&consumer.group);
    runtime.join(&topology, shutdown).await?;
    let command_api = if consumer.commands_bind.is_empty() {
        None
    } else {
        let setup = ApiSetup {
            broker: settings.broker.clone(),
            cluster: settings.cluster.name.clone(),
            node: runtime.node().to_owned(),
            store: store.clone(),
            token: consumer.commands_token.clone(),
        };
        let api = CommandApi::serve(&consumer.commands_bind, setup, runtime.links())
            .await
            .map_err(|source| Error::CommandApi {
                bind: consumer.commands_bind.clone(),
                source,
            })?;
        eprintln!("commands on http://{}", api.address());
        Some(api)
    };

    let partitions = ConsumerPartitions::new(
        ConsumerSetup {
            config: consumer,
            broker: settings.broker,
            topology,
            node: runtime.node().to_owned(),
            store: store.clone(),
            lease: settings.lease,
            handler,
        },
        stop.clone(),
    )?;
    let partitions = slot.get_or_init(|| partitions).clone();
    let status = runtime.status();
    runtime.set_probes(Probes {
        ready: Box::new(move || match status.borrow().state {
            NodeState::Ready => Ok(()),
            state => Err(format!("node is {state:?}")),
        }),
        registry: metrics::registry(partitions.clone(), runtime.status()),
    });
    let keys = partitions.keys();
    let ended = runtime
        .run(
            store,
            keys,
            holder(partitions.clone()),
            shutdown.child_token(),
            std::future::pending::<()>(),
        )
        .await;
    tracing::info!("every partition handed over");
    if let Some(api) = command_api {
        api.close().await;
    }
    stop.cancel();
    partitions.stopped().await;
    tracing::info!(counters = ?partitions.counters(), "consumer node stopped");
    match ended {
        Some(Ended::Refused(refusal)) => Err(Error::Node(refusal)),
        Some(Ended::Failed(())) | None => Ok(()),
    }
}
