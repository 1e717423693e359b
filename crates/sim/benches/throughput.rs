//! Throughput of the simulator: sustained dispatches/s delivered to 1,000 connected
//! shards, and the simulator's memory per connection.
//!
//! The simulator runs in a child process (this same binary, re-executed) so its RSS
//! and CPU are its own; this process runs 1,000 lightweight WebSocket clients that
//! identify and count what they receive.
//!
//! `cargo bench -p shardmesh-sim --bench throughput`. Knobs (environment):
//! `BENCH_SHARDS` (1000), `BENCH_GUILDS` (2 per shard), `BENCH_RATE` (60000 dispatches/s
//! asked of the generator), `BENCH_SECONDS` (10, measured after a 3 s warm-up),
//! `BENCH_REPLAY` (replay buffer per session, 1024), `BENCH_ZLIB` (unset: plain text).

#![allow(clippy::cast_precision_loss, clippy::missing_panics_doc)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shardmesh_sim::{SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const CHILD: &str = "SHARDMESH_SIM_BENCH_CHILD";

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let shards: u32 = env("BENCH_SHARDS", 1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sim = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("simulator child starts");
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let addr: SocketAddr = lines.next().unwrap().unwrap().parse().unwrap();
    let pid = sim.id();
    runtime.block_on(clients(addr, pid, shards));
    // Closing stdin tells the child to shut down.
    drop(sim.stdin.take());
    let status = sim.wait().unwrap();
    assert!(status.success(), "simulator child failed: {status}");
}

/// The simulator process: starts, prints its address, runs until stdin closes.
fn child() {
    let shards: u32 = env("BENCH_SHARDS", 1_000);
    let config = SimConfig {
        shards,
        guilds: env("BENCH_GUILDS", shards * 2),
        max_concurrency: 1,
        identify_interval_ms: 0,
        identify_slack_ms: 0,
        heartbeat_interval_ms: 600_000,
        replay_capacity: env("BENCH_REPLAY", 1_024),
        ..SimConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
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

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
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
    serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
}

/// Counters every client adds to.
#[derive(Default)]
struct Received {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Received {
    fn load(&self) -> (u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// One lightweight shard: identify, then count (and inflate) everything received.
fn spawn_client(
    addr: SocketAddr,
    shard: u32,
    shards: u32,
    zlib: bool,
    received: Arc<Received>,
) -> tokio::task::JoinHandle<()> {
    let compress = if zlib { "&compress=zlib-stream" } else { "" };
    let url = format!("ws://{addr}/?v=10&encoding=json{compress}");
    tokio::spawn(async move {
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connects");
        let mut inflate = flate2::Decompress::new(true);
        let mut out = Vec::new();
        let identify = json!({"op": 2, "d": {
            "token": "sim-token", "intents": shardmesh_sim::VALID_INTENTS, "shard": [shard, shards],
            "properties": {"os": "linux", "browser": "bench", "device": "bench"},
        }});
        socket
            .send(Message::text(identify.to_string()))
            .await
            .unwrap();
        while let Some(Ok(message)) = socket.next().await {
            let len = match message {
                Message::Text(text) => text.len(),
                Message::Binary(data) => {
                    // Real clients inflate every message: include that cost.
                    out.clear();
                    out.reserve(data.len() * 8 + 256);
                    inflate
                        .decompress_vec(&data, &mut out, flate2::FlushDecompress::Sync)
                        .unwrap();
                    out.len()
                }
                Message::Close(_) => break,
                _ => continue,
            };
            received.messages.fetch_add(1, Ordering::Relaxed);
            received.bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
    })
}

/// Figures of one measured window.
struct Window {
    seconds: f64,
    received: u64,
    bytes: u64,
    generated: u64,
    sent: u64,
    sim_cpu: f64,
    own_cpu: f64,
}

/// Measures for `seconds` after the traffic warmed up.
async fn measure(addr: SocketAddr, pid: u32, received: &Received, seconds: u64) -> Window {
    let stats = |v: &Value, key: &str| v[key].as_u64().unwrap();
    let (count0, bytes0) = received.load();
    let (sim_cpu0, own_cpu0, at0) = (
        cpu_ticks(pid),
        cpu_ticks(std::process::id()),
        Instant::now(),
    );
    let before = http(addr, "GET", "/_sim/stats", "").await;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = http(addr, "GET", "/_sim/stats", "").await;
    let (count, bytes) = received.load();
    Window {
        seconds: at0.elapsed().as_secs_f64(),
        received: count - count0,
        bytes: bytes - bytes0,
        generated: stats(&after, "generated") - stats(&before, "generated"),
        sent: stats(&after, "dispatches_sent") - stats(&before, "dispatches_sent"),
        sim_cpu: (cpu_ticks(pid) - sim_cpu0) as f64 / 100.0,
        own_cpu: (cpu_ticks(std::process::id()) - own_cpu0) as f64 / 100.0,
    }
}

async fn clients(addr: SocketAddr, pid: u32, shards: u32) {
    let zlib = std::env::var_os("BENCH_ZLIB").is_some();
    let rate: f64 = env("BENCH_RATE", 60_000.0);
    let received = Arc::new(Received::default());
    let rss_idle = rss_kib(pid);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..shards {
        tasks.push(spawn_client(
            addr,
            shard,
            shards,
            zlib,
            Arc::clone(&received),
        ));
        if shard % 100 == 99 {
            tokio::task::yield_now().await;
        }
    }
    // HELLO + READY + GUILD_CREATE per guild for every shard.
    let burst = u64::from(shards) * 2 + u64::from(env("BENCH_GUILDS", shards * 2));
    while received.load().0 < burst {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "shards did not connect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_time = started.elapsed();
    let rss_connected = rss_kib(pid);
    assert_eq!(
        http(addr, "GET", "/_sim/stats", "").await["sessions"],
        shards
    );

    http(
        addr,
        "POST",
        "/_sim/traffic/rate",
        &json!({"rate": rate}).to_string(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let w = measure(addr, pid, &received, env("BENCH_SECONDS", 10)).await;
    let rss_traffic = rss_kib(pid);
    http(addr, "POST", "/_sim/traffic/stop", "").await;
    for task in &tasks {
        task.abort();
    }

    let mib = |kib: u64| kib as f64 / 1024.0;
    let per_conn = (rss_connected.saturating_sub(rss_idle)) as f64 / f64::from(shards);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let compression = if zlib { "zlib-stream" } else { "no" };
    println!("shardmesh-sim throughput benchmark");
    println!(
        "  shards connected:            {shards} in {:.2} s ({compression} compression)",
        connect_time.as_secs_f64()
    );
    println!("  target rate:                 {rate:.0} dispatches/s");
    println!(
        "  received by clients:         {:.0} dispatches/s ({:.1} MB/s) over {:.1} s",
        w.received as f64 / w.seconds,
        w.bytes as f64 / w.seconds / 1e6,
        w.seconds
    );
    println!(
        "  written by the simulator:    {:.0} dispatches/s",
        w.sent as f64 / w.seconds
    );
    println!(
        "  generated by the simulator:  {:.0} dispatches/s",
        w.generated as f64 / w.seconds
    );
    println!(
        "  simulator CPU:               {:.2} cores",
        w.sim_cpu / w.seconds
    );
    println!(
        "  client process CPU:          {:.2} cores",
        w.own_cpu / w.seconds
    );
    println!("  machine load average:        {}", load.join(" "));
    println!("  simulator RSS idle:          {:.1} MiB", mib(rss_idle));
    println!(
        "  simulator RSS connected:     {:.1} MiB ({per_conn:.1} KiB per connection+session)",
        mib(rss_connected)
    );
    println!(
        "  simulator RSS under traffic: {:.1} MiB (replay buffers of {} dispatches per session fill up)",
        mib(rss_traffic),
        env("BENCH_REPLAY", 1_024)
    );
}
