//! The `shardmesh` binary: every shardmesh process is one of its subcommands.

mod settings;
mod sim;
mod store_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// shardmesh: Discord gateway shards and event consumers spread over a mesh of nodes.
#[derive(Debug, Parser)]
#[command(name = "shardmesh", version)]
struct Cli {
    /// Configuration file (TOML); settings not in it take their defaults, and
    /// `SHARDMESH__SECTION__KEY` environment variables override both.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local Discord simulator (gateway + REST) for tests, demos and load tests.
    Sim(sim::SimArgs),
    /// Manage the store.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Sim(args) => runtime.block_on(sim::run(args)),
        Command::Store(command) => {
            let settings = settings::Settings::load(cli.config.as_deref())?;
            runtime.block_on(store_cmd::run(command, &settings))
        }
    }
}
