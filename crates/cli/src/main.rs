//! The `shardmesh` binary: every shardmesh process is one of its subcommands.

mod cluster_spec;
mod consumer_cmd;
mod consumer_metrics;
mod ctl_cmd;
mod demo;
mod demo_nodes;
mod demo_verdict;
mod gateway_cmd;
mod gateway_metrics;
mod metric_values;
mod node_http;
mod settings;
mod signals;
mod sim;
mod sink;
mod status_report;
mod store_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Run a gateway node: hold the Discord shards the mesh assigns to this node and
    /// publish their events; SIGTERM or Ctrl-C hands every shard over, then exits.
    Gateway,
    /// Run a consumer node: read the group's share of the event streams and hand every
    /// event to a sink; SIGTERM or Ctrl-C hands the partitions over, then exits.
    Consumer(consumer_cmd::ConsumerArgs),
    /// Run the whole mesh on this machine (simulator, 2 gateway and 2 consumer nodes,
    /// RabbitMQ at 127.0.0.1:5672), kill and restart nodes under traffic, and check that
    /// every event reached the consumers exactly once.
    Demo(demo::DemoArgs),
    /// Run a local Discord simulator (gateway + REST) for tests, demos and load tests.
    Sim(sim::SimArgs),
    /// Manage the store.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Inspect the cluster (reads the store only).
    #[command(subcommand)]
    Ctl(ctl_cmd::CtlCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // TLS (amqps, and Discord for gateway nodes) goes through rustls, which panics at the
    // first handshake unless a crypto provider is installed: ring, installed once here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files and journals.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Gateway => {
            let settings = settings::Settings::load(cli.config.as_deref())?;
            runtime.block_on(gateway_cmd::run(settings))
        }
        Command::Consumer(args) => {
            let settings = settings::Settings::load(cli.config.as_deref())?;
            runtime.block_on(consumer_cmd::run(args, settings))
        }
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Sim(args) => runtime.block_on(sim::run(args)),
        Command::Store(command) => {
            let settings = settings::Settings::load(cli.config.as_deref())?;
            runtime.block_on(store_cmd::run(command, &settings))
        }
        Command::Ctl(command) => {
            let settings = settings::Settings::load(cli.config.as_deref())?;
            runtime.block_on(ctl_cmd::run(command, &settings))
        }
    }
}

/// The error and its causes on one line, leaving out causes whose text the message
/// already quotes (library errors often include their source's text).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
