//! A whole gateway node: the settings it reads, [`run`], which joins the mesh, holds
//! the shards the assignment gives it, publishes their events, and when `shutdown` is
//! cancelled hands every shard over by RESUME before it returns, and [`GatewayNode`],
//! the same node on its own task for tests, benchmarks and programs holding several.

use std::sync::{Arc, OnceLock};

use shardmesh_broker::{CommandInbox, Publisher, Topology};
use shardmesh_mesh::{
    Ended, LeaseHolder, NodeControls, NodeRuntime, NodeStatus, NodeTask, Probes, RoleSection,
    RoleSettings,
};
use shardmesh_proto::{InvalidConfig, NodeRole, NodeState};
use shardmesh_store::{AnyStore, LeaseKey};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    Error, GatewayConfig, GatewayCounters, GatewayShards, PublishLoop, ShardPhase, ShardStatus,
    budget, cluster_spec, metrics,
};

/// Everything a gateway node reads at start-up: the shared sections and `[gateway]`
/// (in [`RoleSettings::role`]).
pub type GatewaySettings = RoleSettings<GatewayConfig>;

impl RoleSection for GatewayConfig {
    const SECTION: &'static str = "gateway";

    fn validate(&self) -> Result<(), InvalidConfig> {
        GatewayConfig::validate(self)
    }
}

/// Runs a gateway node until `shutdown` is cancelled (then every shard is handed over by
/// RESUME first) or publishing fails for good (then too, and the failure is returned).
///
/// While the store or the broker cannot be reached the node waits, logging one WARN per
/// attempt, and `/ready` says what it waits for.
///
/// # Errors
///
/// Settings that cannot be used, a store or broker that refuses for good, a shard
/// count that must come from Discord when Discord cannot be asked, or publishing that
/// failed for good. Cancelling `shutdown` while starting is a clean stop, not an error.
pub async fn run(settings: GatewaySettings, shutdown: CancellationToken) -> Result<(), Error> {
    let shards = OnceLock::new();
    let controls = NodeControls::default();
    // Boxed: the whole node's state machine is too large for the caller's stack frame.
    Box::pin(drive(settings, shutdown, controls, &shards, |shards| {
        shards
    }))
    .await
}

/// A gateway node running on its own task, as [`run`] runs it: a test, a benchmark or a
/// program holding several nodes starts it, watches its shards, and drains or crashes
/// it. Dropped, it leaves the node running.
pub struct GatewayNode {
    task: NodeTask<Error>,
    /// Set once the cluster spec is agreed and the shards exist.
    shards: Arc<OnceLock<GatewayShards<AnyStore>>>,
}

impl GatewayNode {
    /// Starts a gateway node on its own task; cancelling `shutdown` (or
    /// [`GatewayNode::stop`]) drains it.
    pub fn spawn(settings: GatewaySettings, shutdown: &CancellationToken) -> Self {
        Self::spawn_with_holder(settings, shutdown, |shards| shards)
    }

    /// Like [`GatewayNode::spawn`], with the mesh driving the lease holder `holder`
    /// builds around the node's shards: a wrapper that times or logs the hand-overs.
    pub fn spawn_with_holder<H: LeaseHolder + 'static>(
        settings: GatewaySettings,
        shutdown: &CancellationToken,
        holder: impl FnOnce(GatewayShards<AnyStore>) -> H + Send + 'static,
    ) -> Self {
        let shards = Arc::new(OnceLock::new());
        let slot = Arc::clone(&shards);
        let task = NodeTask::spawn(shutdown, move |controls, drain| async move {
            drive(settings, drain, controls, &slot, holder).await
        });
        Self { task, shards }
    }

    /// The node's life-cycle state and the shard leases it holds.
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.task.status()
    }

    /// The shards the node runs now, by shard id; empty until it started.
    pub fn shards(&self) -> Vec<ShardStatus> {
        self.shards
            .get()
            .map(GatewayShards::statuses)
            .unwrap_or_default()
    }

    /// The node's counters since start; zero until it started.
    pub fn counters(&self) -> GatewayCounters {
        self.shards
            .get()
            .map(GatewayShards::counters)
            .unwrap_or_default()
    }

    /// Drains the node (every shard handed over by RESUME, the publisher's confirms
    /// awaited) and returns how the node ended; see [`NodeTask::stop`].
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

    /// Ends the node as a crash would: no hand-over, no leaving announcement, its
    /// shards' connections and its broker connections dropped, its leases left to
    /// expire (Discord keeps the sessions resumable). Returns once its shards stopped.
    ///
    /// # Panics
    ///
    /// As [`NodeTask::crash`].
    pub async fn crash(self) {
        self.task.crash().await;
    }
}

/// The one wiring of a gateway node, for [`run`] and [`GatewayNode`]: the shards go into
/// `slot` once they exist, and the mesh drives `holder(shards)`.
async fn drive<H: LeaseHolder>(
    settings: GatewaySettings,
    shutdown: CancellationToken,
    controls: NodeControls,
    slot: &OnceLock<GatewayShards<AnyStore>>,
    holder: impl FnOnce(GatewayShards<AnyStore>) -> H,
) -> Result<(), Error> {
    let RoleSettings {
        mesh,
        role: gateway,
    } = settings;
    gateway.validate()?;
    let mut runtime = NodeRuntime::start(mesh, NodeRole::Gateway, None, false, controls).await?;
    // Cancelled after the drain: stops the publish loop and any shard still running.
    let stop = CancellationToken::new();
    let served = runtime
        .crash_signal()
        .run_until_cancelled_owned(serve(&mut runtime, gateway, &shutdown, &stop, slot, holder))
        .await;
    let crashed = served.is_none();
    let ended = runtime
        .finish(served, |error| {
            matches!(error, Error::Node(shardmesh_mesh::Error::Stopped))
        })
        .await;
    if crashed {
        // The shards stop with the process, each where it stood.
        stop.cancel();
        if let Some(shards) = slot.get() {
            shards.stopped().await;
        }
    }
    ended
}

async fn serve<H: LeaseHolder>(
    runtime: &mut NodeRuntime,
    gateway: GatewayConfig,
    shutdown: &CancellationToken,
    stop: &CancellationToken,
    slot: &OnceLock<GatewayShards<AnyStore>>,
    holder: impl FnOnce(GatewayShards<AnyStore>) -> H,
) -> Result<(), Error> {
    let store = runtime.open_store(shutdown).await?;
    runtime.starting("agreeing the cluster spec (GET /gateway/bot)");
    let spec = cluster_spec::settle(store.as_ref(), &runtime.settings().cluster, &gateway).await?;
    tracing::info!(
        shards = spec.shard_count,
        partitions = spec.partitions,
        max_concurrency = spec.max_concurrency,
        "cluster spec agreed"
    );
    let broker = runtime.settings().broker.clone();
    let topology = Topology::new(&runtime.settings().cluster.name, spec.partitions, &broker)
        .map_err(|source| broker_error("the broker topology", source))?;
    runtime.join(&topology, shutdown).await?;
    let links = runtime.links();
    let publisher = runtime
        .broker_step("connecting the publisher", shutdown, || {
            Publisher::connect(&broker, &topology, links.clone())
        })
        .await?;
    let node = runtime.node().to_owned();
    let (publish_loop, publish) = PublishLoop::new(publisher, &node, spec.partitions, &gateway);

    let inbox = CommandInbox::new(&broker, &topology, links.clone());
    let shards = GatewayShards::new(
        gateway,
        spec,
        &node,
        Arc::clone(&store),
        publish,
        inbox,
        stop.clone(),
    );
    let shards = slot.get_or_init(|| shards).clone();
    runtime.set_probes(Probes {
        ready: ready_check(shards.clone(), runtime.status()),
        registry: metrics::registry(
            shards.clone(),
            runtime.status(),
            budget::watch(Arc::clone(&store), stop.clone()),
        ),
    });
    let keys = (0..spec.shard_count).map(LeaseKey::Shard).collect();
    let mut publishing = tokio::spawn(publish_loop.run(stop.clone()));
    let failed = runtime
        .run(
            store,
            keys,
            holder(shards.clone()),
            shutdown.child_token(),
            async {
                let ended = (&mut publishing).await;
                tracing::error!("publishing stopped; handing every shard over");
                ended
            },
        )
        .await;
    tracing::info!("every shard handed over");
    stop.cancel();
    let (published, refused) = match failed {
        Some(Ended::Failed(ended)) => (ended, None),
        Some(Ended::Refused(refusal)) => (publishing.await, Some(refusal)),
        None => (publishing.await, None),
    };
    shards.stopped().await;
    if let Some(refusal) = refused {
        return Err(Error::Node(refusal));
    }
    match published {
        Ok(Ok(())) => {
            tracing::info!("gateway node stopped");
            Ok(())
        }
        Ok(Err(error)) => Err(error),
        Err(panicked) => Err(Error::PublishPanicked(panicked.to_string())),
    }
}

fn broker_error(step: &str, source: shardmesh_broker::Error) -> Error {
    Error::Node(shardmesh_mesh::Error::Broker {
        step: step.to_owned(),
        source,
    })
}

/// Ready once the node is in the mesh and every shard it holds is connected.
fn ready_check(
    shards: GatewayShards<AnyStore>,
    status: watch::Receiver<NodeStatus>,
) -> shardmesh_mesh::ReadyCheck {
    Box::new(move || {
        let state = status.borrow().state;
        if state != NodeState::Ready {
            return Err(format!("node is {state:?}"));
        }
        let waiting: Vec<String> = shards
            .statuses()
            .into_iter()
            .filter(|shard| shard.phase != ShardPhase::Active)
            .map(|shard| format!("shard {} {}", shard.shard, metrics::phase_name(shard.phase)))
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join(", "))
        }
    })
}
