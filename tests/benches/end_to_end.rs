//! End to end, simulator → gateway node → RabbitMQ streams → consumer node → handler:
//! throughput against a plain lapin publish→consume loop of the same messages, latency
//! from the simulator's send to the handler call at a steady rate, and how long a
//! killed (SIGKILL) consumer node's partitions take to be handled again by a survivor.
//!
//! - The simulator runs in a child process (this binary, re-executed with
//!   `SHARDMESH_CONSUMER_BENCH_SIM`); 16 shards, 64 guilds, 16 partitions, so every
//!   partition carries one shard.
//! - Throughput and latency: one gateway node and one consumer node, both in this
//!   process (each with its own broker connections, as separate processes would have),
//!   SQLite store in a temporary directory, default consumer config, a handler that only
//!   counts and timestamps. Both are the role crates' runners (`GatewayNode`,
//!   `ConsumerNode`) started from plain settings, as `shardmesh gateway` and
//!   `shardmesh consumer` run them.
//! - Throughput: the simulator generates a burst of `BENCH_BURST` events (default
//!   200,000) as fast as it can, and the figure is the handler's events/s between 10 %
//!   and 90 % of the burst. The baselines then read back the stream messages the
//!   gateway published for the burst and push them through bare lapin: one connection
//!   publishing with confirms (window = the broker config's confirm window, `mandatory`,
//!   persistent) to 16 fresh stream queues declared with the same arguments, and one
//!   connection with a stream consumer per queue (same prefetch, batched acks), timed
//!   from the first publish to the last message consumed. The target's baseline sends
//!   each event as a message of its own, as a plain bridge does; the second sends the
//!   gateway's own messages, which batch what was queued per shard.
//! - Latency: the simulator at `BENCH_RATE` (5,000) events/s, `BENCH_WARMUP` (5) s of
//!   warm-up, then `BENCH_SECONDS` (20) s of samples. Each event's send time is the
//!   simulator's ground-truth `sent_at_us` (its batch flushed to the WebSocket), its end
//!   the handler call (`SystemTime` in the handler); matched by `(shard, seq)`.
//! - Take-over: a consumer node in a child process (`SHARDMESH_CONSUMER_BENCH_NODE`,
//!   running `shardmesh_consumer::run`) holds all partitions of a fresh group, a second node in this process joins and
//!   gets half, then the child gets SIGKILL; the figure is, per partition the child
//!   held, the time from the kill to the first event the survivor handled on it. Run
//!   with the default lease and membership timing and with a short one.
//!
//! It needs both roles, so it lives in `tests/` (shardmesh-tests), the one package that
//! may depend on both. `cargo bench -p shardmesh-tests --bench end_to_end`; RabbitMQ at
//! `SHARDMESH_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`). Every
//! cluster's streams and store rows are deleted at the end. `RUST_LOG` (default `warn`)
//! filters the nodes' logs on stderr.

#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::missing_panics_doc,
    clippy::too_many_lines
)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde::Deserialize;
use serde_json::Value;
use shardmesh_broker::{BrokerConfig, BrokerUrl, StartAt, StreamId, StreamReader, Topology};
use shardmesh_consumer::{
    ConsumerConfig, ConsumerNode, ConsumerPartitions, ConsumerSettings, Delivery, Handler,
};
use shardmesh_gateway::{BotToken, GatewayConfig, GatewayNode, GatewaySettings, ShardPhase};
use shardmesh_harness::knob as env;
use shardmesh_harness::{broker_url, eventually, unique_name, wait_for, wait_until};
use shardmesh_mesh::{
    ClusterSettings, LeaseConfig, LeaseGuard, LeaseHolder, MembershipConfig, MeshSettings,
    NodeSettings, NodeStatus,
};
use shardmesh_proto::{EventBatch, NodeState};
use shardmesh_sim::{SimConfig, Token};
use shardmesh_store::{
    AnyStore, LeaseKey, LeaseState, SqliteConfig, SqliteStore, Store, StoreConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Set in the simulator child: `shards,guilds,replay_capacity,truth_capacity`.
const SIM_CHILD: &str = "SHARDMESH_CONSUMER_BENCH_SIM";
/// Set in the consumer node child: its [`NodeSpec`] as `|`-separated fields.
const NODE_CHILD: &str = "SHARDMESH_CONSUMER_BENCH_NODE";
const PARTITIONS: u32 = 16;
const SHARDS: u32 = 16;
const GUILDS: u32 = 64;
const DEADLINE: Duration = Duration::from_secs(90);

fn main() {
    if let Ok(spec) = std::env::var(SIM_CHILD) {
        return sim_child(&spec);
    }
    let node_child = std::env::var(NODE_CHILD).ok();
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
    if let Some(spec) = node_child {
        return runtime.block_on(node_child_main(&spec));
    }
    let began = Instant::now();
    runtime.block_on(async {
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        println!(
            "shardmesh end-to-end benchmark ({cores} cores shared with RabbitMQ and other work; simulator in a child process)"
        );
        let burst: u64 = env("BENCH_BURST", 200_000);
        let replay = usize::try_from(burst / u64::from(SHARDS) * 4 + 10_000).unwrap();
        let sim = Sim::spawn(SHARDS, GUILDS, replay, 2_000_000);
        pipeline(&sim, burst).await;
        for short in [false, true] {
            take_over(&sim, short).await;
        }
        sim.stop();
    });
    println!("  whole benchmark: {:.0} s", began.elapsed().as_secs_f64());
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// utime + stime of `pid` in seconds (clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The local RabbitMQ's process, to say where the CPU went.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        (comm.trim() == "beam.smp").then_some(pid)
    })
}

/// CPU cores used by this process, the simulator and RabbitMQ over a span.
struct CpuSpan {
    began: Instant,
    own: f64,
    sim: f64,
    broker: Option<(u32, f64)>,
    sim_pid: u32,
}

impl CpuSpan {
    fn start(sim: &Sim) -> Self {
        let broker = broker_pid().and_then(|pid| Some((pid, cpu_seconds(pid)?)));
        Self {
            began: Instant::now(),
            own: cpu_seconds(std::process::id()).unwrap_or(0.0),
            sim: cpu_seconds(sim.pid()).unwrap_or(0.0),
            broker,
            sim_pid: sim.pid(),
        }
    }

    fn stop(&self) -> String {
        let seconds = self.began.elapsed().as_secs_f64();
        let cores = |now: Option<f64>, then: f64| {
            now.map_or_else(
                || "n/a".to_owned(),
                |now| format!("{:.2}", (now - then) / seconds),
            )
        };
        format!(
            "CPU cores: bench process (gateway + consumer) {}, simulator {}, RabbitMQ {}",
            cores(cpu_seconds(std::process::id()), self.own),
            cores(cpu_seconds(self.sim_pid), self.sim),
            self.broker.map_or_else(
                || "n/a".to_owned(),
                |(pid, then)| cores(cpu_seconds(pid), then)
            ),
        )
    }
}

// ---------------------------------------------------------------------------------
// The simulator child

fn sim_child(spec: &str) {
    let numbers: Vec<usize> = spec.split(',').map(|n| n.parse().unwrap()).collect();
    let [shards, guilds, replay_capacity, truth_capacity] = numbers[..] else {
        panic!("{SIM_CHILD}={spec}: want shards,guilds,replay_capacity,truth_capacity");
    };
    let config = SimConfig {
        token: Token::new("bench-token"),
        shards: u32::try_from(shards).unwrap(),
        guilds: u32::try_from(guilds).unwrap(),
        max_concurrency: u16::try_from(shards).unwrap(),
        session_start_total: 100_000,
        rate: 0.0,
        replay_capacity,
        truth_capacity,
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

struct Sim {
    process: Child,
    addr: SocketAddr,
}

/// One ground-truth record, the fields this benchmark reads.
#[derive(Deserialize)]
struct Record {
    shard: u32,
    seq: u64,
    #[serde(rename = "type")]
    kind: String,
    replay: bool,
    sent_at_us: u64,
}

#[derive(Deserialize)]
struct Page {
    records: Vec<Record>,
    next: u64,
    dropped: u64,
}

impl Sim {
    fn spawn(shards: u32, guilds: u32, replay: usize, truth: usize) -> Self {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .env(SIM_CHILD, format!("{shards},{guilds},{replay},{truth}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("simulator child starts");
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let addr = lines.next().unwrap().unwrap().parse().unwrap();
        Self { process, addr }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    async fn stat(&self, key: &str) -> u64 {
        http(self.addr, "GET", "/_sim/stats", "").await[key]
            .as_u64()
            .unwrap()
    }

    async fn set_rate(&self, rate: f64) {
        let body = serde_json::json!({ "rate": rate }).to_string();
        http(self.addr, "POST", "/_sim/traffic/rate", &body).await;
    }

    /// Ground truth from cursor `since` to `until`.
    async fn log(&self, mut since: u64, until: u64) -> (Vec<Record>, u64) {
        let mut records = Vec::new();
        let mut dropped = 0;
        while since < until {
            let path = format!("/_sim/log?since={since}&limit=50000");
            let body = http_text(self.addr, "GET", &path, "").await;
            let page: Page = serde_json::from_str(&body).unwrap();
            dropped += page.dropped;
            if page.records.is_empty() {
                break;
            }
            since = page.next;
            records.extend(page.records);
        }
        (records, dropped)
    }

    fn stop(mut self) {
        drop(self.process.stdin.take());
        let status = self.process.wait().unwrap();
        assert!(status.success(), "simulator child failed: {status}");
    }
}

async fn http_text(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Value {
    serde_json::from_str(&http_text(addr, method, path, body).await).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------
// Clusters and nodes

fn broker() -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(broker_url()),
        ..BrokerConfig::default()
    }
}

fn default_timing() -> (LeaseConfig, MembershipConfig) {
    (LeaseConfig::default(), MembershipConfig::default())
}

fn short_lease() -> (LeaseConfig, MembershipConfig) {
    (
        LeaseConfig {
            duration_ms: 3_000,
            renew_interval_ms: 500,
            fence_margin_ms: 500,
        },
        MembershipConfig {
            announce_interval_ms: 100,
            node_timeout_ms: 1_000,
            settle_delay_ms: 300,
        },
    )
}

fn describe(lease: &LeaseConfig, membership: &MembershipConfig) -> String {
    format!(
        "lease {} ms, renew every {} ms, fence margin {} ms; announce every {} ms, node timeout {} ms, settle {} ms",
        lease.duration_ms,
        lease.renew_interval_ms,
        lease.fence_margin_ms,
        membership.announce_interval_ms,
        membership.node_timeout_ms,
        membership.settle_delay_ms
    )
}

struct Cluster {
    name: String,
    topology: Topology,
    store_config: SqliteConfig,
    groups: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new(prefix: &str, groups: &[&str]) -> Self {
        let name = unique_name(&format!("bench-e2e-{prefix}"));
        let dir = tempfile::tempdir().unwrap();
        Self {
            topology: Topology::new(&name, PARTITIONS, &broker()).unwrap(),
            store_config: SqliteConfig {
                path: dir.path().join("store.sqlite"),
                ..SqliteConfig::default()
            },
            name,
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            _dir: dir,
        }
    }

    async fn store(&self) -> Arc<SqliteStore> {
        Arc::new(
            SqliteStore::open(&self.store_config, &self.name)
                .await
                .unwrap(),
        )
    }

    /// The sections every node of the cluster reads: node `node`, `timing`, no HTTP face.
    fn mesh(&self, node: &str, timing: &(LeaseConfig, MembershipConfig)) -> MeshSettings {
        mesh_settings(
            &self.name,
            &self.store_config,
            node,
            timing.0.clone(),
            timing.1.clone(),
        )
    }

    /// A gateway node holding every shard of `sim`, as `shardmesh gateway` runs one;
    /// returns once it is in the mesh.
    async fn gateway(&self, sim: &Sim) -> Gateway {
        let mut mesh = self.mesh("gateway", &default_timing());
        mesh.cluster.shard_count = SHARDS;
        mesh.cluster.max_concurrency = SHARDS;
        let settings = GatewaySettings {
            mesh,
            role: GatewayConfig {
                token: BotToken::new("bench-token"),
                intents: shardmesh_sim::VALID_INTENTS,
                gateway_url: Some(format!("ws://{}", sim.addr)),
                api_url: Some(format!("http://{}", sim.addr)),
                ..GatewayConfig::default()
            },
        };
        let node = GatewayNode::spawn(settings, &CancellationToken::new());
        in_mesh("the gateway node", &node.status()).await;
        Gateway { node }
    }

    /// A consumer node of `group` in this process, as `shardmesh consumer` runs one,
    /// its holder noting when it acquires each partition into `acquired`; returns once
    /// it is in the mesh.
    async fn consumer<H: Handler>(
        &self,
        name: &str,
        group: &str,
        handler: H,
        timing: &(LeaseConfig, MembershipConfig),
        acquired: Option<Arc<Acquired>>,
    ) -> Consumer<H> {
        let settings = ConsumerSettings {
            mesh: self.mesh(name, timing),
            role: ConsumerConfig {
                group: group.into(),
                ..ConsumerConfig::default()
            },
        };
        let acquired = acquired.unwrap_or_default();
        let node = ConsumerNode::spawn_with_holder(
            settings,
            handler,
            &CancellationToken::new(),
            move |inner| Timed { inner, acquired },
        );
        in_mesh(&format!("consumer node {name}"), &node.status()).await;
        Consumer { node }
    }

    async fn delete(self) {
        self.store().await.delete_cluster().await.unwrap();
        let mut topology = self.topology.clone();
        for group in &self.groups {
            topology = topology.with_dead_letters(group);
        }
        topology.delete(&broker()).await.unwrap();
    }
}

/// The sections every node reads: cluster `cluster` of [`PARTITIONS`], the SQLite
/// store `store`, the test broker, node `node` with no HTTP face, and the timing.
fn mesh_settings(
    cluster: &str,
    store: &SqliteConfig,
    node: &str,
    lease: LeaseConfig,
    membership: MembershipConfig,
) -> MeshSettings {
    MeshSettings {
        cluster: ClusterSettings {
            name: cluster.into(),
            partitions: PARTITIONS,
            ..ClusterSettings::default()
        },
        node: NodeSettings {
            id: node.into(),
            capacity: 1,
            http_bind: String::new(),
        },
        store: StoreConfig {
            sqlite: store.clone(),
            ..StoreConfig::default()
        },
        broker: broker(),
        lease,
        membership,
    }
}

async fn in_mesh(what: &str, status: &watch::Receiver<NodeStatus>) {
    wait_for(&format!("{what} in the mesh"), DEADLINE, || {
        status.borrow().state == NodeState::Ready
    })
    .await;
}

struct Gateway {
    node: GatewayNode,
}

impl Gateway {
    fn active(&self) -> usize {
        self.node
            .shards()
            .iter()
            .filter(|status| status.phase == ShardPhase::Active)
            .count()
    }

    /// Drains the node; after 30 s the rest is stopped at once.
    async fn drain(self) {
        let mut node = self.node;
        match tokio::time::timeout(Duration::from_secs(30), node.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the gateway node failed"),
            Err(_) => node.crash().await,
        }
    }
}

struct Consumer<H> {
    node: ConsumerNode<H>,
}

impl<H: Handler> Consumer<H> {
    fn owned(&self) -> HashSet<u32> {
        partitions_of(&self.node.status().borrow().owns)
    }

    /// Drains the node; after 30 s the rest is stopped at once.
    async fn drain(self) {
        let mut node = self.node;
        match tokio::time::timeout(Duration::from_secs(30), node.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the consumer node failed"),
            Err(_) => {
                let _ = tokio::time::timeout(Duration::from_secs(30), node.crash()).await;
            }
        }
    }
}

fn partitions_of(keys: &[LeaseKey]) -> HashSet<u32> {
    keys.iter()
        .filter_map(|key| match key {
            LeaseKey::Partition { partition, .. } => Some(*partition),
            LeaseKey::Shard(_) => None,
        })
        .collect()
}

/// When this node's holder was given each partition's lease.
#[derive(Default)]
struct Acquired {
    at: Mutex<HashMap<u32, Instant>>,
}

struct Timed<H> {
    inner: ConsumerPartitions<AnyStore, H>,
    acquired: Arc<Acquired>,
}

impl<H: Handler> LeaseHolder for Timed<H> {
    async fn start(&self, guard: LeaseGuard) {
        if let LeaseKey::Partition { partition, .. } = &guard.lease().key {
            self.acquired
                .at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(*partition, Instant::now());
        }
        self.inner.start(guard).await;
    }

    fn state(&self, key: &LeaseKey) -> LeaseState {
        self.inner.state(key)
    }

    async fn hand_over(&self, key: &LeaseKey) -> LeaseState {
        self.inner.hand_over(key).await
    }

    async fn lost(&self, key: &LeaseKey) {
        self.inner.lost(key).await;
    }
}

// ---------------------------------------------------------------------------------
// 1 and 2: throughput and latency, one gateway node and one consumer node

/// What the handler saw: a count, the highest offset per partition, and while
/// `recording`, `(shard, seq, handled at µs)` per event.
#[derive(Default)]
struct Probe {
    handled: AtomicU64,
    recording: AtomicBool,
    samples: Mutex<Vec<(u32, u64, u64)>>,
    last_offset: Mutex<HashMap<u32, u64>>,
}

impl Probe {
    fn saw(&self, delivery: &Delivery) {
        let at = unix_us();
        self.handled.fetch_add(1, Ordering::Relaxed);
        if self.recording.load(Ordering::Relaxed) {
            self.samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((delivery.shard(), delivery.seq(), at));
        }
        let mut offsets = self
            .last_offset
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last = offsets.entry(delivery.partition()).or_default();
        *last = (*last).max(delivery.offset());
    }

    fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }
}

fn probe_handler(probe: &Arc<Probe>) -> impl Handler<Error = Infallible> {
    let probe = Arc::clone(probe);
    move |delivery: Delivery| {
        probe.saw(&delivery);
        async { Ok::<(), Infallible>(()) }
    }
}

async fn pipeline(sim: &Sim, burst: u64) {
    let cluster = Cluster::new("pipe", &["bench"]);
    let probe = Arc::new(Probe::default());
    let gateway = cluster.gateway(sim).await;
    let consumer = cluster
        .consumer(
            "consumer",
            "bench",
            probe_handler(&probe),
            &default_timing(),
            None,
        )
        .await;
    wait_for("16 shards active and 16 partitions owned", DEADLINE, || {
        gateway.active() == SHARDS as usize && consumer.owned().len() == PARTITIONS as usize
    })
    .await;
    // The GUILD_CREATEs (and READYs) through to the handler.
    wait_for("the connect burst handled", DEADLINE, || {
        probe.handled() >= u64::from(GUILDS)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let identifies = sim.stat("identifies").await;

    // Throughput: a burst generated as fast as the simulator can, drained by the pipeline.
    let base = probe.handled();
    let generated0 = sim.stat("generated").await;
    let cpu = CpuSpan::start(sim);
    let generating = Instant::now();
    // The simulator owes at most rate / 10 events at a time: the burst, in one go or a
    // few ticks, and at most one burst more before the rate is back to 0.
    sim.set_rate(burst as f64 * 10.0).await;
    while sim.stat("generated").await < generated0 + burst {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sim.set_rate(0.0).await;
    let generate_seconds = generating.elapsed().as_secs_f64();
    // A tick being generated when the rate went to 0 still adds to the burst.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let burst = sim.stat("generated").await - generated0;
    // The handler's count over time, until the whole burst is in or nothing moves for
    // 5 s (events lost on the way would otherwise hang the run).
    let mut progress = vec![(Instant::now(), probe.handled())];
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = (Instant::now(), probe.handled());
        let last = *progress.last().unwrap();
        if now.1 != last.1 {
            progress.push(now);
        }
        if now.1 >= base + burst
            || now.0.duration_since(progress.last().unwrap().0) > Duration::from_secs(5)
        {
            break;
        }
    }
    let handled_burst = progress.last().unwrap().1 - base;
    let at = |fraction: u64| {
        progress
            .iter()
            .find(|(_, handled)| *handled >= base + handled_burst * fraction / 10)
            .copied()
            .unwrap()
    };
    let ((t1, n1), (t9, n9)) = (at(1), at(9));
    let window = t9.duration_since(t1).as_secs_f64();
    let events_per_second = (n9 - n1) as f64 / window;
    let identifies_after_burst = sim.stat("identifies").await;
    let burst_seconds = progress
        .last()
        .unwrap()
        .0
        .duration_since(generating)
        .as_secs_f64();
    let cpu_report = cpu.stop();
    let load = load_average();
    let counters = consumer.node.counters();
    let last_offsets = probe
        .last_offset
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();

    // The baselines: the same events through bare lapin, one message each (what a
    // plain bridge publishes), and the very messages the gateway published (batched).
    let messages = read_back(&cluster, &last_offsets).await;
    let events_in_messages: u64 = messages.iter().map(|m| m.events).sum();
    let singles = one_event_each(&messages);
    let single = bare_loop(&singles).await;
    let single_rate = single.window_rate;
    let baseline = bare_loop(&messages).await;
    let events_per_message = events_in_messages as f64 / messages.len().max(1) as f64;
    let baseline_rate = baseline.window_rate * events_per_message;
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
    let single_bytes: usize = singles.iter().map(|m| m.payload.len()).sum();
    println!(
        "Throughput simulator → handler: {events_per_second:.0} events/s (handler count from 10 % to 90 % of the burst, {window:.2} s); burst of {burst} events generated in {generate_seconds:.2} s, {handled_burst} handled ({} missing) {burst_seconds:.2} s after it began; IDENTIFYs {identifies} → {identifies_after_burst}; load average {load}",
        burst.saturating_sub(handled_burst)
    );
    println!(
        "  setup: 1 gateway node + 1 consumer node (group \"bench\", default config, counting handler) both in the bench process, simulator in a child process; {SHARDS} shards, {GUILDS} guilds, {PARTITIONS} partitions, SQLite store; {cpu_report} over the burst; consumer counters {counters:?}"
    );
    println!(
        "Baseline plain lapin publish→consume of the same events, one message each: {single_rate:.0} events/s (consumed count from 10 % to 90 %; {} messages, {:.0} B average; {:.2} s from first publish to last consumed); load average {}",
        singles.len(),
        single_bytes as f64 / singles.len().max(1) as f64,
        single.seconds,
        single.load
    );
    println!("  {}", single.cpu);
    println!(
        "Baseline plain lapin publish→consume of the gateway's own (batched) messages: {baseline_rate:.0} events/s (consumed count from 10 % to 90 %; {} messages carrying {events_in_messages} events, {:.0} B average; {:.0} messages/s over all, {:.2} s from first publish to last consumed); load average {}",
        messages.len(),
        bytes as f64 / messages.len().max(1) as f64,
        messages.len() as f64 / baseline.seconds,
        baseline.seconds,
        baseline.load
    );
    println!(
        "  baseline: 1 connection publishing with confirms (window {}, mandatory, persistent) to {PARTITIONS} fresh stream queues with the cluster's arguments, concurrently a stream consumer per queue, each on its own connection as the consumer node has (prefetch {}, acks every {} messages); no simulator, no WebSocket, no decode, no dedup, no checkpoints, no handler; {}",
        broker().confirm_window,
        broker().prefetch,
        broker().prefetch / 2,
        baseline.cpu
    );
    println!(
        "Throughput ratio pipeline / plain lapin with one message per event: {:.3} (target >= 0.8); pipeline / plain lapin with the gateway's batched messages: {:.3}",
        events_per_second / single_rate,
        events_per_second / baseline_rate
    );

    latency(sim, &probe, identifies).await;

    sim.set_rate(0.0).await;
    consumer.drain().await;
    gateway.drain().await;
    cluster.delete().await;
}

async fn latency(sim: &Sim, probe: &Probe, identifies: u64) {
    let rate: f64 = env("BENCH_RATE", 5_000.0);
    let warmup: u64 = env("BENCH_WARMUP", 5);
    let seconds: u64 = env("BENCH_SECONDS", 20);
    sim.set_rate(rate).await;
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let cursor0 = sim.stat("truth_records").await;
    let cpu = CpuSpan::start(sim);
    probe.recording.store(true, Ordering::Relaxed);
    let handled0 = probe.handled();
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cursor1 = sim.stat("truth_records").await;
    let handled_rate = (probe.handled() - handled0) as f64 / began.elapsed().as_secs_f64();
    let cpu_report = cpu.stop();
    let load = load_average();
    sim.set_rate(0.0).await;
    // Let what was sent in the window reach the handler.
    tokio::time::sleep(Duration::from_secs(2)).await;
    probe.recording.store(false, Ordering::Relaxed);
    let handled: HashMap<(u32, u64), u64> = probe
        .samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|&(shard, seq, at)| ((shard, seq), at))
        .collect();
    let (sent, dropped) = sim.log(cursor0, cursor1).await;
    let mut micros = Vec::new();
    let mut missing = 0;
    for record in sent.iter().filter(|r| !r.replay && r.kind != "RESUMED") {
        match handled.get(&(record.shard, record.seq)) {
            Some(&at) => micros.push(at.saturating_sub(record.sent_at_us)),
            None => missing += 1,
        }
    }
    micros.sort_unstable();
    let ms = |p: f64| {
        let rank = ((p * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
        micros[rank - 1] as f64 / 1_000.0
    };
    let mean = micros.iter().sum::<u64>() as f64 / micros.len() as f64 / 1_000.0;
    let over = |limit_ms: u64| micros.iter().filter(|&&m| m > limit_ms * 1_000).count();
    let identifies_after = sim.stat("identifies").await;
    println!(
        "Latency simulator send → handler call at {rate:.0} events/s: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms (target <= 20 ms), p99.9 {:.2} ms, max {:.2} ms, mean {mean:.2} ms over {} events ({seconds} s after {warmup} s warm-up; handled {handled_rate:.0} events/s); load average {load}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        ms(1.0),
        micros.len()
    );
    println!(
        "  setup: same nodes as the throughput run; send = simulator's ground-truth sent_at_us (batch flushed to the WebSocket), end = SystemTime at handler entry, matched by (shard, seq); {} over 10 ms, {} over 20 ms; {missing} sent but not handled within 2 s, {dropped} truth records dropped, IDENTIFYs {identifies} → {identifies_after}; {cpu_report}",
        over(10),
        over(20),
    );
}

/// One stream message the gateway published, to replay through bare lapin.
struct Message {
    partition: u32,
    payload: Vec<u8>,
    events: u64,
}

/// Every message of the cluster's streams up to the highest offset the handler saw,
/// interleaved across partitions.
async fn read_back(cluster: &Cluster, last_offsets: &HashMap<u32, u64>) -> Vec<Message> {
    let mut per_partition = Vec::new();
    for partition in 0..PARTITIONS {
        let Some(&last) = last_offsets.get(&partition) else {
            continue;
        };
        let mut reader = StreamReader::connect(
            &broker(),
            &cluster.topology,
            StreamId::Events(partition),
            StartAt::First,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let mut messages = VecDeque::new();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), reader.next())
                .await
                .expect("stream read back")
                .unwrap();
            let events = shardmesh_proto::decode::<EventBatch>(&message.payload)
                .map_or(0, |batch| batch.events.len() as u64);
            let offset = message.offset;
            messages.push_back(Message {
                partition,
                payload: message.payload,
                events,
            });
            if offset >= last {
                break;
            }
        }
        reader.close().await;
        per_partition.push(messages);
    }
    let mut all = Vec::new();
    while per_partition.iter().any(|queue| !queue.is_empty()) {
        for queue in &mut per_partition {
            if let Some(message) = queue.pop_front() {
                all.push(message);
            }
        }
    }
    all
}

/// Each event of `messages` as a message of its own, in the same order: what a
/// publisher that does not batch sends.
fn one_event_each(messages: &[Message]) -> Vec<Message> {
    let mut singles = Vec::new();
    for message in messages {
        let Ok(batch) = shardmesh_proto::decode::<EventBatch>(&message.payload) else {
            continue;
        };
        for event in batch.events {
            let single = EventBatch::new(batch.partition, batch.node.as_str(), vec![event]);
            singles.push(Message {
                partition: message.partition,
                payload: shardmesh_proto::encode(&single).unwrap(),
                events: 1,
            });
        }
    }
    singles
}

struct Baseline {
    seconds: f64,
    /// Messages/s consumed from 10 % to 90 % of them, the window of the pipeline's figure.
    window_rate: f64,
    load: String,
    cpu: String,
}

async fn bare_loop(messages: &[Message]) -> Baseline {
    let config = broker();
    let cluster = Cluster::new("bare", &[]);
    cluster.topology.declare(&config).await.unwrap();
    let queues: Vec<String> = (0..PARTITIONS)
        .map(|p| cluster.topology.stream_name(&StreamId::Events(p)))
        .collect();
    let mut expected = vec![0_u64; PARTITIONS as usize];
    for message in messages {
        expected[message.partition as usize] += 1;
    }

    let consumed = Arc::new(AtomicU64::new(0));
    let mut connections = Vec::new();
    let mut consumers = Vec::new();
    for (partition, queue) in queues.iter().enumerate() {
        // One connection per stream, as the consumer node reads each partition.
        let consuming = Connection::connect(&broker_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = consuming.create_channel().await.unwrap();
        connections.push(consuming);
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .unwrap();
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-stream-offset".into(),
            AMQPValue::LongString("first".into()),
        );
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await
            .unwrap();
        let want = expected[partition];
        let ack_every = u64::from(config.prefetch / 2).max(1);
        let consumed = Arc::clone(&consumed);
        consumers.push(tokio::spawn(async move {
            let mut received = 0;
            while received < want {
                let delivery = consumer.next().await.unwrap().unwrap();
                received += 1;
                consumed.fetch_add(1, Ordering::Relaxed);
                if received % ack_every == 0 || received == want {
                    channel
                        .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                        .await
                        .unwrap();
                }
            }
            Instant::now()
        }));
    }

    let publishing = Connection::connect(&broker_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = publishing.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let window = config.confirm_window as usize;
    let mut in_flight: VecDeque<lapin::PublisherConfirm> = VecDeque::with_capacity(window);
    let cpu_own = cpu_seconds(std::process::id()).unwrap_or(0.0);
    let broker_cpu = broker_pid().and_then(|pid| Some((pid, cpu_seconds(pid)?)));
    let started = Instant::now();
    let total = messages.len() as u64;
    let monitor = tokio::spawn({
        let consumed = Arc::clone(&consumed);
        async move {
            let mut progress = vec![(Instant::now(), 0_u64)];
            while progress.last().unwrap().1 < total {
                tokio::time::sleep(Duration::from_millis(5)).await;
                progress.push((Instant::now(), consumed.load(Ordering::Relaxed)));
            }
            progress
        }
    });
    for message in messages {
        if in_flight.len() >= window {
            let confirm = in_flight.pop_front().unwrap();
            assert!(confirm.await.unwrap().is_ack());
        }
        let confirm = channel
            .basic_publish(
                "".into(),
                queues[message.partition as usize].as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &message.payload,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        in_flight.push_back(confirm);
    }
    for confirm in in_flight {
        assert!(confirm.await.unwrap().is_ack());
    }
    let mut last = started;
    for consumer in consumers {
        last = last.max(consumer.await.unwrap());
    }
    let seconds = last.duration_since(started).as_secs_f64();
    let progress = monitor.await.unwrap();
    let at = |fraction: u64| {
        progress
            .iter()
            .find(|(_, consumed)| *consumed >= total * fraction / 10)
            .copied()
            .unwrap()
    };
    let ((t1, n1), (t9, n9)) = (at(1), at(9));
    let window_rate = (n9 - n1) as f64 / t9.duration_since(t1).as_secs_f64();
    let load = load_average();
    let cpu = format!(
        "CPU cores: bench process {:.2}, RabbitMQ {}",
        (cpu_seconds(std::process::id()).unwrap_or(0.0) - cpu_own) / seconds,
        broker_cpu.map_or_else(
            || "n/a".to_owned(),
            |(pid, then)| format!("{:.2}", (cpu_seconds(pid).unwrap_or(then) - then) / seconds)
        )
    );
    let _ = publishing.close(200, "done".into()).await;
    for consuming in connections {
        let _ = consuming.close(200, "done".into()).await;
    }
    cluster.delete().await;
    Baseline {
        seconds,
        window_rate,
        load,
        cpu,
    }
}

// ---------------------------------------------------------------------------------
// 3: take-over after a consumer SIGKILL

/// What the node child runs: `cluster|store path|group|node|lease ms,renew ms,fence
/// ms|announce ms,timeout ms,settle ms`.
async fn node_child_main(spec: &str) {
    let fields: Vec<&str> = spec.split('|').collect();
    let [cluster, path, group, node, lease, membership] = fields[..] else {
        panic!("{NODE_CHILD}={spec}");
    };
    let numbers =
        |text: &str| -> Vec<u64> { text.split(',').map(|n| n.parse().unwrap()).collect() };
    let (lease, membership) = (numbers(lease), numbers(membership));
    let lease = LeaseConfig {
        duration_ms: lease[0],
        renew_interval_ms: lease[1],
        fence_margin_ms: lease[2],
    };
    let membership = MembershipConfig {
        announce_interval_ms: membership[0],
        node_timeout_ms: membership[1],
        settle_delay_ms: membership[2],
    };
    let store = SqliteConfig {
        path: path.into(),
        ..SqliteConfig::default()
    };
    let settings = ConsumerSettings {
        mesh: mesh_settings(cluster, &store, node, lease, membership),
        role: ConsumerConfig {
            group: group.into(),
            ..ConsumerConfig::default()
        },
    };
    // Closing stdin drains the node; SIGKILL is what the benchmark sends.
    let shutdown = CancellationToken::new();
    let drain = shutdown.clone();
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drain.cancel();
    });
    let handler = |_: Delivery| async { Ok::<(), Infallible>(()) };
    Box::pin(shardmesh_consumer::run(settings, handler, shutdown))
        .await
        .expect("the consumer node child runs");
}

/// First handler call per partition since the last `clear`.
#[derive(Default)]
struct FirstSeen {
    at: Mutex<HashMap<u32, Instant>>,
}

impl FirstSeen {
    fn saw(&self, partition: u32) {
        self.at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(partition)
            .or_insert_with(Instant::now);
    }

    fn snapshot(&self) -> HashMap<u32, Instant> {
        self.at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn clear(&self) {
        self.at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

async fn owners(store: &SqliteStore, group: &str) -> HashMap<u32, String> {
    store
        .leases()
        .await
        .unwrap()
        .into_iter()
        .filter(|lease| lease.lease_until > SystemTime::now())
        .filter_map(|lease| match (lease.key, lease.owner) {
            (
                LeaseKey::Partition {
                    group: g,
                    partition,
                },
                Some(owner),
            ) if g == group => Some((partition, owner)),
            _ => None,
        })
        .collect()
}

async fn take_over(sim: &Sim, short: bool) {
    let timing = if short {
        short_lease()
    } else {
        default_timing()
    };
    let label = if short { "short" } else { "default" };
    let group = format!("takeover-{label}");
    let cluster = Cluster::new(&format!("kill-{label}"), &[&group]);
    let store = cluster.store().await;
    let gateway = cluster.gateway(sim).await;
    wait_for("16 shards active", DEADLINE, || {
        gateway.active() == SHARDS as usize
    })
    .await;
    let rate: f64 = env("BENCH_TAKEOVER_RATE", 1_000.0);
    sim.set_rate(rate).await;

    let (lease, membership) = &timing;
    let victim_name = format!("victim-{label}");
    let mut victim = Command::new(std::env::current_exe().unwrap())
        .env(
            NODE_CHILD,
            format!(
                "{}|{}|{group}|{victim_name}|{},{},{}|{},{},{}",
                cluster.name,
                cluster.store_config.path.display(),
                lease.duration_ms,
                lease.renew_interval_ms,
                lease.fence_margin_ms,
                membership.announce_interval_ms,
                membership.node_timeout_ms,
                membership.settle_delay_ms
            ),
        )
        .stdin(Stdio::piped())
        .spawn()
        .expect("consumer child starts");
    eventually("the child holds every partition", DEADLINE, || async {
        let held = owners(&store, &group).await.len();
        if held >= PARTITIONS as usize {
            Ok(())
        } else {
            Err(format!("{held} partitions held"))
        }
    })
    .await;

    let first = Arc::new(FirstSeen::default());
    let acquired = Arc::new(Acquired::default());
    let handler = {
        let first = Arc::clone(&first);
        move |delivery: Delivery| {
            first.saw(delivery.partition());
            async { Ok::<(), Infallible>(()) }
        }
    };
    let survivor = cluster
        .consumer(
            &format!("survivor-{label}"),
            &group,
            handler,
            &timing,
            Some(Arc::clone(&acquired)),
        )
        .await;
    let half = PARTITIONS as usize / 2;
    wait_for(
        "the survivor holds half the partitions and handles on them",
        DEADLINE,
        || {
            let owned = survivor.owned();
            let seen = first.snapshot();
            owned.len() == half && owned.iter().all(|p| seen.contains_key(p))
        },
    )
    .await;
    // A renewal round or two, so the kill lands at a random point of the child's cycle.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let held: Vec<u32> = {
        let mut held: Vec<u32> = owners(&store, &group)
            .await
            .into_iter()
            .filter(|(_, owner)| *owner == victim_name)
            .map(|(partition, _)| partition)
            .collect();
        held.sort_unstable();
        held
    };
    let load_before = load_average();

    first.clear();
    let killed = Instant::now();
    victim.kill().unwrap();
    let _ = victim.wait();
    wait_until(
        "the survivor handles on every partition of the dead node",
        DEADLINE,
        || {
            let seen = first.snapshot();
            let waiting: Vec<&u32> = held.iter().filter(|p| !seen.contains_key(p)).collect();
            if waiting.is_empty() {
                Ok(())
            } else {
                Err(format!("nothing handled yet on {waiting:?} of {held:?}"))
            }
        },
    )
    .await;
    let seen = first.snapshot();
    let acquired_at = acquired
        .at
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut to_event: Vec<f64> = held
        .iter()
        .map(|p| seen[p].duration_since(killed).as_secs_f64())
        .collect();
    let mut to_lease: Vec<f64> = held
        .iter()
        .filter_map(|p| acquired_at.get(p))
        .map(|at| at.saturating_duration_since(killed).as_secs_f64())
        .collect();
    to_event.sort_by(f64::total_cmp);
    to_lease.sort_by(f64::total_cmp);
    let span = |values: &[f64]| {
        if values.is_empty() {
            return "n/a".to_owned();
        }
        format!(
            "min {:.2} s, median {:.2} s, max {:.2} s",
            values[0],
            values[values.len() / 2],
            values[values.len() - 1]
        )
    };
    let per_partition: Vec<String> = held
        .iter()
        .map(|p| format!("{p}:{:.2}", seen[p].duration_since(killed).as_secs_f64()))
        .collect();
    println!(
        "Take-over after consumer SIGKILL ({label} timing): kill → first event handled by the survivor, per partition of the dead node: {} over {} partitions; kill → survivor's lease acquired {}; load average {load_before} before, {} after",
        span(&to_event),
        held.len(),
        span(&to_lease),
        load_average()
    );
    println!(
        "  setup: {}; dead node in a child process (SIGKILL), survivor in the bench process, 1 gateway node, simulator at {rate:.0} events/s on {SHARDS} shards; per partition (s): {}",
        describe(lease, membership),
        per_partition.join(" ")
    );

    sim.set_rate(0.0).await;
    survivor.drain().await;
    gateway.drain().await;
    cluster.delete().await;
}
