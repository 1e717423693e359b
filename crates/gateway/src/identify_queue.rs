//! twilight's identify queue, backed by the store so pacing holds across the cluster.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use shardmesh_store::{IdentifyGrant, Store};
use tokio::sync::oneshot;
use twilight_gateway::queue::Queue;

/// Longest wait between two store requests, so a shard notices a refilled budget or a
/// recovered store without waiting out a long `until`.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// First wait after a store error; doubled up to [`MAX_WAIT`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Grants IDENTIFY permission to shards through the store: one per bucket
/// (`shard % max_concurrency`) per 5 s across every node of the cluster, and never beyond
/// the daily session-start budget. Install it with `ConfigBuilder::queue`.
///
/// A shard that stops waiting (closed, dropped) gives up its place without spending a
/// grant, unless the grant was made in the instant it stopped.
pub struct StoreQueue<S> {
    store: Arc<S>,
    max_concurrency: u32,
}

impl<S> StoreQueue<S> {
    /// A queue over `store` for a cluster whose Discord `max_concurrency` is given
    /// (0 is treated as 1).
    pub fn new(store: Arc<S>, max_concurrency: u32) -> Self {
        Self {
            store,
            max_concurrency: max_concurrency.max(1),
        }
    }
}

impl<S> std::fmt::Debug for StoreQueue<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreQueue")
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Queue for StoreQueue<S> {
    /// # Panics
    ///
    /// Outside a Tokio runtime: the wait runs as a task.
    fn enqueue(&self, shard: u32) -> oneshot::Receiver<()> {
        let (permit, waiter) = oneshot::channel();
        let bucket = shard % self.max_concurrency;
        tokio::spawn(wait_for_grant(
            Arc::clone(&self.store),
            shard,
            bucket,
            permit,
        ));
        waiter
    }
}

/// Asks the store until it grants `bucket`, then lets the shard identify.
async fn wait_for_grant<S: Store>(
    store: Arc<S>,
    shard: u32,
    bucket: u32,
    mut permit: oneshot::Sender<()>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let answer = tokio::select! {
            () = permit.closed() => return,
            answer = store.grant_identify(bucket) => answer,
        };
        let wait = match answer {
            Ok(IdentifyGrant::Granted) => {
                if permit.send(()).is_err() {
                    tracing::warn!(
                        shard,
                        bucket,
                        "shard stopped waiting just after its identify was granted"
                    );
                }
                return;
            }
            Ok(IdentifyGrant::RetryAfter(wait)) => wait,
            Ok(IdentifyGrant::BudgetExhausted { until }) => {
                let wait = until
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                tracing::warn!(
                    shard,
                    bucket,
                    wait_secs = wait.as_secs(),
                    "daily session-start budget spent, shard waits for the reset"
                );
                wait
            }
            Err(error) => {
                tracing::warn!(shard, bucket, %error, "identify grant failed, retrying");
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_WAIT);
                wait
            }
        };
        tokio::select! {
            () = permit.closed() => return,
            () = tokio::time::sleep(wait.min(MAX_WAIT)) => {}
        }
    }
}
