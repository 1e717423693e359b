//! What a gateway command costs in time: latency from the sender's call to the
//! simulator's receipt at a steady rate over many shards, and the most commands per
//! second the mesh carries when Discord's per-shard limit (about 115 per 60 s per
//! connection) is not the limit.
//!
//! One in-process simulator (Discord's 41.25 s heartbeat), one [`GatewayNode`] holding
//! every shard, the real RabbitMQ (`SHARDMESH_TEST_AMQP_URL`), a SQLite store in a
//! temporary directory, commands sent with [`CommandSender`] as the library's
//! `Commands` does. Both clocks are this process's, so the latencies are exact.
//!
//! `cargo bench -p shardmesh-gateway --bench commands`. Knobs (environment):
//! `BENCH_SHARDS` (256), `BENCH_LATENCY_SHARDS` (64) and `BENCH_RATE` (100 commands/s)
//! for `BENCH_SECONDS` (20) of the steady run, `BENCH_PER_SHARD` (50 commands to each of
//! the `BENCH_SHARDS`, under the per-shard limit) and `BENCH_SENDERS` (4 concurrent
//! senders) for the throughput run.
//!
//! [`GatewayNode`]: shardmesh_gateway::GatewayNode
//! [`CommandSender`]: shardmesh_broker::CommandSender

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::missing_panics_doc,
    clippy::too_many_lines
)]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shardmesh_broker::{BrokerConfig, BrokerUrl, CommandSender, Topology};
use shardmesh_gateway::{BotToken, GatewayConfig, GatewayNode, GatewaySettings, ShardPhase};
use shardmesh_harness::knob as env;
use shardmesh_harness::{
    broker_url, presence_frame, received_presences_since, unique_name, wait_for,
};
use shardmesh_mesh::{ClusterSettings, LeaseConfig, MembershipConfig, MeshSettings, NodeSettings};
use shardmesh_proto::{CommandEnvelope, WIRE_VERSION};
use shardmesh_sim::{SimConfig, Simulator};
use shardmesh_store::{SqliteConfig, SqliteStore, Store as _, StoreConfig};
use tokio_util::sync::CancellationToken;
use twilight_gateway::Intents;

const PARTITIONS: u32 = 16;
const DEADLINE: Duration = Duration::from_secs(300);

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

fn broker() -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(broker_url()),
        ..BrokerConfig::default()
    }
}

fn presence(marker: u64, shard: u32, shard_count: u32) -> CommandEnvelope {
    CommandEnvelope {
        v: WIRE_VERSION,
        id: format!("bench-{marker}"),
        shard,
        shard_count,
        op: 3,
        payload: presence_frame(marker),
        expires_at_ms: None,
        sent_by: "bench".into(),
        created_at_ms: unix_us() / 1_000,
    }
}

/// Receive times at the simulator by marker, read from `since` on; returns the cursor
/// after the last record.
fn receipts(sim: &Simulator, since: u64, into: &mut HashMap<u64, u64>) -> u64 {
    let mut arrived = Vec::new();
    let next = received_presences_since(sim, since, &mut arrived);
    into.extend(
        arrived
            .iter()
            .map(|received| (received.marker, received.at_us)),
    );
    next
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1_000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let shards: u32 = env("BENCH_SHARDS", 256);
    let latency_shards: u32 = env("BENCH_LATENCY_SHARDS", 64).min(shards);
    let rate: u64 = env("BENCH_RATE", 100);
    let seconds: u64 = env("BENCH_SECONDS", 20);
    let per_shard: u64 = env("BENCH_PER_SHARD", 50);
    let senders: u64 = env("BENCH_SENDERS", 4);

    let sim = Simulator::start(
        SimConfig {
            shards,
            guilds: shards,
            max_concurrency: u16::try_from(shards).unwrap_or(u16::MAX),
            rate: 0.0,
            identify_interval_ms: 0,
            identify_slack_ms: 0,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the simulator starts");
    let name = unique_name("bench-cmd");
    let dir = tempfile::tempdir().unwrap();
    let store_config = SqliteConfig {
        path: dir.path().join("store.sqlite"),
        ..SqliteConfig::default()
    };
    let topology = Topology::new(&name, PARTITIONS, &broker())
        .unwrap()
        .with_command_queues(shards);
    let settings = GatewaySettings {
        mesh: MeshSettings {
            cluster: ClusterSettings {
                name: name.clone(),
                partitions: PARTITIONS,
                shard_count: shards,
                max_concurrency: shards,
            },
            node: NodeSettings {
                id: "a".into(),
                capacity: 1,
                http_bind: String::new(),
            },
            store: StoreConfig {
                sqlite: store_config.clone(),
                ..StoreConfig::default()
            },
            broker: broker(),
            lease: LeaseConfig::default(),
            membership: MembershipConfig::default(),
        },
        role: GatewayConfig {
            token: BotToken::new(sim.config().token.expose()),
            intents: Intents::GUILDS.bits(),
            gateway_url: Some(sim.gateway_url().to_owned()),
            api_url: Some(format!("http://{}", sim.http_proxy())),
            ..GatewayConfig::default()
        },
    };
    let mut node = GatewayNode::spawn(settings, &CancellationToken::new());
    wait_for("every shard active", DEADLINE, || {
        let statuses = node.shards();
        statuses.len() == shards as usize
            && statuses
                .iter()
                .all(|status| status.phase == ShardPhase::Active)
    })
    .await;
    println!("commands: {shards} shards active on one gateway node");

    // Steady: `rate` a second, round robin over the first `latency_shards`.
    let mut sender = CommandSender::connect(&broker(), &topology, CancellationToken::new())
        .await
        .unwrap();
    let total = rate * seconds;
    let mut sent_at = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for marker in 0..total {
        tick.tick().await;
        let shard = (marker % u64::from(latency_shards)) as u32;
        sent_at.insert(marker, unix_us());
        sender.send(&presence(marker, shard, shards)).await.unwrap();
    }
    let mut received = HashMap::new();
    let mut cursor = 0;
    wait_for("every steady command received", DEADLINE, || {
        cursor = receipts(&sim, cursor, &mut received);
        received.len() as u64 >= total
    })
    .await;
    let mut latencies: Vec<u64> = sent_at
        .iter()
        .map(|(marker, sent)| received[marker].saturating_sub(*sent))
        .collect();
    latencies.sort_unstable();
    println!(
        "commands: steady {rate}/s over {latency_shards} shards for {seconds} s ({total} commands): \
         call to receipt p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        *latencies.last().unwrap() as f64 / 1_000.0
    );

    // Throughput: `per_shard` to every shard from `senders` senders, as fast as they go.
    let first = total;
    let burst = u64::from(shards) * per_shard;
    let began = Instant::now();
    let mut sending = Vec::new();
    for lane in 0..senders {
        let topology = topology.clone();
        sending.push(tokio::spawn(async move {
            let mut sender = CommandSender::connect(&broker(), &topology, CancellationToken::new())
                .await
                .unwrap();
            let mut marker = first + lane;
            while marker < first + burst {
                let shard = ((marker - first) % u64::from(shards)) as u32;
                sender.send(&presence(marker, shard, shards)).await.unwrap();
                marker += senders;
            }
            sender.close().await;
        }));
    }
    for lane in sending {
        lane.await.unwrap();
    }
    let accepted = began.elapsed();
    wait_for("every burst command received", DEADLINE, || {
        cursor = receipts(&sim, cursor, &mut received);
        received.len() as u64 >= total + burst
    })
    .await;
    let delivered = began.elapsed();
    println!(
        "commands: {burst} to {shards} shards ({per_shard} each) from {senders} senders: accepted at \
         {:.0}/s, written to Discord at {:.0}/s ({:.2} s in all)",
        burst as f64 / accepted.as_secs_f64(),
        burst as f64 / delivered.as_secs_f64(),
        delivered.as_secs_f64()
    );
    let stats = sim.stats();
    assert_eq!(
        stats.rate_limit_closes, 0,
        "a connection was closed with 4008"
    );

    sender.close().await;
    node.stop().await.unwrap();
    SqliteStore::open(&store_config, &name)
        .await
        .unwrap()
        .delete_cluster()
        .await
        .unwrap();
    topology.delete(&broker()).await.unwrap();
    sim.shutdown().await;
}
