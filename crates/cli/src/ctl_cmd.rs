//! `shardmesh ctl`: the cluster as the store records it. It reads the store alone, so it
//! answers while RabbitMQ or every node is down.

use std::time::SystemTime;

use anyhow::Context as _;
use clap::Subcommand;

use crate::status_report::{self, Snapshot};
use shardmesh_mesh::MeshSettings;

/// `shardmesh ctl <command>`.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Print the cluster: its spec and identify budget, the live nodes, who owns each
    /// shard (with the session and seq a new owner resumes from), each consumer group's
    /// partitions (with the checkpoint offset), and the most recent actions.
    Status {
        /// How many recent actions to print.
        #[arg(long, default_value_t = 20)]
        actions: usize,
    },
}

/// Runs a ctl command against the configured store.
pub async fn run(command: CtlCommand, settings: &MeshSettings) -> anyhow::Result<()> {
    match command {
        CtlCommand::Status { actions } => {
            let store = shardmesh_store::open(&settings.store, &settings.cluster.name).await?;
            let snapshot = Snapshot::read(&store, actions)
                .await
                .context("reading the cluster's rows")?;
            print!("{}", status_report::render(&snapshot, SystemTime::now()));
        }
    }
    Ok(())
}
