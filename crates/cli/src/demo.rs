//! `shardmesh demo`: the whole mesh on one machine in one command. A simulated Discord
//! in this process, two gateway nodes and two consumer nodes as child processes, one
//! gateway killed (SIGKILL) and one consumer restarted under steady traffic, and a verdict
//! comparing the simulator's ground truth with what the consumers' HTTP sink delivered.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use shardmesh_broker::{BrokerConfig, BrokerUrl, Topology};
use shardmesh_harness::{
    ConsumerTuning, Fleet, Launch, NodeConfig, NodeProcess, PrivateBroker, Timings, Truth,
};
use shardmesh_mesh::MeshSettings;
use shardmesh_sim::{SimConfig, Simulator, Token};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::tally::{self, SharedDeliveries};

/// Partitions of the demo cluster: enough for both consumers to share.
const PARTITIONS: u32 = 8;
/// The consumer group of the demo's consumers.
const GROUP: &str = "demo";
/// Start-up (connect every shard, share every partition) and catch-up may take this long.
const PHASE_DEADLINE: Duration = Duration::from_secs(60);
/// The bot token the simulator accepts.
const TOKEN: &str = "demo-token";
/// A draining node may take this long before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// `GUILDS`, `GUILD_MEMBERS`, `GUILD_PRESENCES`, `GUILD_MESSAGES`, `GUILD_MESSAGE_TYPING`: every
/// kind of event the simulator generates, so what it dispatches is the rate asked for.
const INTENTS: u64 = 1 | (1 << 1) | (1 << 8) | (1 << 9) | (1 << 11);
/// Consumers checkpoint often, so a restart repeats nothing it need not; a handler
/// (the collector) that fails is retried patiently.
const CONSUMER_TUNING: ConsumerTuning = ConsumerTuning {
    checkpoint_every_events: 100,
    checkpoint_every_ms: 200,
    handler_attempts: 10,
    handler_backoff_min_ms: 50,
    handler_backoff_max_ms: 1_000,
};

/// Flags of `shardmesh demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long traffic runs, in seconds. A gateway node is killed (SIGKILL) a third of the way
    /// in and a consumer node restarted two thirds in.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(6..=3_600))]
    duration_secs: u64,
    /// Synthetic dispatches per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Discord shards (all identify at once: `max_concurrency` is the shard count).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    shards: u32,
    /// Keep the temporary directory (config, store, node logs) after a successful run.
    #[arg(long)]
    keep: bool,
    /// RabbitMQ to use; otherwise `broker.url` of `--config` and `SHARDMESH__BROKER__URL`
    /// (the nodes' own settings), else RabbitMQ on this machine.
    #[arg(long)]
    broker_url: Option<String>,
}

/// The simulated Discord: 20 guilds per shard, every shard in its own identify bucket
/// so start-up takes no 5 s rounds, heartbeats every 2 s so the nodes look alive.
fn sim_config(args: &DemoArgs) -> SimConfig {
    SimConfig {
        token: Token::new(TOKEN),
        shards: args.shards,
        guilds: args.shards * 20,
        rate: args.rate,
        max_concurrency: u16::try_from(args.shards).unwrap_or(u16::MAX),
        heartbeat_interval_ms: 2_000,
        ..SimConfig::default()
    }
}

/// What every node of the demo's cluster is configured with (its id aside): the
/// simulator as Discord, short leases and membership timing so a killed node's shards
/// move within seconds.
fn node_config(
    args: &DemoArgs,
    cluster: &str,
    dir: &Path,
    broker_url: String,
    sim: &Simulator,
) -> NodeConfig {
    NodeConfig {
        cluster: cluster.to_owned(),
        partitions: PARTITIONS,
        shard_count: args.shards,
        max_concurrency: args.shards,
        node_id: String::new(),
        store_path: dir.join("store.sqlite"),
        broker_url,
        broker_connect_timeout_ms: 3_000,
        broker_backoff_max_ms: 1_000,
        timings: Timings::FAST,
        token: TOKEN.into(),
        intents: INTENTS,
        gateway_url: format!("ws://{}", sim.http_proxy()),
        api_url: format!("http://{}", sim.http_proxy()),
        consumer: Some(CONSUMER_TUNING),
    }
}

/// Runs the demo; `Ok` only when nothing was lost and nothing delivered twice. The
/// broker comes from `--broker-url`, else from the layered settings (`config`, then
/// `SHARDMESH__…`); everything else of the demo's cluster is its own.
pub async fn run(args: DemoArgs, config: Option<&Path>) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate must be above 0 and at most 100000");
    }
    let configured = match &args.broker_url {
        Some(url) => url.clone(),
        None => MeshSettings::load(config)?.broker.url.expose().to_owned(),
    };
    // Kept until the end of the run, when dropping it stops the node.
    let (broker_url, _private_broker) = find_broker(configured, args.broker_url.is_none()).await?;
    let dir = tempfile::Builder::new()
        .prefix("shardmesh-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let cluster = format!("demo-{}", std::process::id());
    let broker = BrokerConfig {
        url: BrokerUrl::new(broker_url.clone()),
        ..BrokerConfig::default()
    };
    let sim = Simulator::start(sim_config(&args), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the simulator")?;
    // Traffic starts once every shard is connected, so the numbers are about the mesh.
    sim.stop_traffic();
    let deliveries = SharedDeliveries::default();
    let collector_stop = CancellationToken::new();
    let sink = tally::serve_collector(Arc::clone(&deliveries), collector_stop.clone())
        .await
        .context("starting the collector")?;
    let node_config = node_config(&args, &cluster, dir.path(), broker_url, &sim);
    eprintln!(
        "shardmesh demo: cluster {cluster}, {} shards, {PARTITIONS} partitions, {} events/s for {} s; files in {}",
        args.shards,
        args.rate,
        args.duration_secs,
        dir.path().display()
    );

    let mut demo = Demo {
        args: &args,
        sim: &sim,
        deliveries,
        sink,
        node_config,
        binary: std::env::current_exe().context("locating the shardmesh binary")?,
        dir: dir.path(),
        fleet: Fleet::default(),
        truth: Truth::default(),
        progress: Progress::new(),
    };
    let outcome = tokio::select! {
        outcome = demo.play() => outcome,
        signal = interrupted() => Err(anyhow!("{signal}: stopping the demo")),
    };
    demo.progress.clear();
    let unclean = demo.fleet.terminate_all(STOP_TIMEOUT).await;
    delete_topology(&cluster, &broker).await;
    collector_stop.cancel();
    demo.truth.update(&sim);
    let (verdict, rejected) = tally::lock(&demo.deliveries).verdict(&demo.truth);
    let replays = demo.truth.replays;
    drop(demo);
    let stats = sim.stats();
    sim.shutdown().await;
    if let Err(error) = outcome {
        let kept = dir.keep();
        return Err(error.context(format!("node logs are in {}", kept.display())));
    }
    println!(
        "simulator: {} identifies, {} resumes, {replays} events replayed on resume (the consumers dropped the ones already handled)",
        stats.identifies, stats.resumes
    );
    println!("verdict: {}", tally::verdict_line(&verdict, rejected));
    if !unclean.is_empty() {
        let kept = dir.keep();
        bail!(
            "nodes {unclean:?} did not stop cleanly on SIGTERM; logs are in {}",
            kept.display()
        );
    }
    if !verdict.passed() || rejected > 0 {
        let kept = dir.keep();
        bail!(
            "the mesh lost or repeated events{}; logs are in {}",
            verdict.details(),
            kept.display()
        );
    }
    if args.keep {
        println!("files kept in {}", dir.keep().display());
    }
    Ok(())
}

/// Deletes the run's streams and exchanges, so demos leave nothing on the broker.
async fn delete_topology(cluster: &str, broker: &BrokerConfig) {
    let delete = async {
        Topology::new(cluster, PARTITIONS, broker)?
            .with_dead_letters(GROUP)
            .delete(broker)
            .await
    };
    if !matches!(
        tokio::time::timeout(Duration::from_secs(10), delete).await,
        Ok(Ok(()))
    ) {
        eprintln!("warning: could not delete the broker topology of cluster {cluster}");
    }
}

/// One demo run: the nodes, the timeline, the progress line.
struct Demo<'a> {
    args: &'a DemoArgs,
    sim: &'a Simulator,
    deliveries: SharedDeliveries,
    sink: String,
    /// Every node's config but its id.
    node_config: NodeConfig,
    /// This binary: the nodes are its `gateway` and `consumer` subcommands.
    binary: PathBuf,
    dir: &'a Path,
    fleet: Fleet,
    truth: Truth,
    progress: Progress,
}

impl Demo<'_> {
    async fn play(&mut self) -> anyhow::Result<()> {
        for name in ["gateway-1", "gateway-2", "consumer-1", "consumer-2"] {
            self.start(name).await?;
        }
        self.wait_for(
            "every shard connected and every partition owned",
            |_, view| view.shards_active == view.shards && view.partitions_owned == PARTITIONS,
        )
        .await?;

        self.sim.start_traffic();
        let started = Instant::now();
        // Rates count from here: the READY and GUILD_CREATE burst is not traffic.
        let view = self.refresh().await?;
        self.progress.start(started, &view);
        let duration = Duration::from_secs(self.args.duration_secs);
        let kill_at = started + duration / 3;
        let restart_at = started + duration * 2 / 3;
        let (mut killed, mut restarted) = (false, false);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while Instant::now() < started + duration {
            tick.tick().await;
            self.refresh().await?;
            if !killed && Instant::now() >= kill_at {
                killed = true;
                self.kill_gateway().await?;
            }
            if !restarted && Instant::now() >= restart_at {
                restarted = true;
                self.restart_consumer().await?;
            }
        }
        self.sim.stop_traffic();
        self.progress
            .note("traffic stopped; waiting for the consumers to catch up");
        let mut stable_since = (self.truth.dispatches.len(), Instant::now());
        self.wait_for("every dispatch delivered", move |demo, view| {
            let dispatched = demo.truth.dispatches.len();
            if dispatched != stable_since.0 {
                stable_since = (dispatched, Instant::now());
            }
            // A second without new dispatches: whatever the simulator was writing is
            // in the ground truth.
            view.shards_active == view.shards
                && view.delivered >= dispatched as u64
                && stable_since.1.elapsed() >= Duration::from_secs(1)
        })
        .await
    }

    /// Starts node `name`: a gateway or a consumer, as its name says.
    async fn start(&mut self, name: &str) -> anyhow::Result<()> {
        let config = self.dir.join(format!("{name}.toml"));
        let file = NodeConfig {
            node_id: name.to_owned(),
            ..self.node_config.clone()
        };
        std::fs::write(&config, file.to_toml())
            .with_context(|| format!("writing {}", config.display()))?;
        let consumer = ["consumer", "--group", GROUP, "--sink", &self.sink];
        let command: &[&str] = if name.starts_with("gateway") {
            &["gateway"]
        } else {
            &consumer
        };
        let log = self.dir.join(format!("{name}.log"));
        let launch = Launch {
            id: name,
            command,
            config: &config,
            log: &log,
            env: &[],
        };
        let node = NodeProcess::spawn(&self.binary, launch)
            .await
            .map_err(|error| anyhow!("node {name} did not start: {error}"))?;
        self.progress
            .note(&format!("started {name} (pid {})", node.pid()));
        self.fleet.add(node);
        Ok(())
    }

    async fn kill_gateway(&mut self) -> anyhow::Result<()> {
        let Some(node) = self.fleet.node_mut("gateway-2") else {
            bail!("gateway-2 is not running");
        };
        let owned = node
            .metrics()
            .await
            .map_or(0, |metrics| metrics.count("shardmesh_gateway_shards_owned"));
        self.fleet.kill("gateway-2").await;
        self.progress.note(&format!(
            "SIGKILL gateway-2: its {owned} shards resume on gateway-1 once their leases expire"
        ));
        Ok(())
    }

    async fn restart_consumer(&mut self) -> anyhow::Result<()> {
        self.progress
            .note("SIGTERM consumer-1: it hands its partitions over with a final checkpoint");
        if self.fleet.node_mut("consumer-1").is_none() {
            bail!("consumer-1 is not running");
        }
        let status = self.fleet.terminate("consumer-1", STOP_TIMEOUT).await;
        if !status.success() {
            bail!(
                "consumer-1 did not drain cleanly ({status}; log: {})",
                self.fleet.ended("consumer-1").log_path().display()
            );
        }
        self.start("consumer-3").await
    }

    /// Polls until `done` holds, refreshing the progress line, for at most
    /// [`PHASE_DEADLINE`].
    async fn wait_for(
        &mut self,
        what: &str,
        mut done: impl FnMut(&Self, &View) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + PHASE_DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let view = self.refresh().await?;
            if done(self, &view) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("timed out after {PHASE_DEADLINE:?} waiting for {what} ({view})");
            }
        }
    }

    /// Reads the simulator, the collector and the nodes, and redraws the progress line.
    async fn refresh(&mut self) -> anyhow::Result<View> {
        self.truth.update(self.sim);
        let delivered = tally::lock(&self.deliveries).delivered();
        let mut view = View {
            shards: self.args.shards,
            dispatched: self.truth.dispatches.len() as u64,
            delivered,
            ..View::default()
        };
        for id in self.fleet.reap() {
            let node = self.fleet.ended(&id);
            if node.exit_status().is_some_and(|status| !status.success()) {
                bail!(
                    "node {id} exited with {} (log: {})",
                    node.exit_status()
                        .map_or_else(String::new, |s| s.to_string()),
                    node.log_path().display()
                );
            }
        }
        for node in self.fleet.nodes() {
            let Ok(metrics) = node.metrics().await else {
                continue;
            };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            if node.role() == "gateway" {
                let active = metrics.sum_where("shardmesh_gateway_shards", "phase=\"active\"");
                view.shards_active += active as u32;
                view.gateways += 1;
            } else {
                let owned = metrics.count("shardmesh_consumer_partitions_owned");
                view.partitions_owned += u32::try_from(owned).unwrap_or(u32::MAX);
                view.consumers += 1;
            }
        }
        self.progress.show(&view);
        Ok(view)
    }
}

/// What one refresh saw.
#[derive(Debug, Default, Clone)]
struct View {
    shards: u32,
    shards_active: u32,
    gateways: u32,
    partitions_owned: u32,
    consumers: u32,
    dispatched: u64,
    delivered: u64,
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shards {}/{} on {} gateways, partitions {}/{PARTITIONS} on {} consumers, dispatched {}, delivered {}",
            self.shards_active,
            self.shards,
            self.gateways,
            self.partitions_owned,
            self.consumers,
            self.dispatched,
            self.delivered
        )
    }
}

/// The live line on stderr: redrawn in place at a terminal, one line every 5 s
/// otherwise (a log file gets a readable history, not a wall of repeats).
struct Progress {
    tty: bool,
    started: Option<Instant>,
    last: Option<(Instant, u64, u64)>,
    shown: u64,
    drawn: bool,
    /// The last line drawn: a log file gets a start-up line only when it changes.
    last_line: String,
}

impl Progress {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            started: None,
            last: None,
            shown: 0,
            drawn: false,
            last_line: String::new(),
        }
    }

    fn start(&mut self, at: Instant, view: &View) {
        self.started = Some(at);
        self.last = Some((at, view.dispatched, view.delivered));
    }

    fn elapsed(&self) -> String {
        self.started.map_or_else(
            || " start".to_owned(),
            |started| format!("{:>5}s", started.elapsed().as_secs()),
        )
    }

    fn show(&mut self, view: &View) {
        let now = Instant::now();
        let (dispatch_rate, delivery_rate) = match self.last {
            Some((then, dispatched, delivered))
                if now.duration_since(then) >= Duration::from_millis(900) =>
            {
                let secs = now.duration_since(then).as_secs_f64();
                self.last = Some((now, view.dispatched, view.delivered));
                #[allow(clippy::cast_precision_loss)]
                (
                    Some((view.dispatched - dispatched) as f64 / secs),
                    Some(view.delivered.saturating_sub(delivered) as f64 / secs),
                )
            }
            _ => (None, None),
        };
        let (Some(dispatch_rate), Some(delivery_rate)) = (dispatch_rate, delivery_rate) else {
            if self.started.is_some() {
                return;
            }
            return self.draw(&format!(
                "{}  starting: shards {}/{} ready on {} gateways, partitions {}/{PARTITIONS} owned by {} consumers",
                self.elapsed(),
                view.shards_active,
                view.shards,
                view.gateways,
                view.partitions_owned,
                view.consumers
            ));
        };
        self.shown += 1;
        let line = format!(
            "{}  dispatched {} ({dispatch_rate:.0}/s)  delivered {} ({delivery_rate:.0}/s)  lag {}  shards {}/{} ready  partitions {}/{PARTITIONS} owned",
            self.elapsed(),
            view.dispatched,
            view.delivered,
            view.dispatched.saturating_sub(view.delivered),
            view.shards_active,
            view.shards,
            view.partitions_owned,
        );
        if self.tty || self.shown % 5 == 1 {
            self.draw(&line);
        }
    }

    fn draw(&mut self, line: &str) {
        if !self.tty && line == self.last_line {
            return;
        }
        line.clone_into(&mut self.last_line);
        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let _ = write!(stderr, "\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }

    /// Clears the live line so what follows starts on a clean line.
    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }

    /// Prints a timeline event on its own line.
    fn note(&mut self, text: &str) {
        self.clear();
        eprintln!("{}  {text}", self.elapsed());
    }
}

/// The broker the demo runs on: `configured` when it answers; else, when it is this
/// machine's default one (`may_start`: no `--broker-url`, a loopback address) and
/// RabbitMQ is installed, a private node started for the run (returned, to be stopped
/// by dropping it); else one line saying what is missing and how to get it.
async fn find_broker(
    configured: String,
    may_start: bool,
) -> anyhow::Result<(String, Option<PrivateBroker>)> {
    let (host, port) = broker_address(&configured)
        .with_context(|| "the broker URL is not amqp://user:password@host:port/vhost")?;
    let reached = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await;
    let missing = match reached {
        Ok(Ok(_)) => return Ok((configured, None)),
        Ok(Err(error)) => format!("RabbitMQ is not running at {host}:{port} ({error})"),
        Err(_) => format!("RabbitMQ at {host}:{port} did not answer within 3 s"),
    };
    let local = ["127.0.0.1", "localhost", "::1"].contains(&host.as_str());
    if !(may_start && local) {
        bail!("{missing}; start it or pass another --broker-url");
    }
    if !PrivateBroker::installed() {
        bail!(
            "{missing}, and RabbitMQ is not installed here: install it (Debian, Ubuntu: \
             `sudo apt-get install -y rabbitmq-server`) and run the demo again, or pass \
             --broker-url"
        );
    }
    eprintln!("shardmesh demo: {missing}; starting a private one for this run");
    let private = PrivateBroker::start().await.map_err(anyhow::Error::msg)?;
    eprintln!("shardmesh demo: private RabbitMQ at {}", private.url());
    Ok((private.url(), Some(private)))
}

/// Host and port of an `amqp://` or `amqps://` URL (default ports 5672 and 5671).
fn broker_address(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "amqp" => 5_672,
        "amqps" => 5_671,
        _ => return None,
    };
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.is_empty() {
        return None;
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host_port.starts_with('[') => {
            Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
        }
        _ => Some((host_port.trim_matches(['[', ']']).to_owned(), default_port)),
    }
}

/// Resolves at Ctrl-C or SIGTERM with the signal's name.
async fn interrupted() -> &'static str {
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return "interrupted";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = terminate.recv() => "terminated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_address_reads_host_and_port() {
        assert_eq!(
            broker_address("amqp://guest:guest@127.0.0.1:5672/%2f"),
            Some(("127.0.0.1".into(), 5_672))
        );
        assert_eq!(
            broker_address("amqps://u:p@rabbit.example"),
            Some(("rabbit.example".into(), 5_671))
        );
        assert_eq!(
            broker_address("amqp://[::1]:5673/v"),
            Some(("::1".into(), 5_673))
        );
        assert_eq!(broker_address("http://x"), None);
    }
}
