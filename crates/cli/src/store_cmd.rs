//! `shardmesh store`: prepare and inspect the configured store.

use clap::Subcommand;

use crate::settings::Settings;

/// `shardmesh store <command>`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the schema: the keyspace and tables of schema.cql on ScyllaDB, the tables
    /// of the SQLite file. Safe to run again.
    Init,
}

/// Runs a store command against the configured store.
pub async fn run(command: StoreCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        StoreCommand::Init => {
            let _ = settings;
            anyhow::bail!("store init is not wired yet")
        }
    }
}
