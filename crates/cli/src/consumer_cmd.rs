//! `shardmesh consumer`: a consumer node. Joins its group's share of the partitions,
//! hands every event to a built-in sink, and on SIGTERM/SIGINT hands its partitions over
//! with a final checkpoint before it exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use shardmesh_broker::{NodeBus, Topology};
use shardmesh_consumer::{ConsumerPartitions, ConsumerSetup};
use shardmesh_mesh::{MeshNode, NodeIdentity, NodeStatus};
use shardmesh_proto::{NodeRole, NodeState};
use shardmesh_store::{AnyStore, Store as _};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::node_http::{self, Probes};
use crate::settings::Settings;
use crate::sink::Sink;
use crate::{consumer_metrics, gateway_cmd, signals};

/// `shardmesh consumer` options.
#[derive(Debug, Args)]
pub struct ConsumerArgs {
    /// Consumer group (overrides `consumer.group`): the nodes of a group share the
    /// partitions, and every group sees every event.
    #[arg(long)]
    group: Option<String>,
    /// Where events go: `stdout` (one JSON object per line) or an `http://` or
    /// `https://` URL (one POST per event; anything but 2xx is retried, then
    /// dead-lettered).
    #[arg(long)]
    sink: String,
    /// How long the HTTP sink waits for an answer, in ms.
    #[arg(long, default_value_t = 10_000)]
    sink_timeout_ms: u64,
}

/// Runs a consumer node until a signal drains it.
pub async fn run(args: ConsumerArgs, mut settings: Settings) -> anyhow::Result<()> {
    if let Some(group) = args.group {
        settings.consumer.group = group;
        settings.consumer.validate().context("invalid --group")?;
    }
    let sink = Sink::parse(&args.sink, Duration::from_millis(args.sink_timeout_ms))?;
    let cluster = settings.cluster.name.clone();
    let group = settings.consumer.group.clone();
    let node = gateway_cmd::node_id(&settings);
    tracing::info!(%cluster, %group, %node, sink = %args.sink, "starting consumer node");

    let store = Arc::new(
        shardmesh_store::open(&settings.store, &cluster)
            .await
            .context("opening the store")?,
    );
    let partitions = partitions(store.as_ref(), &settings).await?;
    let broker = &settings.broker;
    let topology = Topology::new(&cluster, partitions, broker)
        .context("the broker topology")?
        .with_dead_letters(&group);
    topology.declare(broker).await.with_context(|| {
        format!(
            "declaring the event and dead-letter streams on {}",
            broker.url
        )
    })?;
    let links = CancellationToken::new();
    let (bus, inbox) = NodeBus::connect(broker, &topology, &node, links.clone())
        .await
        .context("joining the node bus")?;

    let stop = CancellationToken::new();
    let uses_stdout = sink.uses_stdout();
    let holder = ConsumerPartitions::new(
        ConsumerSetup {
            config: settings.consumer.clone(),
            broker: broker.clone(),
            topology,
            node: node.clone(),
            store: Arc::clone(&store),
            lease: settings.lease.clone(),
            handler: sink,
        },
        stop.clone(),
    )?;
    let (status_tx, status) = watch::channel(NodeStatus {
        state: NodeState::Starting,
        owns: Vec::new(),
        peers: 0,
    });
    let http_stop = CancellationToken::new();
    let ready_status = status.clone();
    let (_, http) = node_http::serve(
        &settings.node.http_bind,
        !uses_stdout,
        Probes {
            ready: Box::new(move || match ready_status.borrow().state {
                NodeState::Ready => Ok(()),
                state => Err(format!("node is {state:?}")),
            }),
            registry: consumer_metrics::registry(holder.clone(), status),
        },
        http_stop.clone(),
    )
    .await?;

    let drain = CancellationToken::new();
    let mesh_node = MeshNode {
        identity: NodeIdentity {
            node,
            role: NodeRole::Consumer,
            group: Some(group),
            capacity: settings.node.capacity,
            address: None,
        },
        keys: holder.keys(),
        store,
        holder: holder.clone(),
        lease: settings.lease,
        membership: settings.membership,
    };
    let signal = tokio::spawn(signals::drain_on_signal(drain.clone()));
    shardmesh_mesh::run(mesh_node, &bus, inbox, &status_tx, drain).await;
    tracing::info!("every partition handed over");
    stop.cancel();
    holder.stopped().await;
    bus.shutdown().await;
    links.cancel();
    signal.abort();
    http_stop.cancel();
    let _ = http.await;
    tracing::info!(counters = ?holder.counters(), "consumer node stopped");
    Ok(())
}

/// The cluster's partition count: the recorded one, or the configured one while no
/// gateway node has recorded a spec (the first gateway node proposes the same value).
async fn partitions(store: &AnyStore, settings: &Settings) -> anyhow::Result<u32> {
    let configured = settings.cluster.partitions;
    match store.spec().await.context("reading the cluster spec")? {
        Some(spec) => {
            if spec.partitions != configured {
                tracing::warn!(
                    recorded = spec.partitions,
                    configured,
                    "cluster.partitions differs from the cluster's; using the cluster's"
                );
            }
            Ok(spec.partitions)
        }
        None => Ok(configured),
    }
}
