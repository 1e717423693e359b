//! `shardmesh gateway`: a gateway node. Joins the mesh, holds the shards the assignment
//! gives it, publishes their events, and on SIGTERM/SIGINT hands every shard over by
//! RESUME before it exits.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use shardmesh_broker::{Incoming, NodeBus, Publisher, Topology};
use shardmesh_gateway::{GatewayShards, PublishLoop, ShardPhase};
use shardmesh_mesh::{MeshNode, NodeIdentity, NodeStatus};
use shardmesh_proto::{NodeRole, NodeState};
use shardmesh_store::{AnyStore, LeaseKey};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::node_http::{self, Probes};
use crate::settings::Settings;
use crate::{cluster_spec, gateway_metrics, signals};

/// Runs a gateway node until a signal drains it or publishing fails for good.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let gateway = settings.gateway.clone();
    if gateway.token.expose().trim().is_empty() {
        bail!(
            "invalid configuration: gateway.token: the bot token is required; set it in \
             [gateway] or in SHARDMESH__GATEWAY__TOKEN"
        );
    }
    let cluster = settings.cluster.name.clone();
    let node = node_id(&settings);
    tracing::info!(%cluster, %node, "starting gateway node");

    let store = Arc::new(
        shardmesh_store::open(&settings.store, &cluster)
            .await
            .context("opening the store")?,
    );
    let spec = cluster_spec::settle(store.as_ref(), &settings.cluster, &gateway).await?;
    tracing::info!(
        shards = spec.shard_count,
        partitions = spec.partitions,
        max_concurrency = spec.max_concurrency,
        "cluster spec agreed"
    );

    let broker = &settings.broker;
    let topology =
        Topology::new(&cluster, spec.partitions, broker).context("the broker topology")?;
    topology
        .declare(broker)
        .await
        .with_context(|| format!("declaring the event streams on {}", broker.url))?;
    // The bus and the publisher outlive the mesh loop: the last announcement and the
    // drain's confirms go through them after the shards are handed over.
    let links = CancellationToken::new();
    let (bus, inbox) = NodeBus::connect(broker, &topology, &node, links.clone())
        .await
        .context("joining the node bus")?;
    let publisher = Publisher::connect(broker, &topology, links.clone())
        .await
        .context("connecting the publisher")?;
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
    let (status_tx, status) = watch::channel(NodeStatus {
        state: NodeState::Starting,
        owns: Vec::new(),
        peers: 0,
    });
    let http_stop = CancellationToken::new();
    let (_, http) = node_http::serve(
        &settings.node.http_bind,
        true,
        Probes {
            ready: ready_check(shards.clone(), status.clone()),
            registry: gateway_metrics::registry(shards.clone(), status),
        },
        http_stop.clone(),
    )
    .await?;

    let drain = CancellationToken::new();
    let mesh_node = MeshNode {
        identity: NodeIdentity {
            node: node.clone(),
            role: NodeRole::Gateway,
            group: None,
            capacity: settings.node.capacity,
            address: None,
        },
        keys: (0..spec.shard_count).map(LeaseKey::Shard).collect(),
        store,
        holder: shards.clone(),
        lease: settings.lease,
        membership: settings.membership,
    };
    let mut publishing = tokio::spawn(publish_loop.run(stop.clone()));
    let signal = tokio::spawn(signals::drain_on_signal(drain.clone()));
    let failed =
        mesh_until_drained(mesh_node, &bus, inbox, &status_tx, &mut publishing, &drain).await;
    tracing::info!("every shard handed over");
    stop.cancel();
    let published = match failed {
        Some(result) => result,
        None => publishing.await,
    };
    shards.stopped().await;
    bus.shutdown().await;
    links.cancel();
    signal.abort();
    http_stop.cancel();
    let _ = http.await;
    outcome(published)
}

/// The configured node id, or a fresh UUID v7: a restarted node never inherits the
/// leases of its previous life.
pub fn node_id(settings: &Settings) -> String {
    if settings.node.id.is_empty() {
        uuid::Uuid::now_v7().to_string()
    } else {
        settings.node.id.clone()
    }
}

fn outcome(
    published: Result<Result<(), shardmesh_gateway::Error>, JoinError>,
) -> anyhow::Result<()> {
    match published {
        Ok(Ok(())) => {
            tracing::info!("gateway node stopped");
            Ok(())
        }
        Ok(Err(error)) => Err(error).context("publishing to the broker"),
        Err(error) => Err(error).context("the publish loop panicked"),
    }
}

type Publishing = JoinHandle<Result<(), shardmesh_gateway::Error>>;

/// Runs the mesh node until it drained. If publishing ends first it failed for good:
/// the node drains (the shards save their last confirmed seq, so their next owners
/// resume before what was lost here) and the failure is returned.
async fn mesh_until_drained(
    mesh_node: MeshNode<AnyStore, GatewayShards<AnyStore>>,
    bus: &NodeBus,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    status: &watch::Sender<NodeStatus>,
    publishing: &mut Publishing,
    drain: &CancellationToken,
) -> Option<Result<Result<(), shardmesh_gateway::Error>, JoinError>> {
    let meshing = shardmesh_mesh::run(mesh_node, bus, inbox, status, drain.clone());
    tokio::pin!(meshing);
    tokio::select! {
        () = &mut meshing => None,
        result = publishing => {
            tracing::error!("publishing stopped; handing every shard over");
            drain.cancel();
            meshing.await;
            Some(result)
        }
    }
}

/// Ready once the node is in the mesh and every shard it holds is connected.
fn ready_check(
    shards: GatewayShards<AnyStore>,
    status: watch::Receiver<NodeStatus>,
) -> node_http::ReadyCheck {
    Box::new(move || {
        let state = status.borrow().state;
        if state != NodeState::Ready {
            return Err(format!("node is {state:?}"));
        }
        let waiting: Vec<String> = shards
            .statuses()
            .into_iter()
            .filter(|shard| shard.phase != ShardPhase::Active)
            .map(|shard| {
                format!(
                    "shard {} {}",
                    shard.shard,
                    gateway_metrics::phase_name(shard.phase)
                )
            })
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join(", "))
        }
    })
}
