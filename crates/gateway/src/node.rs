//! A whole gateway node: the settings it reads and [`run`], which joins the mesh, holds
//! the shards the assignment gives it, publishes their events, and when `shutdown` is
//! cancelled hands every shard over by RESUME before it returns.

use std::sync::Arc;

use shardmesh_broker::{Publisher, Topology};
use shardmesh_mesh::{NodeRuntime, NodeStatus, Probes, RoleSection, RoleSettings};
use shardmesh_proto::{InvalidConfig, NodeRole, NodeState};
use shardmesh_store::{AnyStore, LeaseKey};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Error, GatewayConfig, GatewayShards, PublishLoop, ShardPhase, cluster_spec, metrics};

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
    let RoleSettings {
        mesh,
        role: gateway,
    } = settings;
    gateway.validate()?;
    let mut runtime = NodeRuntime::start(mesh, NodeRole::Gateway, None, false).await?;
    let started = serve(&mut runtime, gateway, &shutdown).await;
    runtime.close().await;
    match started {
        Err(Error::Node(shardmesh_mesh::Error::Stopped)) => {
            tracing::info!("stopped before the node was ready");
            Ok(())
        }
        outcome => outcome,
    }
}

async fn serve(
    runtime: &mut NodeRuntime,
    gateway: GatewayConfig,
    shutdown: &CancellationToken,
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

    // Cancelled after the drain: stops the publish loop and any shard still running.
    let stop = CancellationToken::new();
    let shards = GatewayShards::new(
        gateway,
        spec,
        &node,
        Arc::clone(&store),
        publish,
        stop.clone(),
    );
    runtime.set_probes(Probes {
        ready: ready_check(shards.clone(), runtime.status()),
        registry: metrics::registry(shards.clone(), runtime.status()),
    });
    let keys = (0..spec.shard_count).map(LeaseKey::Shard).collect();
    let mut publishing = tokio::spawn(publish_loop.run(stop.clone()));
    let failed = runtime
        .run(store, keys, shards.clone(), shutdown.child_token(), async {
            let ended = (&mut publishing).await;
            tracing::error!("publishing stopped; handing every shard over");
            ended
        })
        .await;
    tracing::info!("every shard handed over");
    stop.cancel();
    let published = match failed {
        Some(ended) => ended,
        None => publishing.await,
    };
    shards.stopped().await;
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
