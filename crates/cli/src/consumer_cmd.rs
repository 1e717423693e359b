//! `shardmesh consumer`: a consumer node. Joins its group's share of the partitions,
//! hands every event to a built-in sink, and on SIGTERM/SIGINT hands its partitions over
//! with a final checkpoint before it exits.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use shardmesh_consumer::ConsumerSettings;
use shardmesh_consumer::sink::Sink;

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

/// Runs a consumer node with the settings from `config` and the environment until a
/// signal drains it.
pub async fn run(args: ConsumerArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let mut settings = ConsumerSettings::load(config)?;
    if let Some(group) = args.group {
        settings.role.group = group;
        settings.role.validate().context("--group")?;
    }
    let sink =
        Sink::parse(&args.sink, Duration::from_millis(args.sink_timeout_ms)).context("--sink")?;
    tracing::info!(group = %settings.role.group, sink = %args.sink, "consumer node");
    let shutdown = shardmesh_consumer::shutdown_on_signal();
    shardmesh_consumer::run(settings, sink, shutdown)
        .await
        .context("consumer node")
}
