//! The consumer node's Prometheus metrics, read from its partitions at every scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use shardmesh_mesh::{NodeStatus, metric_values};
use shardmesh_store::AnyStore;
use tokio::sync::watch;

use crate::{ConsumerPartitions, Handler};

/// A registry with the consumer's metrics, all named `shardmesh_consumer_*`.
pub(crate) fn registry<H: Handler>(
    partitions: ConsumerPartitions<AnyStore, H>,
    status: watch::Receiver<NodeStatus>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ConsumerCollector { partitions, status }));
    registry
}

struct ConsumerCollector<H: Handler> {
    partitions: ConsumerPartitions<AnyStore, H>,
    status: watch::Receiver<NodeStatus>,
}

impl<H: Handler> std::fmt::Debug for ConsumerCollector<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerCollector").finish_non_exhaustive()
    }
}

impl<H: Handler> Collector for ConsumerCollector<H> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = self.partitions.counters();
        let owned = i64::try_from(self.status.borrow().owns.len()).unwrap_or(i64::MAX);
        metric_values::gauge(
            &mut encoder,
            "shardmesh_consumer_partitions_owned",
            "Partition leases this node holds for its group.",
            owned,
        )?;
        metric_values::labelled(
            &mut encoder,
            (
                "shardmesh_consumer_event_age_seconds",
                "Per partition: how old the last handled event was when the handler finished, since its gateway node received it from Discord (the group's lag in time).",
                MetricType::Gauge,
            ),
            "partition",
            self.partitions
                .event_ages()
                .into_iter()
                .map(|(partition, ms)| {
                    #[allow(clippy::cast_precision_loss)] // ms to seconds, for a gauge
                    let seconds = ms as f64 / 1_000.0;
                    (partition.to_string(), ConstGauge::new(seconds))
                }),
        )?;
        metric_values::counters(
            &mut encoder,
            &[
                (
                    "shardmesh_consumer_delivered",
                    "Events the handler (sink) finished.",
                    counters.delivered,
                ),
                (
                    "shardmesh_consumer_duplicates",
                    "Events dropped as replays the group had already handled.",
                    counters.duplicates,
                ),
                (
                    "shardmesh_consumer_stale",
                    "Events dropped because a newer gateway owner of their shard was seen.",
                    counters.stale,
                ),
                (
                    "shardmesh_consumer_retries",
                    "Handler calls repeated after a failure.",
                    counters.retries,
                ),
                (
                    "shardmesh_consumer_panics",
                    "Handler calls that panicked (counted as failures).",
                    counters.panics,
                ),
                (
                    "shardmesh_consumer_dead_lettered",
                    "Events sent to the group's dead-letter stream after the last attempt.",
                    counters.dead_lettered,
                ),
                (
                    "shardmesh_consumer_undecodable",
                    "Stream messages that could not be decoded (dead-lettered with their offset).",
                    counters.undecodable,
                ),
                (
                    "shardmesh_consumer_checkpoints",
                    "Checkpoints written between lease renewals.",
                    counters.checkpoints,
                ),
            ],
        )
    }
}
