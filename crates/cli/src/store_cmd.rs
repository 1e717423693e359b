//! `shardmesh store`: prepare and inspect the configured store.

use anyhow::Context;
use clap::Subcommand;
use shardmesh_store::{Backend, ScyllaStore, Store};

use shardmesh_mesh::MeshSettings;

/// `shardmesh store <command>`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the schema: the keyspace and tables of schema.cql on ScyllaDB, the tables
    /// of the SQLite file. Safe to run again.
    Init,
    /// Open the configured store, check its schema, and print the cluster's spec and
    /// leases.
    Check,
}

/// Runs a store command against the configured store.
pub async fn run(command: StoreCommand, settings: &MeshSettings) -> anyhow::Result<()> {
    let config = &settings.store;
    let cluster = &settings.cluster.name;
    match command {
        StoreCommand::Init => {
            if config.backend == Backend::Scylla {
                ScyllaStore::init_schema(&config.scylla)
                    .await
                    .context("cannot apply schema.cql")?;
            }
            // Opening creates the SQLite tables, and proves the Scylla schema is usable.
            shardmesh_store::open(config, cluster).await?;
            println!(
                "{} store ready: {}",
                backend_name(config.backend),
                location(settings)
            );
        }
        StoreCommand::Check => {
            let store = shardmesh_store::open(config, cluster).await?;
            println!(
                "{} store at {}: schema ok",
                backend_name(config.backend),
                location(settings)
            );
            match store.spec().await? {
                Some(spec) => println!(
                    "cluster {cluster}: {} shards, {} partitions, max_concurrency {}",
                    spec.shard_count, spec.partitions, spec.max_concurrency
                ),
                None => println!("cluster {cluster}: not created yet"),
            }
            for lease in store.leases().await? {
                println!(
                    "{:<24} epoch {:<6} owner {}",
                    lease.key.to_string(),
                    lease.epoch,
                    lease.owner.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Scylla => "scylla",
    }
}

fn location(settings: &MeshSettings) -> String {
    let config = &settings.store;
    match config.backend {
        Backend::Sqlite => config.sqlite.path.display().to_string(),
        Backend::Scylla => format!(
            "{} keyspace {}",
            config.scylla.nodes.join(","),
            config.scylla.keyspace
        ),
    }
}
