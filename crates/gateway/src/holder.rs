//! The gateway's side of the lease keeper: one shard task per shard lease, started,
//! saved, handed over and dropped as the mesh decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use shardmesh_mesh::{LeaseGuard, LeaseHolder};
use shardmesh_proto::{ShardDiag, WorkDiag};
use shardmesh_store::{ClusterSpec, LeaseKey, LeaseState, Store};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use shardmesh_broker::CommandInbox;

use crate::commands::{self, CommandFeed};
use crate::metrics::phase_name;
use crate::shard::{self, Context, Reconnect, ShardRunner, Stop};
use crate::status::{Counters, GatewayCounters, ShardPhase, ShardStatus, ShardView};
use crate::{GatewayConfig, PublishHandle};

/// A gateway node's shards: a [`LeaseHolder`] for `shard/<n>` leases, given to
/// [`shardmesh_mesh::run`] as the node's holder.
///
/// - `start` builds a twilight shard for the lease (resuming the session it carries,
///   else identifying through the cluster-wide [`StoreQueue`](crate::StoreQueue)) and
///   spawns its task; every dispatch goes to the publish loop with the lease's epoch.
/// - `state` is the session with its last broker-confirmed seq, saved by renewals.
/// - `hand_over` closes with RESUME, reads to the close echo, waits for the confirms
///   of everything read and returns the session at its last confirmed seq.
/// - `lost` stops the shard at once and saves nothing.
///
/// A shard also stops on its own when its lease lapses (self-fence). Clones share the
/// same shards.
pub struct GatewayShards<S: Store> {
    inner: Arc<Inner<S>>,
}

struct Inner<S: Store> {
    context: Arc<Context<S>>,
    /// Shard tasks by shard id. A std `Mutex`: never held across an `.await`.
    running: Mutex<HashMap<u32, Running>>,
}

struct Running {
    stop: watch::Sender<Option<Stop>>,
    reconnect: mpsc::UnboundedSender<Reconnect>,
    task: JoinHandle<()>,
    view: Arc<Mutex<ShardView>>,
}

impl<S: Store> Clone for GatewayShards<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store> std::fmt::Debug for GatewayShards<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayShards")
            .field("node", &self.inner.context.node)
            .field("shards", &self.inner.lock().len())
            .finish_non_exhaustive()
    }
}

impl<S: Store> GatewayShards<S> {
    /// Shards of node `node` (its mesh id, stamped on the action log) in a cluster of
    /// `spec`, publishing through `publish` and taking gateway commands from `inbox`.
    ///
    /// `shutdown` stops every shard at once, without a hand-over, as a crash would
    /// (Discord keeps the sessions resumable); cancel it only after the mesh node has
    /// drained. Nothing is spawned before the first lease starts.
    pub fn new(
        config: GatewayConfig,
        spec: ClusterSpec,
        node: impl Into<String>,
        store: Arc<S>,
        publish: PublishHandle,
        inbox: Arc<CommandInbox>,
        shutdown: CancellationToken,
    ) -> Self {
        let context = Context {
            config,
            spec,
            node: node.into(),
            store,
            publish,
            shutdown,
            tracker: TaskTracker::new(),
            counters: Counters::default(),
            inbox,
        };
        Self {
            inner: Arc::new(Inner {
                context: Arc::new(context),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The shards this node owns now, by shard id.
    pub fn statuses(&self) -> Vec<ShardStatus> {
        let watermarks = self.inner.context.publish.watermarks();
        let mut statuses: Vec<ShardStatus> = self
            .inner
            .lock()
            .iter()
            .map(|(&shard, running)| {
                let view = lock(&running.view);
                view.status(shard, watermarks.confirmed(view.source))
            })
            .collect();
        statuses.sort_by_key(|status| status.shard);
        statuses
    }

    /// Counters since start.
    pub fn counters(&self) -> GatewayCounters {
        self.inner.context.counters.snapshot()
    }

    /// Waits until every shard task (and action log write) has ended; call it after
    /// the node drained or `shutdown` was cancelled.
    pub async fn stopped(&self) {
        let tracker = &self.inner.context.tracker;
        tracker.close();
        tracker.wait().await;
    }

    /// Takes the shard task of `key` out of the running set.
    fn take(&self, key: &LeaseKey) -> Option<(u32, Running)> {
        let LeaseKey::Shard(shard) = key else {
            return None;
        };
        self.inner
            .lock()
            .remove(shard)
            .map(|running| (*shard, running))
    }

    /// Stops the task, waits for it to end, and returns its view.
    async fn stop(shard: u32, running: Running, stop: Stop) -> Arc<Mutex<ShardView>> {
        running.stop.send_replace(Some(stop));
        if let Err(error) = running.task.await {
            tracing::error!(shard, %error, "shard task failed");
        }
        running.view
    }
}

impl<S: Store> Inner<S> {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lock(view: &Mutex<ShardView>) -> MutexGuard<'_, ShardView> {
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: Store> LeaseHolder for GatewayShards<S> {
    async fn start(&self, guard: LeaseGuard) {
        let context = &self.inner.context;
        let key = &guard.lease().key;
        let LeaseKey::Shard(id) = *key else {
            tracing::error!(key = %key, "a gateway node was given a lease that is not a shard's");
            return;
        };
        if id >= context.spec.shard_count {
            tracing::error!(
                shard = id,
                shard_count = context.spec.shard_count,
                "shard lease outside the cluster's shard count, ignored"
            );
            return;
        }
        let saved = guard.lease().state.clone();
        let source = context.publish.new_source();
        let view = Arc::new(Mutex::new(ShardView::new(guard.epoch(), &saved, source)));
        let had_session = !lock(&view).session_id.is_empty();
        tracing::info!(
            shard = id,
            epoch = guard.epoch(),
            resume = had_session,
            seq = lock(&view).base_seq,
            "starting shard"
        );
        let (stop, stop_rx) = watch::channel(None);
        let (reconnect, reconnect_rx) = mpsc::unbounded_channel();
        let runner = ShardRunner {
            id,
            shard: shard::build(id, context, &saved),
            guard,
            stop: stop_rx,
            context: Arc::clone(context),
            view: Arc::clone(&view),
            had_session,
            commands: CommandFeed::new(
                context.inbox.subscribe(id, commands::WINDOW),
                &context.node,
            ),
            reconnect: reconnect_rx,
        };
        let task = context.tracker.spawn(runner.run());
        let previous = self.inner.lock().insert(
            id,
            Running {
                stop,
                reconnect,
                task,
                view,
            },
        );
        if let Some(previous) = previous {
            // The keeper never starts a held key twice; if it did, the old task must
            // not act next to the new one.
            tracing::error!(shard = id, "shard started twice, stopping the older task");
            previous.stop.send_replace(Some(Stop::Lost));
        }
    }

    fn state(&self, key: &LeaseKey) -> LeaseState {
        let LeaseKey::Shard(shard) = key else {
            return LeaseState::Empty;
        };
        let watermarks = self.inner.context.publish.watermarks();
        let running = self.inner.lock();
        running.get(shard).map_or(LeaseState::Empty, |running| {
            let view = lock(&running.view);
            LeaseState::Shard(view.session(watermarks.confirmed(view.source)))
        })
    }

    async fn hand_over(&self, key: &LeaseKey) -> LeaseState {
        let Some((shard, running)) = self.take(key) else {
            return LeaseState::Empty;
        };
        let context = &self.inner.context;
        let began = tokio::time::Instant::now();
        let view = Self::stop(shard, running, Stop::HandOver).await;
        let (source, queued) = {
            let view = lock(&view);
            (view.source, view.queued_seq)
        };
        let watermarks = context.publish.watermarks();
        if let Some(queued) = queued {
            let confirmed = tokio::time::timeout(context.config.confirm_timeout(), async {
                tokio::select! {
                    () = watermarks.wait_for(source, queued) => true,
                    () = context.publish.closed() => false,
                }
            })
            .await;
            if confirmed != Ok(true) {
                tracing::warn!(
                    shard,
                    queued,
                    "not everything confirmed; the next owner resumes before the rest"
                );
            }
        }
        let session = lock(&view).session(watermarks.confirmed(source));
        watermarks.forget(source);
        Counters::bump(&context.counters.hand_overs);
        tracing::info!(
            shard,
            session = %session.session_id,
            seq = session.seq,
            took_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            "shard handed over"
        );
        LeaseState::Shard(session)
    }

    async fn lost(&self, key: &LeaseKey) {
        let Some((shard, running)) = self.take(key) else {
            return;
        };
        let view = Self::stop(shard, running, Stop::Lost).await;
        self.inner
            .context
            .publish
            .watermarks()
            .forget(lock(&view).source);
        tracing::warn!(shard, "shard lease lost, shard stopped");
    }

    fn diagnose(&self) -> WorkDiag {
        let statuses = self.statuses();
        WorkDiag {
            publisher_backlog: statuses.iter().map(ShardStatus::unconfirmed).sum(),
            shards: statuses
                .into_iter()
                .map(|status| ShardDiag {
                    shard: status.shard,
                    phase: phase_name(status.phase).to_owned(),
                    session_id: status.session.session_id,
                    seq: status.session.seq,
                    latency_ms: status
                        .latency
                        .map(|rtt| u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX)),
                    last_event_at_ms: status.last_event_at_ms,
                    active_since_ms: status.active_since_ms,
                })
                .collect(),
            partitions: Vec::new(),
        }
    }

    fn restart(&self, key: &LeaseKey, fresh: bool) -> Result<(), String> {
        let LeaseKey::Shard(shard) = key else {
            return Err(format!("{key} is not a shard"));
        };
        let running = self.inner.lock();
        let Some(running) = running.get(shard) else {
            return Err(format!("shard {shard} is not running on this node"));
        };
        let phase = lock(&running.view).phase;
        if matches!(
            phase,
            ShardPhase::Draining | ShardPhase::FatallyClosed | ShardPhase::Stopped
        ) {
            return Err(format!(
                "shard {shard} is {}: nothing to restart",
                phase_name(phase)
            ));
        }
        let reconnect = if fresh {
            Reconnect::NewSession
        } else {
            Reconnect::Resume
        };
        running
            .reconnect
            .send(reconnect)
            .map_err(|_| format!("shard {shard}'s task has ended"))
    }
}
