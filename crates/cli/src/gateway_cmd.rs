//! `shardmesh gateway`: a gateway node. Joins the mesh, holds the shards the assignment
//! gives it, publishes their events, and on SIGTERM/SIGINT hands every shard over by
//! RESUME before it exits.

use std::path::Path;

use anyhow::Context as _;
use shardmesh_gateway::GatewaySettings;

/// Runs a gateway node with the settings from `config` and the environment until a
/// signal drains it or publishing fails for good.
pub async fn run(config: Option<&Path>) -> anyhow::Result<()> {
    let settings = GatewaySettings::load(config)?;
    let shutdown = shardmesh_gateway::shutdown_on_signal();
    shardmesh_gateway::run(settings, shutdown)
        .await
        .context("gateway node")
}
