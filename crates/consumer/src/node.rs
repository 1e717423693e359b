//! A whole consumer node: the settings it reads and [`run`], which joins the group's
//! share of the partitions, hands every event to the bot's [`Handler`], and when
//! `shutdown` is cancelled hands its partitions over with a final checkpoint.

use shardmesh_broker::Topology;
use shardmesh_mesh::{NodeRuntime, Probes, RoleSection, RoleSettings};
use shardmesh_proto::{InvalidConfig, NodeRole, NodeState};
use tokio_util::sync::CancellationToken;

use crate::{ConsumerConfig, ConsumerPartitions, ConsumerSetup, Error, Handler, metrics};

/// Everything a consumer node reads at start-up: the shared sections and `[consumer]`
/// (in [`RoleSettings::role`]).
pub type ConsumerSettings = RoleSettings<ConsumerConfig>;

impl RoleSection for ConsumerConfig {
    const SECTION: &'static str = "consumer";

    fn validate(&self) -> Result<(), InvalidConfig> {
        ConsumerConfig::validate(self)
    }
}

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
    let RoleSettings {
        mesh,
        role: consumer,
    } = settings;
    consumer.validate()?;
    let group = consumer.group.clone();
    let stdout_is_data = handler.writes_stdout();
    let mut runtime =
        NodeRuntime::start(mesh, NodeRole::Consumer, Some(group), stdout_is_data).await?;
    let served = serve(&mut runtime, consumer, handler, &shutdown).await;
    runtime.close().await;
    match served {
        Err(Error::Node(shardmesh_mesh::Error::Stopped)) => {
            tracing::info!("stopped before the node was ready");
            Ok(())
        }
        outcome => outcome,
    }
}

async fn serve<H: Handler>(
    runtime: &mut NodeRuntime,
    consumer: ConsumerConfig,
    handler: H,
    shutdown: &CancellationToken,
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

    let stop = CancellationToken::new();
    let holder = ConsumerPartitions::new(
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
    let status = runtime.status();
    runtime.set_probes(Probes {
        ready: Box::new(move || match status.borrow().state {
            NodeState::Ready => Ok(()),
            state => Err(format!("node is {state:?}")),
        }),
        registry: metrics::registry(holder.clone(), runtime.status()),
    });
    let keys = holder.keys();
    runtime
        .run(
            store,
            keys,
            holder.clone(),
            shutdown.child_token(),
            std::future::pending::<()>(),
        )
        .await;
    tracing::info!("every partition handed over");
    stop.cancel();
    holder.stopped().await;
    tracing::info!(counters = ?holder.counters(), "consumer node stopped");
    Ok(())
}
