//! `shardmesh store`: prepare and inspect the configured store.

use anyhow::Context;
use clap::Subcommand;
use std::time::{Duration, Instant};

use shardmesh_store::{Backend, ErrorKind, ScyllaStore, Store};

use shardmesh_mesh::MeshSettings;

/// `shardmesh store <command>`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the schema: the keyspace and tables of schema.cql on ScyllaDB, the tables
    /// of the SQLite file. Safe to run again.
    Init {
        /// While the store cannot be reached (ScyllaDB still starting), try again for up
        /// to this many seconds instead of failing at once: for a container that runs
        /// before the nodes, next to a database that starts with it.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        wait_secs: u64,
    },
    /// Open the configured store, check its schema, and print the cluster's spec and
    /// leases.
    Check,
}

/// Runs a store command against the configured store.
pub async fn run(command: StoreCommand, settings: &MeshSettings) -> anyhow::Result<()> {
    let config = &settings.store;
    let cluster = &settings.cluster.name;
    match command {
        StoreCommand::Init { wait_secs } => {
            let deadline = Instant::now() + Duration::from_secs(wait_secs);
            let mut attempt = 1_u32;
            while let Err(error) = init(settings).await {
                let unreachable = error
                    .downcast_ref::<shardmesh_store::Error>()
                    .is_some_and(|error| error.kind() == ErrorKind::Unreachable);
                if !unreachable || Instant::now() >= deadline {
                    return Err(error);
                }
                tracing::warn!(
                    error = %format!("{error:#}"),
                    attempt,
                    "the store is not reachable yet, retrying in 2 s"
                );
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
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

/// Applies the schema and opens the store once.
async fn init(settings: &MeshSettings) -> anyhow::Result<()> {
    let config = &settings.store;
    if config.backend == Backend::Scylla {
        ScyllaStore::init_schema(&config.scylla)
            .await
            .context("cannot apply schema.cql")?;
    }
    // Opening creates the SQLite tables, and proves the Scylla schema is usable.
    shardmesh_store::open(config, &settings.cluster.name).await?;
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
