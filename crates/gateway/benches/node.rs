//! What a gateway node costs: memory per connected idle shard and CPU per 1,000
//! events/s on one node holding 1,000 shards, and how long moving a shard between two
//! nodes takes (old owner's close to new owner's RESUMED).
//!
//! The simulator runs in a child process (this same binary, re-executed) so the RSS
//! and CPU read from `/proc/self` are the node's alone. Events are really published to
//! RabbitMQ (`SHARDMESH_TEST_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`)
//! under a fresh cluster name whose topology is deleted at the end; the store is a
//! SQLite file in a temporary directory. Every node is a [`GatewayNode`] started from
//! plain settings, as `shardmesh gateway` runs one.
//!
//! [`GatewayNode`]: shardmesh_gateway::GatewayNode
//!
//! Hand-overs: node `a` holds every shard under light traffic; `b` joins (half move),
//! `b` drains (they move back), `c` joins, `a` drains. Each move is timed from the old
//! owner's `hand_over` call (the shard closes with RESUME at once) through its release
//! and the new owner's `start` to [`ShardStatus::resumed_at`] on the new owner.
//!
//! [`ShardStatus::resumed_at`]: shardmesh_gateway::ShardStatus::resumed_at
//!
//! `cargo bench -p shardmesh-gateway --bench node`. Knobs (environment):
//! `BENCH_SHARDS` (1000), `BENCH_GUILDS` (2 per shard), `BENCH_RATES` (`5000,20000`
//! events/s), `BENCH_SECONDS` (10, each CPU window), `BENCH_MOVE_SHARDS` (64, shards of
//! the hand-over run), `BENCH_ANNOUNCE_MS` (1000, the default announce interval, for
//! the hand-over run), `BENCH_HAND_OVER` (1; 0 skips it, e.g. when comparing the
//! transport compressions, one run per build: `--no-default-features` for none,
//! `--no-default-features --features zlib` for zlib-stream). `RUST_LOG` (default `warn`) filters the nodes' logs on stderr.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::missing_panics_doc,
    clippy::too_many_lines
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use shardmesh_broker::{BrokerConfig, BrokerUrl, Topology};
use shardmesh_gateway::{
    BotToken, GatewayConfig, GatewayCounters, GatewayNode, GatewaySettings, GatewayShards,
    ShardPhase, ShardStatus,
};
use shardmesh_harness::knob as env;
use shardmesh_harness::{broker_url, unique_name, wait_for};
use shardmesh_mesh::{
    ClusterSettings, LeaseConfig, LeaseGuard, LeaseHolder, MembershipConfig, MeshSettings,
    NodeSettings,
};
use shardmesh_proto::NodeState;
use shardmesh_sim::{SimConfig, Token};
use shardmesh_store::{
    AnyStore, LeaseKey, LeaseState, SqliteConfig, SqliteStore, Store, StoreConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use twilight_gateway::Intents;

/// Set in the child: `shards,guilds,max_concurrency` of the simulator to run.
const CHILD: &str = "SHARDMESH_GATEWAY_BENCH_SIM";
const PARTITIONS: u32 = 16;
/// `/proc/<pid>/stat` times are in clock ticks; 100 per second on every Linux this runs on.
const TICKS_PER_SECOND: f64 = 100.0;
const DEADLINE: Duration = Duration::from_secs(120);

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let began = Instant::now();
    runtime.block_on(async {
        let report = one_node().await;
        // The compression comparison runs the bench once per build: the hand-over
        // figures do not depend on it.
        let moves = if env("BENCH_HAND_OVER", 1_u8) == 1 {
            Some(hand_over().await)
        } else {
            None
        };
        print_report(&report, moves.as_ref(), began.elapsed());
    });
}

// ---------------------------------------------------------------------------------
// The simulator child

/// The simulator process: starts, prints its address, runs until stdin closes.
fn child(spec: &str) {
    let numbers: Vec<u32> = spec.split(',').map(|n| n.parse().unwrap()).collect();
    let [shards, guilds, buckets] = numbers[..] else {
        panic!("{CHILD}={spec}: want shards,guilds,max_concurrency");
    };
    let config = SimConfig {
        token: Token::new("bench-token"),
        shards,
        guilds,
        max_concurrency: u16::try_from(buckets).unwrap(),
        // The cluster never needs more than one session per shard; a generous budget
        // keeps a retry from ending in 4004.
        session_start_total: 100_000,
        // Ground truth is for tests; here it would only cost the simulator memory.
        truth_capacity: 0,
        ..SimConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = shardmesh_sim::Simulator::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        println!("{}", sim.addr());
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await
        .unwrap();
        sim.shutdown().await;
    });
}

/// The simulator as seen from the node's process: its address and its control API.
struct Sim {
    process: Child,
    addr: SocketAddr,
    shards: u32,
    guilds: u32,
    buckets: u32,
}

impl Sim {
    fn spawn(shards: u32, guilds: u32, buckets: u32) -> Self {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .env(CHILD, format!("{shards},{guilds},{buckets}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("simulator child starts");
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let addr = lines.next().unwrap().unwrap().parse().unwrap();
        Self {
            process,
            addr,
            shards,
            guilds,
            buckets,
        }
    }

    fn gateway_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    async fn stats(&self) -> Value {
        http(self.addr, "GET", "/_sim/stats", "").await
    }

    async fn stat(&self, key: &str) -> u64 {
        self.stats().await[key].as_u64().unwrap()
    }

    async fn set_rate(&self, rate: f64) {
        let body = serde_json::json!({ "rate": rate }).to_string();
        http(self.addr, "POST", "/_sim/traffic/rate", &body).await;
    }

    fn stop(mut self) {
        // Closing stdin tells the child to shut down.
        drop(self.process.stdin.take());
        let status = self.process.wait().unwrap();
        assert!(status.success(), "simulator child failed: {status}");
    }
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Value {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------
// /proc

fn rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// utime + stime of `pid` in seconds; `None` once it is gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// Seconds this process's threads spent runnable but waiting for a CPU
/// (`/proc/self/task/*/schedstat`): high when the machine, not the node, is the limit.
fn cpu_wait_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e9
}

/// The local RabbitMQ's process, so the report can say where the other cores went.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        (comm.trim() == "beam.smp").then_some(pid)
    })
}

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------
// A cluster of gateway nodes in this process

fn broker() -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(broker_url()),
        ..BrokerConfig::default()
    }
}

/// One cluster: its name, topology, store file and the simulator its shards talk to.
struct Cluster {
    name: String,
    topology: Topology,
    store_config: SqliteConfig,
    shards: u32,
    buckets: u32,
    gateway: GatewayConfig,
    membership: MembershipConfig,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new(prefix: &str, sim: &Sim, membership: MembershipConfig) -> Self {
        let name = unique_name(&format!("bench-gw-{prefix}"));
        let dir = tempfile::tempdir().unwrap();
        Self {
            topology: Topology::new(&name, PARTITIONS, &broker()).unwrap(),
            store_config: SqliteConfig {
                path: dir.path().join("store.sqlite"),
                ..SqliteConfig::default()
            },
            name,
            shards: sim.shards,
            buckets: sim.buckets,
            gateway: GatewayConfig {
                token: BotToken::new("bench-token"),
                // Every generated kind is delivered, so the simulator's rate is the node's.
                intents: Intents::all().bits(),
                gateway_url: Some(sim.gateway_url()),
                api_url: Some(format!("http://{}", sim.addr)),
                ..GatewayConfig::default()
            },
            membership,
            _dir: dir,
        }
    }

    async fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.store_config, &self.name)
            .await
            .unwrap()
    }

    /// Starts a node owning whatever the mesh assigns it, as `shardmesh gateway` runs
    /// one (default lease timing, no HTTP face), its holder timed into `moves`; returns
    /// once it is in the mesh.
    async fn start_node(&self, name: &str, moves: &Arc<Moves>) -> Node {
        let settings = GatewaySettings {
            mesh: MeshSettings {
                cluster: ClusterSettings {
                    name: self.name.clone(),
                    partitions: PARTITIONS,
                    shard_count: self.shards,
                    max_concurrency: self.buckets,
                },
                node: NodeSettings {
                    id: name.into(),
                    capacity: 1,
                    http_bind: String::new(),
                },
                store: StoreConfig {
                    sqlite: self.store_config.clone(),
                    ..StoreConfig::default()
                },
                broker: broker(),
                lease: LeaseConfig::default(),
                membership: self.membership.clone(),
            },
            role: self.gateway.clone(),
        };
        let moves = Arc::clone(moves);
        let node =
            GatewayNode::spawn_with_holder(settings, &CancellationToken::new(), move |inner| {
                Timed { inner, moves }
            });
        let status = node.status();
        wait_for(&format!("node {name} in the mesh"), DEADLINE, || {
            status.borrow().state == NodeState::Ready
        })
        .await;
        Node { node }
    }

    async fn delete(self) {
        self.store().await.delete_cluster().await.unwrap();
        self.topology.delete(&broker()).await.unwrap();
    }
}

struct Node {
    node: GatewayNode,
}

impl Node {
    fn statuses(&self) -> Vec<ShardStatus> {
        self.node.shards()
    }

    fn counters(&self) -> GatewayCounters {
        self.node.counters()
    }

    fn active(&self) -> usize {
        self.statuses()
            .iter()
            .filter(|status| status.phase == ShardPhase::Active)
            .count()
    }

    /// Drains the node and waits for it; after `limit` the rest is stopped at once.
    /// Returns how long the drain took, whether it finished in time, and the node's
    /// counters at its end.
    async fn drain(self, limit: Duration) -> ((Duration, bool), GatewayCounters) {
        let began = Instant::now();
        let mut node = self.node;
        let drained = match tokio::time::timeout(limit, node.stop()).await {
            Ok(stopped) => {
                if let Err(error) = stopped {
                    tracing::error!(%error, "the node failed");
                }
                true
            }
            Err(_) => false,
        };
        let counters = node.counters();
        if !drained {
            node.crash().await;
        }
        ((began.elapsed(), drained), counters)
    }
}

/// When each shard's hand-over began and ended on its old node, and when its new node
/// acquired it: shared by every node of the hand-over run.
#[derive(Default)]
struct Moves {
    inner: Mutex<HashMap<u32, Move>>,
}

#[derive(Default, Clone, Copy)]
struct Move {
    closing: Option<Instant>,
    released: Option<Instant>,
    acquired: Option<Instant>,
}

impl Moves {
    fn update(&self, key: &LeaseKey, change: impl FnOnce(&mut Move)) {
        if let LeaseKey::Shard(shard) = key {
            let mut moves = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            change(moves.entry(*shard).or_default());
        }
    }

    fn take(&self) -> HashMap<u32, Move> {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The node's holder with timestamps: `hand_over` is where the old owner's close
/// begins (the shard task closes with RESUME as soon as it is told), and `start` is
/// where the new owner has its lease.
struct Timed {
    inner: GatewayShards<AnyStore>,
    moves: Arc<Moves>,
}

impl LeaseHolder for Timed {
    async fn start(&self, guard: LeaseGuard) {
        let now = Instant::now();
        self.moves
            .update(&guard.lease().key, |at| at.acquired = Some(now));
        self.inner.start(guard).await;
    }

    fn state(&self, key: &LeaseKey) -> LeaseState {
        self.inner.state(key)
    }

    async fn hand_over(&self, key: &LeaseKey) -> LeaseState {
        let closing = Instant::now();
        let state = self.inner.hand_over(key).await;
        let released = Instant::now();
        self.moves.update(key, |at| {
            at.closing = Some(closing);
            at.released = Some(released);
            at.acquired = None;
        });
        state
    }

    async fn lost(&self, key: &LeaseKey) {
        self.inner.lost(key).await;
    }
}

// ---------------------------------------------------------------------------------
// 1 and 2: one node, 1,000 shards

struct Window {
    rate: f64,
    seconds: f64,
    own_cores: f64,
    /// Of this process's threads, runnable but not running (summed over threads).
    own_waiting: f64,
    sim_cores: f64,
    broker_cores: Option<f64>,
    queued_per_second: f64,
    confirmed_per_second: f64,
    sim_sent_per_second: f64,
    /// What reached the node per dispatch the simulator sent, after compression.
    bytes_per_event: f64,
    load: String,
}

struct OneNode {
    shards: u32,
    guilds: u32,
    buckets: u32,
    connect_seconds: f64,
    burst_events: u64,
    rss_before_kib: u64,
    rss_connected_kib: u64,
    rss_peak_kib: u64,
    rss_after_traffic_kib: u64,
    identifies: u64,
    pacing_violations: u64,
    idle: Window,
    windows: Vec<Window>,
    /// Events sent but not yet received when traffic stopped, and how long receiving
    /// them took.
    catch_up: (u64, Duration),
    drain: (Duration, bool),
}

/// Sum of every shard's confirmed seq: how far the broker has confirmed.
fn confirmed_total(node: &Node) -> u64 {
    node.statuses()
        .iter()
        .map(|status| status.session.seq)
        .sum()
}

async fn measure(node: &Node, sim: &Sim, rate: f64, seconds: u64) -> Window {
    let broker = broker_pid();
    let own = std::process::id();
    let (own0, sim0) = (cpu_seconds(own).unwrap(), cpu_seconds(sim.pid()).unwrap());
    let broker0 = broker.and_then(cpu_seconds);
    let queued0 = node.counters().events_queued;
    let confirmed0 = confirmed_total(node);
    let sent0 = sim.stat("dispatches_sent").await;
    let bytes0 = sim.stat("bytes_sent").await;
    let waiting0 = cpu_wait_seconds();
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = began.elapsed().as_secs_f64();
    let waiting1 = cpu_wait_seconds();
    let own1 = cpu_seconds(own).unwrap();
    let sim1 = cpu_seconds(sim.pid()).unwrap();
    let broker1 = broker.and_then(cpu_seconds);
    let queued1 = node.counters().events_queued;
    let confirmed1 = confirmed_total(node);
    let sent1 = sim.stat("dispatches_sent").await;
    let bytes1 = sim.stat("bytes_sent").await;
    Window {
        rate,
        seconds: elapsed,
        own_cores: (own1 - own0) / elapsed,
        own_waiting: (waiting1 - waiting0).max(0.0) / elapsed,
        sim_cores: (sim1 - sim0) / elapsed,
        broker_cores: broker0.zip(broker1).map(|(a, b)| (b - a) / elapsed),
        queued_per_second: (queued1 - queued0) as f64 / elapsed,
        confirmed_per_second: confirmed1.saturating_sub(confirmed0) as f64 / elapsed,
        sim_sent_per_second: (sent1 - sent0) as f64 / elapsed,
        bytes_per_event: (bytes1 - bytes0) as f64 / (sent1 - sent0).max(1) as f64,
        load: load_average(),
    }
}

async fn one_node() -> OneNode {
    let shards: u32 = env("BENCH_SHARDS", 1_000);
    let guilds: u32 = env("BENCH_GUILDS", 2 * shards);
    // One bucket per shard: every shard may identify at once, as a large bot's
    // max_concurrency allows; pacing is not what this measures.
    let sim = Sim::spawn(shards, guilds, shards);
    let cluster = Cluster::new("one", &sim, MembershipConfig::default());
    let moves = Arc::new(Moves::default());
    let seconds: u64 = env("BENCH_SECONDS", 10);

    let started = Instant::now();
    let node = cluster.start_node("solo", &moves).await;
    // The node's broker connections, store and mesh loop are up, but its first
    // assignment waits out the settle delay (2 s): what grows after this is its shards'.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        node.statuses().is_empty(),
        "shards started before the baseline"
    );
    let rss_before_kib = rss_kib();
    // READY and one GUILD_CREATE per guild, every one published and confirmed.
    let burst_events = u64::from(shards) + u64::from(guilds);
    wait_for(
        "every shard active with its burst confirmed",
        DEADLINE,
        || {
            let statuses = node.statuses();
            statuses.len() == shards as usize
                && statuses.iter().all(|status| {
                    status.phase == ShardPhase::Active
                        && status
                            .queued_seq
                            .is_some_and(|queued| status.session.seq >= queued)
                })
                && node.counters().events_queued >= burst_events
        },
    )
    .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    // Let allocator caches, the publisher's window and one lease renewal round settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_connected_kib = rss_kib();
    let rss_peak_kib = peak_rss_kib();
    let identifies = sim.stat("identifies").await;
    let pacing_violations = sim.stat("pacing_violations").await;

    let idle = measure(&node, &sim, 0.0, 5).await;
    let mut windows = Vec::new();
    let rates: String = env("BENCH_RATES", "5000,20000".to_owned());
    for rate in rates
        .split(',')
        .map(|rate| rate.trim().parse::<f64>().unwrap())
    {
        sim.set_rate(rate).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        windows.push(measure(&node, &sim, rate, seconds).await);
    }
    sim.set_rate(0.0).await;
    let rss_after_traffic_kib = rss_kib();
    // Above the node's publishing rate the rest waits in socket buffers and the
    // simulator's queues; the drain is measured once the node has caught up.
    let stopped = Instant::now();
    let sent = sim.stat("dispatches_sent").await;
    let backlog = sent.saturating_sub(node.counters().events_queued);
    let catch_up_end = Instant::now() + DEADLINE;
    while node.counters().events_queued < sim.stat("dispatches_sent").await
        && Instant::now() < catch_up_end
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up = (backlog, stopped.elapsed());
    let (drain, _) = node.drain(Duration::from_secs(30)).await;
    cluster.delete().await;
    let (shards, guilds, buckets) = (sim.shards, sim.guilds, sim.buckets);
    sim.stop();
    OneNode {
        shards,
        guilds,
        buckets,
        connect_seconds,
        burst_events,
        rss_before_kib,
        rss_connected_kib,
        rss_peak_kib,
        rss_after_traffic_kib,
        identifies,
        pacing_violations,
        idle,
        windows,
        catch_up,
        drain,
    }
}

// ---------------------------------------------------------------------------------
// 3: hand-over between two nodes

struct Round {
    name: &'static str,
    /// Per moved shard: close → released, released → acquired, acquired → RESUMED,
    /// close → RESUMED.
    samples: Vec<[Duration; 4]>,
}

struct HandOvers {
    shards: u32,
    rate: f64,
    announce_ms: u64,
    rounds: Vec<Round>,
    identifies_during: u64,
    resumes_during: u64,
    sessions_lost: u64,
    load: String,
}

/// Which moved shards have RESUMED on `new_owner` since their old owner began closing.
fn resumed_since_close(moves: &HashMap<u32, Move>, new_owner: &Node) -> Vec<[Duration; 4]> {
    let resumed: HashMap<u32, Instant> = new_owner
        .statuses()
        .into_iter()
        .filter(|status| status.phase == ShardPhase::Active)
        .filter_map(|status| status.resumed_at.map(|at| (status.shard, at)))
        .collect();
    moves
        .iter()
        .filter_map(|(shard, at)| {
            let (closing, released, acquired) = (at.closing?, at.released?, at.acquired?);
            let resumed = *resumed.get(shard)?;
            (resumed > closing).then(|| {
                [
                    released - closing,
                    acquired.saturating_duration_since(released),
                    resumed.saturating_duration_since(acquired),
                    resumed - closing,
                ]
            })
        })
        .collect()
}

/// Waits until `count` shards moved to `new_owner` and resumed there, and returns their
/// timings; the next round starts from an empty record.
async fn round(name: &'static str, moves: &Moves, new_owner: &Node, count: usize) -> Round {
    let snapshot = || {
        moves
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    };
    wait_for(name, DEADLINE, || {
        resumed_since_close(&snapshot(), new_owner).len() >= count
    })
    .await;
    let samples = resumed_since_close(&moves.take(), new_owner);
    Round { name, samples }
}

async fn hand_over() -> HandOvers {
    let shards: u32 = env("BENCH_MOVE_SHARDS", 64);
    let rate = 10.0 * f64::from(shards);
    let announce_ms: u64 = env("BENCH_ANNOUNCE_MS", 1_000);
    let sim = Sim::spawn(shards, 2 * shards, shards);
    let membership = MembershipConfig {
        announce_interval_ms: announce_ms,
        ..MembershipConfig::default()
    };
    let cluster = Cluster::new("move", &sim, membership);
    let moves = Arc::new(Moves::default());
    let (all, half) = (shards as usize, (shards / 2) as usize);

    let a = cluster.start_node("a", &moves).await;
    wait_for("a holds every shard, active", DEADLINE, || {
        a.active() == all
    })
    .await;
    sim.set_rate(rate).await;
    // Every shard has confirmed events before it moves, as under real traffic.
    wait_for("a confirmed events on every shard", DEADLINE, || {
        a.statuses().iter().all(|status| status.session.seq > 10)
    })
    .await;
    let identifies0 = sim.stat("identifies").await;
    let resumes0 = sim.stat("resumes").await;
    moves.take();

    // Two joins and two drains. All shards of one rebalance wait for the same
    // announcement of the old owner, so each join is one draw of that wait: two of them
    // show its spread.
    let b = cluster.start_node("b", &moves).await;
    let join_b = round("b joins (rebalance)", &moves, &b, half).await;
    let draining = tokio::spawn(b.drain(Duration::from_secs(30)));
    let drain_b = round("b drains", &moves, &a, all - half).await;
    let (_, b_counters) = draining.await.unwrap();
    let c = cluster.start_node("c", &moves).await;
    let join_c = round("c joins (rebalance)", &moves, &c, half).await;
    let draining = tokio::spawn(a.drain(Duration::from_secs(30)));
    let drain_a = round("a drains", &moves, &c, all - half).await;
    let (_, a_counters) = draining.await.unwrap();

    let identifies_during = sim.stat("identifies").await - identifies0;
    let resumes_during = sim.stat("resumes").await - resumes0;
    let sessions_lost = [a_counters, b_counters, c.counters()]
        .iter()
        .map(|counters| counters.sessions_lost)
        .sum();
    let load = load_average();
    sim.set_rate(0.0).await;
    c.drain(Duration::from_secs(30)).await;
    cluster.delete().await;
    sim.stop();
    HandOvers {
        shards,
        rate,
        announce_ms,
        rounds: vec![join_b, drain_b, join_c, drain_a],
        identifies_during,
        resumes_during,
        sessions_lost,
        load,
    }
}

// ---------------------------------------------------------------------------------
// Report

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(mut values: Vec<Duration>) -> String {
    if values.is_empty() {
        return "no samples".into();
    }
    values.sort();
    format!(
        "median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        ms(percentile(&values, 0.5)),
        ms(percentile(&values, 0.9)),
        ms(values[values.len() - 1])
    )
}

fn print_report(one: &OneNode, moves: Option<&HandOvers>, took: Duration) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let per_shard =
        one.rss_connected_kib.saturating_sub(one.rss_before_kib) as f64 / f64::from(one.shards);
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!("shardmesh-gateway node benchmark ({cores} cores, simulator in a child process)");
    println!(
        "  setup: 1 node, {} shards, {} guilds ({} per shard, ~1.5 KB GUILD_CREATE each), sim max_concurrency {} (all identify at once), {PARTITIONS} partitions, RabbitMQ streams with confirms, SQLite store, default lease/membership timing",
        one.shards,
        one.guilds,
        one.guilds / one.shards.max(1),
        one.buckets
    );
    println!(
        "  connect: {} shards READY, {} burst events published and confirmed {:.1} s after the node started (2 s settle delay included); {} IDENTIFYs, {} pacing violations",
        one.shards, one.burst_events, one.connect_seconds, one.identifies, one.pacing_violations
    );
    println!(
        "  transport compression: {} (this build's; see `Compression`)",
        shardmesh_gateway::Compression::BUILT
    );
    println!(
        "RSS per connected idle shard ({}): {per_shard:.1} KiB (target <= 64 KiB, 128 KiB with zstd-stream) = ({:.1} MiB connected and idle - {:.1} MiB before any shard) / {} shards; peak {:.1} MiB, {:.1} MiB after the traffic runs",
        shardmesh_gateway::Compression::BUILT,
        mib(one.rss_connected_kib),
        mib(one.rss_before_kib),
        one.shards,
        mib(one.rss_peak_kib),
        mib(one.rss_after_traffic_kib)
    );
    let idle = &one.idle;
    println!(
        "CPU idle ({} shards, no traffic, lease renewals and heartbeats only): {:.3} cores over {:.1} s; load average {}",
        one.shards, idle.own_cores, idle.seconds, idle.load
    );
    for window in &one.windows {
        let thousands = window.queued_per_second / 1_000.0;
        let per_thousand = window.own_cores / thousands;
        let marginal = (window.own_cores - idle.own_cores) / thousands;
        println!(
            "CPU per 1,000 events/s at {:.0} events/s asked ({} shards, {}): {per_thousand:.3} cores per 1,000 events/s ({marginal:.3} above idle); {:.0} bytes received per event; node {:.2} cores for {:.0} events/s received, {:.0}/s confirmed by RabbitMQ, sim sent {:.0}/s; node threads runnable but waiting for a CPU {:.2} s/s; sim {:.2} cores, RabbitMQ {}; {:.1} s window, load average {}",
            window.rate,
            one.shards,
            shardmesh_gateway::Compression::BUILT,
            window.bytes_per_event,
            window.own_cores,
            window.queued_per_second,
            window.confirmed_per_second,
            window.sim_sent_per_second,
            window.own_waiting,
            window.sim_cores,
            window
                .broker_cores
                .map_or_else(|| "n/a".to_owned(), |cores| format!("{cores:.2} cores")),
            window.seconds,
            window.load
        );
    }
    println!(
        "  after the traffic: {} events were still on their way to the node, received within {:.1} s",
        one.catch_up.0,
        one.catch_up.1.as_secs_f64()
    );
    println!(
        "  drain of the {} shards (hand-over with nobody to take them): {:.1} s{}",
        one.shards,
        one.drain.0.as_secs_f64(),
        if one.drain.1 {
            ""
        } else {
            " (timed out, stopped)"
        }
    );
    let Some(moves) = moves else {
        println!("  hand-overs: not run (BENCH_HAND_OVER=0)");
        println!("  whole benchmark: {:.0} s", took.as_secs_f64());
        return;
    };
    let close_to_resumed = |joins: bool| -> Vec<Duration> {
        moves
            .rounds
            .iter()
            .filter(|round| round.name.contains("joins") == joins)
            .flat_map(|round| round.samples.iter().map(|sample| sample[3]))
            .collect()
    };
    let (rebalance, drain) = (close_to_resumed(true), close_to_resumed(false));
    let setup = format!(
        "{} shards on 2 nodes, {:.0} events/s, default lease/membership timing with announce interval {} ms",
        moves.shards, moves.rate, moves.announce_ms
    );
    println!(
        "Hand-over per shard, close to RESUMED, rebalance (a node joins): {} over {} hand-overs (target median <= 250 ms); {setup}",
        summary(rebalance.clone()),
        rebalance.len()
    );
    println!(
        "Hand-over per shard, close to RESUMED, drain (a node leaves): {} over {} hand-overs (target median <= 250 ms); {setup}",
        summary(drain.clone()),
        drain.len()
    );
    println!(
        "Hand-over per shard, close to RESUMED, all: {} over {} hand-overs; IDENTIFYs during the moves: {} (must be 0), RESUMEs {}, sessions lost {}; load average {}",
        summary([rebalance, drain].concat()),
        moves
            .rounds
            .iter()
            .map(|round| round.samples.len())
            .sum::<usize>(),
        moves.identifies_during,
        moves.resumes_during,
        moves.sessions_lost,
        moves.load
    );
    for round in &moves.rounds {
        let part = |index: usize| summary(round.samples.iter().map(|s| s[index]).collect());
        println!(
            "  {} ({} shards): close→RESUMED {}; close→released {}; released→acquired {}; acquired→RESUMED {}",
            round.name,
            round.samples.len(),
            part(3),
            part(0),
            part(1),
            part(2)
        );
    }
    println!("  whole benchmark: {:.0} s", took.as_secs_f64());
}
