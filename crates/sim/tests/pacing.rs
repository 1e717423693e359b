//! Identify pacing: twilight's queue keeps to it; bypassing it is caught.

mod common;

use std::time::Duration;

use common::{shard_with, start, wait_until};
use shardmesh_sim::SimConfig;
use twilight_gateway::Intents;
use twilight_gateway::queue::InMemoryQueue;

#[tokio::test]
async fn eight_shards_paced_by_twilight_make_no_violations() {
    let sim = start(SimConfig {
        shards: 8,
        guilds: 16,
        max_concurrency: 2,
        ..SimConfig::default()
    })
    .await;
    let queue = InMemoryQueue::new(2, 1_000, Duration::from_secs(86_400), 1_000);
    let mut clients: Vec<_> = (0..8)
        .map(|id| shard_with(&sim, id, 8, Intents::all(), queue.clone()))
        .collect();
    // Poll every shard until all are ready: buckets of 2, one identify per 5 s each,
    // so about (8 / 2 - 1) * 5 s = 15 s.
    let pumps = clients
        .iter_mut()
        .map(|client| client.pump_until("READY burst", |c| c.count("GUILD_CREATE") == 2));
    futures_util::future::join_all(pumps).await;
    let stats = sim.stats();
    assert_eq!(stats.identifies, 8);
    assert_eq!(stats.pacing_violations, 0);
    assert_eq!(stats.session_start_remaining, 1_000 - 8);
    for (id, client) in (0..).zip(&mut clients) {
        assert!(client.invalid_sessions.is_empty());
        client.assert_matches_truth(&sim, id).await;
    }
    drop(clients);
    sim.shutdown().await;
}

#[tokio::test]
async fn identifies_that_bypass_pacing_are_refused_and_counted() {
    let sim = start(SimConfig {
        shards: 4,
        guilds: 4,
        max_concurrency: 2,
        ..SimConfig::default()
    })
    .await;
    // Shards 0 and 2 share bucket 0; a queue that grants at once sends both together.
    let mut first = shard_with(&sim, 0, 4, Intents::all(), common::instant_queue());
    first.pump_until("READY", |c| c.count("READY") == 1).await;
    let mut second = shard_with(&sim, 2, 4, Intents::all(), common::instant_queue());
    second
        .pump_until("op 9 for the early identify", |c| {
            c.invalid_sessions == [false]
        })
        .await;
    wait_until("the violation to be counted", || {
        sim.stats().pacing_violations >= 1
    })
    .await;
    assert_eq!(second.count("READY"), 0);
    // A shard of the other bucket is not affected.
    let mut other = shard_with(&sim, 1, 4, Intents::all(), common::instant_queue());
    other.pump_until("READY", |c| c.count("READY") == 1).await;
    drop((first, second, other));
    sim.shutdown().await;
}
