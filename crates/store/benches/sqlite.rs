//! Throughput of `SqliteStore` on one file: lease renewals per second and IDENTIFY grant
//! calls per second, with 1 and 8 concurrent callers.
//!
//! Run with `cargo bench -p shardmesh-store --bench sqlite`. Plain `main`, no harness:
//! each figure is operations completed in a fixed window divided by the window.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shardmesh_store::{
    IdentifyGrant, LeaseKey, LeaseState, ShardSession, SqliteConfig, SqliteStore, Store,
};
use tokio::task::JoinSet;

/// How long each figure is measured.
const WINDOW: Duration = Duration::from_secs(3);

/// Buckets each identify caller cycles through: the first pass is granted, later passes
/// within 5 s are answered `RetryAfter`, as under real contention.
const BUCKETS_PER_CALLER: u32 = 64;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SqliteConfig {
        path: dir.path().join("bench.sqlite"),
        ..SqliteConfig::default()
    };
    println!(
        "sqlite store at {}, {WINDOW:?} per figure",
        config.path.display()
    );
    for (callers, handles) in [(1, 1), (8, 1), (8, 8)] {
        let stores = open(&config, &format!("renew-{callers}-{handles}"), handles).await;
        let (renewals, elapsed) = renewals(&stores, callers).await;
        println!(
            "lease renewals/s (conditional renew + shard session write, {callers} caller(s), \
             {handles} handle(s)): {:.0}",
            per_second(renewals, elapsed)
        );
    }
    for (callers, handles) in [(1, 1), (8, 1), (8, 8)] {
        let stores = open(&config, &format!("identify-{callers}-{handles}"), handles).await;
        let (granted, paced, elapsed) = identify_calls(&stores, callers).await;
        println!(
            "identify grant calls/s (answers: granted + retry-after, {callers} caller(s) over \
             {} buckets, {handles} handle(s)): {:.0} ({granted} granted, {paced} retry-after)",
            callers * BUCKETS_PER_CALLER,
            per_second(granted + paced, elapsed)
        );
    }
}

/// `handles` connections to one cluster; callers share them round-robin.
async fn open(config: &SqliteConfig, cluster: &str, handles: usize) -> Vec<Arc<SqliteStore>> {
    let mut stores = Vec::new();
    for _ in 0..handles {
        let store = SqliteStore::open(config, cluster)
            .await
            .expect("open store");
        stores.push(Arc::new(store));
    }
    stores
}

/// Each caller holds its own shard lease and renews it in a loop, saving a new seq
/// every time, as a gateway does.
async fn renewals(stores: &[Arc<SqliteStore>], callers: u32) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for caller in 0..callers {
        let store = Arc::clone(&stores[caller as usize % stores.len()]);
        let done = Arc::clone(&done);
        tasks.spawn(async move {
            let key = LeaseKey::Shard(caller);
            let lease = store
                .acquire(&key, "bench", Duration::from_secs(60))
                .await
                .expect("acquire")
                .expect("free key");
            let grant = shardmesh_store::LeaseGrant {
                key,
                owner: "bench".into(),
                epoch: lease.epoch,
            };
            let mut seq = 0;
            while start.elapsed() < WINDOW {
                seq += 1;
                let state = LeaseState::Shard(ShardSession {
                    session_id: "0123456789abcdef".into(),
                    seq,
                    resume_url: "wss://gateway-us-east1-b.discord.gg".into(),
                });
                let renewed = store
                    .renew(&grant, Duration::from_secs(60), &state)
                    .await
                    .expect("renew");
                assert!(renewed, "lost the lease");
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tasks.join_all().await;
    (done.load(Ordering::Relaxed), start.elapsed())
}

/// Each caller asks for slots in its own buckets in turn, counting both answers.
async fn identify_calls(stores: &[Arc<SqliteStore>], callers: u32) -> (u64, u64, Duration) {
    let granted = Arc::new(AtomicU64::new(0));
    let paced = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for caller in 0..callers {
        let store = Arc::clone(&stores[caller as usize % stores.len()]);
        let (granted, paced) = (Arc::clone(&granted), Arc::clone(&paced));
        tasks.spawn(async move {
            let mut call = 0;
            while start.elapsed() < WINDOW {
                let bucket = caller * BUCKETS_PER_CALLER + call % BUCKETS_PER_CALLER;
                call += 1;
                match store.grant_identify(bucket).await.expect("grant") {
                    IdentifyGrant::Granted => granted.fetch_add(1, Ordering::Relaxed),
                    IdentifyGrant::RetryAfter(_) => paced.fetch_add(1, Ordering::Relaxed),
                    refused @ IdentifyGrant::BudgetExhausted { .. } => {
                        panic!("no budget recorded, yet {refused:?}")
                    }
                };
            }
        });
    }
    tasks.join_all().await;
    (
        granted.load(Ordering::Relaxed),
        paced.load(Ordering::Relaxed),
        start.elapsed(),
    )
}

#[allow(clippy::cast_precision_loss)] // counts stay far below 2^52
fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}
