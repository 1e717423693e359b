//! The `shardmesh` binary: every shardmesh process is one of its subcommands.

mod action_log;
mod consumer_cmd;
mod ctl_cmd;
mod dashboard;
mod demo;
mod diag;
mod gateway_cmd;
mod lag;
mod ops;
mod rolling_restart;
mod sim;
mod status_report;
mod store_cmd;
mod tally;
mod text;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shardmesh_mesh::MeshSettings;

/// shardmesh: Discord gateway shards and event consumers spread over a mesh of nodes.
#[derive(Debug, Parser)]
#[command(name = "shardmesh", version)]
struct Cli {
    /// Configuration file (TOML); settings not in it take their defaults, and
    /// `SHARDMESH__SECTION__KEY` environment variables override both. In a container,
    /// `SHARDMESH_CONFIG` names it without changing the command.
    #[arg(long, global = true, value_name = "FILE", env = "SHARDMESH_CONFIG")]
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
    /// RabbitMQ at 127.0.0.1:5672, or a private one it starts when that is not running
    /// and RabbitMQ is installed), kill and restart nodes under traffic, and check that
    /// every event reached the consumers exactly once.
    Demo(demo::DemoArgs),
    /// Run a local Discord simulator (gateway + REST) for tests, demos and load tests.
    ///
    /// Gateway v10 at `ws://ADDR` (JSON in text or binary frames; `compress=zstd-stream`
    /// or `zlib-stream`), with identify pacing, the session-start budget, RESUME replay,
    /// and the commands answered: op 8 (`GUILD_MEMBERS_CHUNK`, `RATE_LIMITED` past one
    /// all-members request per guild per 30 s), op 4 (`VOICE_STATE_UPDATE`,
    /// `VOICE_SERVER_UPDATE`), op 31 (`SOUNDBOARD_SOUNDS`), op 43 (`CHANNEL_INFO`), op 3;
    /// more than 120 messages a minute close with 4008.
    ///
    /// REST at `http://ADDR/api/v10`: `GET /gateway`, `/gateway/bot`, `/users/@me`,
    /// `/applications/@me`, `/oauth2/applications/@me`; `GET`/`POST
    /// /channels/{id}/messages`, `GET`/`POST /channels/{id}/webhooks`, `POST
    /// /webhooks/{id}/{token}`; Discord's JSON errors and rate-limit headers.
    ///
    /// Control and ground truth at `http://ADDR/_sim/`: `stats`, `log?since=N`,
    /// `commands?since=N`, `guilds`, `traffic/start|stop|rate`, `chaos/{shard}`,
    /// `recommended_shards`, `channels/{id}/messages` (a person posts; what a channel holds).
    Sim(sim::SimArgs),
    /// Manage the store.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Inspect and operate the cluster: `status` (the store, and the command queues from
    /// the broker), `send` (a gateway command through the mesh), `drain`, `undrain`,
    /// `rolling-restart`, `restart-shard`, `diag`, `lag` and the action `log`.
    #[command(subcommand)]
    Ctl(ctl_cmd::CtlCommand),
    /// Serve a live page of the cluster at `http://ADDR` (default 127.0.0.1:7200): the
    /// shard grid (owner, lease, session age, heartbeat latency, last event), the nodes,
    /// the consumer groups' partitions, the identify budget and the action log, redrawn
    /// every second. A process of its own, reading the store as `ctl status` does and
    /// asking the nodes over the control exchange, so it keeps showing the cluster while
    /// nodes die. Read-only unless an admin token is configured (`--admin-token-file`),
    /// which enables draining nodes and restarting shards from the page.
    Dashboard(dashboard::DashboardArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // TLS (amqps, and Discord for gateway nodes) goes through rustls, which panics at the
    // first handshake unless a crypto provider is installed: ring, installed once here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The demo speaks for itself on stdout and stderr; its nodes log to their files.
    // `ctl` and `store` answer a person: their output is the report, not the log lines
    // of the connections made to build it.
    let default_filter = match cli.command {
        Command::Demo(_) => "off",
        Command::Ctl(_) | Command::Store(_) => "warn",
        // The dashboard's own lines; the store and broker clients' chatter only on warn.
        Command::Dashboard(_) => "warn,shardmesh::dashboard=info",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(default_filter))
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
        Command::Gateway => runtime.block_on(gateway_cmd::run(cli.config.as_deref())),
        Command::Consumer(args) => runtime.block_on(consumer_cmd::run(args, cli.config.as_deref())),
        Command::Demo(args) => runtime.block_on(demo::run(args, cli.config.as_deref())),
        Command::Sim(args) => runtime.block_on(sim::run(args, cli.config.as_deref())),
        Command::Store(command) => {
            let settings = MeshSettings::load(cli.config.as_deref())?;
            runtime.block_on(store_cmd::run(command, &settings))
        }
        Command::Ctl(command) => {
            let settings = MeshSettings::load(cli.config.as_deref())?;
            runtime.block_on(ctl_cmd::run(command, &settings))
        }
        Command::Dashboard(args) => {
            let settings = MeshSettings::load(cli.config.as_deref())?;
            runtime.block_on(dashboard::run(args, settings))
        }
    }
}

/// `RUST_LOG` unless unset or empty, else `default` (`info`; `warn` for `ctl` and
/// `store`, `off` for the demo). lapin logs every failed connection attempt at ERROR
/// from its I/O thread, and shardmesh reports the same failure with its context (the
/// step, the attempt, the next wait) as one WARN: lapin stays quiet unless `RUST_LOG`
/// names it.
fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .unwrap_or_else(|| default.into());
    let directives = if directives.contains("lapin") {
        directives
    } else {
        format!("{directives},lapin=off")
    };
    tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|error| {
        eprintln!("RUST_LOG={directives:?} is not a log filter ({error}); logging at info");
        tracing_subscriber::EnvFilter::new("info,lapin=off")
    })
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
