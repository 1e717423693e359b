//! The store-backed identify queue paces real twilight shards across two nodes sharing
//! one store, as the simulator (a Discord that counts violations) sees it.

use std::sync::Arc;
use std::time::Duration;

use shardmesh_gateway::StoreQueue;
use shardmesh_sim::{SimConfig, Simulator};
use shardmesh_store::{SqliteConfig, SqliteStore, Store};
use tokio::time::Instant;
use twilight_gateway::{ConfigBuilder, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _};

const SHARDS: u32 = 8;
const MAX_CONCURRENCY: u16 = 2;

#[tokio::test]
async fn shards_on_two_nodes_identify_without_a_pacing_violation() {
    let sim = Simulator::start(
        SimConfig {
            shards: SHARDS,
            guilds: 16,
            max_concurrency: MAX_CONCURRENCY,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("store.sqlite"),
        ..SqliteConfig::default()
    };
    // Two nodes: two store handles on one file, each with its own queue.
    let cluster = shardmesh_harness::unique_name("identify-queue");
    let node_a = Arc::new(SqliteStore::open(&config, &cluster).await.unwrap());
    let node_b = Arc::new(SqliteStore::open(&config, &cluster).await.unwrap());

    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..SHARDS {
        let store = if id % 2 == 0 { &node_a } else { &node_b };
        let queue = StoreQueue::new(Arc::clone(store), u32::from(MAX_CONCURRENCY));
        let config = ConfigBuilder::new(sim.config().token.expose().to_owned(), Intents::GUILDS)
            .proxy_url(sim.gateway_url().to_owned())
            .queue(queue)
            .build();
        let mut shard = Shard::with_config(ShardId::new(id, SHARDS), config);
        tasks.push(tokio::spawn(async move {
            // Read until READY: the shard has identified.
            while let Some(event) = shard.next_event(EventTypeFlags::READY).await {
                if event.is_ok() {
                    return Instant::now();
                }
            }
            panic!("shard {id} closed before READY");
        }));
    }
    let mut ready_at = Vec::new();
    for task in tasks {
        let at = tokio::time::timeout(Duration::from_secs(40), task)
            .await
            .expect("every shard identifies within 40 s")
            .unwrap();
        ready_at.push(at - started);
    }

    let stats = sim.stats();
    assert_eq!(stats.identifies, u64::from(SHARDS));
    assert_eq!(stats.pacing_violations, 0);
    // 4 rounds of 2 buckets, 5 s apart: the last round starts at 15 s.
    let last = ready_at.iter().max().unwrap();
    assert!(
        *last >= Duration::from_secs(15),
        "8 shards in {last:?} breaks pacing"
    );
    node_a.delete_cluster().await.unwrap();
    sim.shutdown().await;
}
