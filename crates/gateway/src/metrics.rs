//! The gateway node's Prometheus metrics, read from the shards at every scrape so they
//! can never drift from what the node actually does.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use shardmesh_mesh::{NodeStatus, metric_values};
use shardmesh_store::{AnyStore, IdentifyBudget};
use tokio::sync::watch;

use crate::{GatewayCounters, GatewayShards, ShardCommandCounts, ShardPhase, ShardStatus};

/// Every phase, so a scrape always shows each one (zero included) and dashboards can
/// sum without gaps.
const PHASES: [ShardPhase; 6] = [
    ShardPhase::Connecting,
    ShardPhase::Resuming,
    ShardPhase::Active,
    ShardPhase::Draining,
    ShardPhase::FatallyClosed,
    ShardPhase::Stopped,
];

/// A registry with the gateway's metrics, all named `shardmesh_gateway_*`.
pub(crate) fn registry(
    shards: GatewayShards<AnyStore>,
    status: watch::Receiver<NodeStatus>,
    budget: watch::Receiver<Option<IdentifyBudget>>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(GatewayCollector {
        shards,
        status,
        budget,
    }));
    registry
}

#[derive(Debug)]
struct GatewayCollector {
    shards: GatewayShards<AnyStore>,
    status: watch::Receiver<NodeStatus>,
    budget: watch::Receiver<Option<IdentifyBudget>>,
}

impl Collector for GatewayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let statuses = self.shards.statuses();
        let counters = self.shards.counters();
        let owned = self.status.borrow().owns.len();

        metric_values::gauge(
            &mut encoder,
            "shardmesh_gateway_shards_owned",
            "Shard leases this node holds.",
            i64::try_from(owned).unwrap_or(i64::MAX),
        )?;
        let mut by_phase = encoder.encode_descriptor(
            "shardmesh_gateway_shards",
            "Shards running on this node, by phase (active = READY or RESUMED).",
            None,
            MetricType::Gauge,
        )?;
        for phase in PHASES {
            let count = statuses.iter().filter(|s| s.phase == phase).count();
            ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
                .encode(by_phase.encode_family(&[("phase", phase_name(phase))])?)?;
        }
        let lag: u64 = statuses.iter().map(ShardStatus::unconfirmed).sum();
        metric_values::gauge(
            &mut encoder,
            "shardmesh_gateway_confirm_lag_events",
            "Events read from Discord and not yet confirmed by the broker.",
            i64::try_from(lag).unwrap_or(i64::MAX),
        )?;
        metric_values::labelled(
            &mut encoder,
            (
                "shardmesh_gateway_latency_seconds",
                "Heartbeat round trip to Discord per shard, average of the recent ones.",
                MetricType::Gauge,
            ),
            "shard",
            statuses.iter().filter_map(|status| {
                let rtt = status.latency?;
                Some((status.shard.to_string(), ConstGauge::new(rtt.as_secs_f64())))
            }),
        )?;
        per_shard_commands(&mut encoder, &statuses)?;
        if let Some(budget) = *self.budget.borrow() {
            metric_values::gauge(
                &mut encoder,
                "shardmesh_gateway_identify_budget_remaining",
                "Session starts (IDENTIFYs) the cluster has left until Discord's daily reset, as the store last said (read every 10 s).",
                i64::from(budget.remaining),
            )?;
            metric_values::gauge(
                &mut encoder,
                "shardmesh_gateway_identify_budget_total",
                "Session starts Discord allows the bot per day.",
                i64::from(budget.total),
            )?;
        }
        metric_values::counters(&mut encoder, &counter_table(&counters))
    }
}

/// Each owned shard's commands: held here, and what became of them since the shard
/// started on this node (the node-wide totals below also keep those of shards gone).
fn per_shard_commands(
    encoder: &mut DescriptorEncoder,
    statuses: &[ShardStatus],
) -> Result<(), std::fmt::Error> {
    let by_shard = |pick: fn(&ShardCommandCounts) -> u64| {
        statuses.iter().map(move |status| {
            (
                status.shard.to_string(),
                ConstCounter::new(pick(&status.commands)),
            )
        })
    };
    metric_values::labelled(
        encoder,
        (
            "shardmesh_gateway_shard_commands_held",
            "Commands taken from the shard's queue, not yet written (the rest waits in the broker).",
            MetricType::Gauge,
        ),
        "shard",
        statuses.iter().map(|status| {
            let held = i64::from(status.commands.held);
            (status.shard.to_string(), ConstGauge::new(held))
        }),
    )?;
    for (name, help, pick) in [
        (
            "shardmesh_gateway_shard_commands_sent",
            "Commands written to Discord for the shard since it started on this node.",
            (|counts| counts.sent) as fn(&ShardCommandCounts) -> u64,
        ),
        (
            "shardmesh_gateway_shard_commands_expired",
            "Commands of the shard not sent because their expiry passed.",
            |counts| counts.expired,
        ),
        (
            "shardmesh_gateway_shard_commands_rejected",
            "Commands of the shard refused as unsendable (see the action log).",
            |counts| counts.rejected,
        ),
    ] {
        metric_values::labelled(
            encoder,
            (name, help, MetricType::Counter),
            "shard",
            by_shard(pick),
        )?;
    }
    Ok(())
}

/// The node's counters with their metric names and help texts.
fn counter_table(counters: &GatewayCounters) -> [(&'static str, &'static str, u64); 10] {
    [
        (
            "shardmesh_gateway_events",
            "Dispatches read from Discord and queued for publishing.",
            counters.events_queued,
        ),
        (
            "shardmesh_gateway_identifies",
            "Sessions started with IDENTIFY (each spends daily budget).",
            counters.sessions_started,
        ),
        (
            "shardmesh_gateway_resumes",
            "Sessions resumed (hand-overs, take-overs, reconnects).",
            counters.sessions_resumed,
        ),
        (
            "shardmesh_gateway_sessions_lost",
            "READY where a RESUME was expected: Discord no longer had the session.",
            counters.sessions_lost,
        ),
        (
            "shardmesh_gateway_hand_overs",
            "Shards handed over to another node by RESUME.",
            counters.hand_overs,
        ),
        (
            "shardmesh_gateway_fatal_closes",
            "Shards stopped by a close code that retrying cannot fix (4004, 4013, 4014, ...).",
            counters.fatal_closes,
        ),
        (
            "shardmesh_gateway_malformed_frames",
            "Gateway frames that could not be read and were skipped.",
            counters.malformed_frames,
        ),
        (
            "shardmesh_gateway_commands_sent",
            "Gateway commands written to Discord.",
            counters.commands_sent,
        ),
        (
            "shardmesh_gateway_commands_expired",
            "Gateway commands not sent because their expiry passed.",
            counters.commands_expired,
        ),
        (
            "shardmesh_gateway_commands_rejected",
            "Gateway commands refused as unsendable (see the action log).",
            counters.commands_rejected,
        ),
    ]
}

/// The phase as a label value.
pub(crate) fn phase_name(phase: ShardPhase) -> &'static str {
    match phase {
        ShardPhase::Connecting => "connecting",
        ShardPhase::Resuming => "resuming",
        ShardPhase::Active => "active",
        ShardPhase::Draining => "draining",
        ShardPhase::FatallyClosed => "fatally_closed",
        ShardPhase::Stopped => "stopped",
    }
}
