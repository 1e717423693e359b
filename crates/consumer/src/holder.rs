//! The consumer's side of the lease keeper: one partition task per partition lease,
//! started, checkpointed, handed over and dropped as the mesh decides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use shardmesh_broker::{BrokerConfig, Topology};
use shardmesh_mesh::{LeaseConfig, LeaseGuard, LeaseHolder};
use shardmesh_proto::{PartitionDiag, WorkDiag};
use shardmesh_store::{Checkpoint, LeaseGrant, LeaseKey, LeaseState, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::counters::{ConsumerCounters, Counters};
use crate::dead_letters::DeadLetters;
use crate::partition::{self, PartitionTask, Progress, Shared, Stops};
use crate::{ConsumerConfig, Error, Handler};

/// What [`ConsumerPartitions::new`] needs: plain data and the parts it drives.
#[derive(Debug)]
pub struct ConsumerSetup<S, H> {
    /// The `[consumer]` settings.
    pub config: ConsumerConfig,
    /// How to reach RabbitMQ; every partition reads on a connection of its own.
    pub broker: BrokerConfig,
    /// The cluster's topology (its partition count from the store's cluster spec); the
    /// group's dead-letter stream is added to it.
    pub topology: Topology,
    /// This node's mesh id, the same as in [`NodeIdentity`](shardmesh_mesh::NodeIdentity):
    /// checkpoints are written under the leases it holds.
    pub node: String,
    /// The cluster's store.
    pub store: Arc<S>,
    /// The same lease timing the mesh node runs with: checkpoints written between
    /// renewals extend the lease by as much as a renewal does.
    pub lease: LeaseConfig,
    /// The bot's code.
    pub handler: H,
}

/// A consumer node's partitions: a [`LeaseHolder`] for the `partition/<group>/<p>`
/// leases of one consumer group, given to [`shardmesh_mesh::run`] as the node's holder.
///
/// - `start` spawns a task reading the partition's stream from the checkpoint the lease
///   carries (`offset + 1`, or the stream's first message). Events the group has seen
///   are dropped by the per-shard marks (see [`Delivery`](crate::Delivery) for what
///   the handler gets); the others go to the handler one at a time, in stream order,
///   and the marks and offset advance once it finished (or the event was
///   dead-lettered).
/// - `state` is the checkpoint: the offset of the last fully handled message and the
///   marks, saved by every renewal. Checkpoints are also written every
///   `checkpoint_every_events` events or `checkpoint_every_ms` after an unsaved event,
///   through a renewal under the partition's own lease grant (fenced like any renewal).
/// - `hand_over` lets the event in flight finish (a retry wait is cut short: the event
///   stays unmarked and the next owner calls the handler for it) and returns the final
///   checkpoint, so the next owner repeats nothing.
/// - `lost` stops at once, dropping a handler call in flight, and saves nothing.
///
/// The handler is never called once the lease guard is no longer valid (self-fence).
/// Clones share the same partitions.
///
/// Checkpoints between renewals are plain [`Store::renew`] calls with the lease's
/// grant (owner and epoch from the [`LeaseGuard`]), so they are fenced exactly like the
/// keeper's own, need no keeper API, and extend the lease by `setup.lease.duration_ms`
/// as a renewal would (the keeper's self-fence, counted from its own renewals, stays
/// the earlier one). They are written only while the guard is valid, and under
/// [`LeaseGuard::hold_renewals`], so a keeper renewal never saves an older checkpoint
/// after a newer one.
pub struct ConsumerPartitions<S, H> {
    inner: Arc<Inner<S, H>>,
}

struct Inner<S, H> {
    shared: Arc<Shared<S, H>>,
    /// Partition tasks by partition. A std `Mutex`: never held across an `.await`.
    running: Mutex<HashMap<u32, Running>>,
}

struct Running {
    stops: Stops,
    task: JoinHandle<()>,
    progress: Progress,
    event_age_ms: Arc<AtomicU64>,
}

impl<S, H> Clone for ConsumerPartitions<S, H> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, H> std::fmt::Debug for ConsumerPartitions<S, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerPartitions")
            .field("node", &self.inner.shared.node)
            .field("group", &self.inner.shared.config.group)
            .field("partitions", &self.inner.lock().len())
            .finish_non_exhaustive()
    }
}

impl<S: Store, H: Handler> ConsumerPartitions<S, H> {
    /// The partitions of `setup.config.group`, none running yet.
    ///
    /// `shutdown` stops every partition at once, without a hand-over, as a crash would;
    /// cancel it only after the mesh node has drained. Nothing is spawned and nothing
    /// connects before the first lease starts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid `setup.config` or `setup.broker`.
    pub fn new(setup: ConsumerSetup<S, H>, shutdown: CancellationToken) -> Result<Self, Error> {
        setup.config.validate()?;
        setup.broker.validate()?;
        let topology = setup.topology.with_dead_letters(&setup.config.group);
        let dead_letters = DeadLetters::new(
            setup.broker.clone(),
            topology.clone(),
            &setup.config.group,
            shutdown.clone(),
        );
        let shared = Shared {
            config: setup.config,
            broker: setup.broker,
            topology,
            node: setup.node,
            store: setup.store,
            lease: setup.lease,
            handler: setup.handler,
            dead_letters,
            counters: Counters::default(),
            tracker: TaskTracker::new(),
            shutdown,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Arc::new(shared),
                running: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Every lease key of the group, `partition/<group>/0..partitions`: the `keys` of
    /// the [`MeshNode`](shardmesh_mesh::MeshNode).
    pub fn keys(&self) -> Vec<LeaseKey> {
        let shared = &self.inner.shared;
        (0..shared.topology.partitions())
            .map(|partition| LeaseKey::Partition {
                group: shared.config.group.clone(),
                partition,
            })
            .collect()
    }

    /// The partitions this node reads now, ascending.
    pub fn partitions(&self) -> Vec<u32> {
        let mut partitions: Vec<u32> = self.inner.lock().keys().copied().collect();
        partitions.sort_unstable();
        partitions
    }

    /// For each partition read here, how old its last handled event was when the
    /// handler finished, ms (0 before the first).
    pub(crate) fn event_ages(&self) -> Vec<(u32, u64)> {
        let mut ages: Vec<(u32, u64)> = self
            .inner
            .lock()
            .iter()
            .map(|(&partition, running)| (partition, running.event_age_ms.load(Ordering::Relaxed)))
            .collect();
        ages.sort_unstable();
        ages
    }

    /// Counters since start.
    pub fn counters(&self) -> ConsumerCounters {
        self.inner.shared.counters.snapshot()
    }

    /// Waits until every partition task has ended and closes the dead-letter
    /// connection; call it after the node drained or `shutdown` was cancelled.
    pub async fn stopped(&self) {
        let shared = &self.inner.shared;
        shared.tracker.close();
        shared.tracker.wait().await;
        shared.dead_letters.close().await;
    }

    /// The partition of `key`, if it is one of this group's.
    fn partition_of(&self, key: &LeaseKey) -> Option<u32> {
        let shared = &self.inner.shared;
        match key {
            LeaseKey::Partition { group, partition }
                if *group == shared.config.group && *partition < shared.topology.partitions() =>
            {
                Some(*partition)
            }
            _ => None,
        }
    }

    /// Stops the task of `key`, waits for it to end, and returns its checkpoint.
    async fn stop(&self, key: &LeaseKey, stop: impl FnOnce(&Stops)) -> Option<(u32, Checkpoint)> {
        let partition = self.partition_of(key)?;
        let running = self.inner.lock().remove(&partition)?;
        stop(&running.stops);
        if let Err(error) = running.task.await {
            tracing::error!(partition, %error, "partition task failed");
        }
        let checkpoint = partition::lock(&running.progress).clone();
        Some((partition, checkpoint))
    }
}

impl<S, H> Inner<S, H> {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: Store, H: Handler> LeaseHolder for ConsumerPartitions<S, H> {
    async fn start(&self, guard: LeaseGuard) {
        let shared = &self.inner.shared;
        let lease = guard.lease();
        let Some(partition) = self.partition_of(&lease.key) else {
            tracing::error!(key = %lease.key, group = %shared.config.group, "a consumer node was given a lease that is not one of its group's partitions");
            return;
        };
        let checkpoint = match &lease.state {
            LeaseState::Partition(checkpoint) => checkpoint.clone(),
            _ => Checkpoint::default(),
        };
        let grant = LeaseGrant {
            key: lease.key.clone(),
            owner: lease.owner.clone().unwrap_or_else(|| shared.node.clone()),
            epoch: lease.epoch,
        };
        let progress: Progress = Arc::new(Mutex::new(checkpoint));
        let stops = Stops::new(&shared.shutdown);
        let event_age_ms = Arc::new(AtomicU64::new(0));
        let task = PartitionTask {
            partition,
            guard,
            grant,
            shared: Arc::clone(shared),
            progress: Arc::clone(&progress),
            stops: stops.clone(),
            unsaved: 0,
            dirty_since: None,
            event_age_ms: Arc::clone(&event_age_ms),
        };
        let task = shared.tracker.spawn(task.run());
        let previous = self.inner.lock().insert(
            partition,
            Running {
                stops,
                task,
                progress,
                event_age_ms,
            },
        );
        if let Some(previous) = previous {
            // The keeper never starts a held key twice; if it did, the old task must
            // not act next to the new one.
            tracing::error!(
                partition,
                "partition started twice, stopping the older task"
            );
            previous.stops.lost.cancel();
        }
    }

    fn state(&self, key: &LeaseKey) -> LeaseState {
        let Some(partition) = self.partition_of(key) else {
            return LeaseState::Empty;
        };
        let running = self.inner.lock();
        running
            .get(&partition)
            .map_or(LeaseState::Empty, |running| {
                LeaseState::Partition(partition::lock(&running.progress).clone())
            })
    }

    async fn hand_over(&self, key: &LeaseKey) -> LeaseState {
        let Some((partition, checkpoint)) = self.stop(key, |stops| stops.hand_over.cancel()).await
        else {
            return LeaseState::Empty;
        };
        Counters::bump(&self.inner.shared.counters.checkpoints);
        tracing::info!(partition, offset = ?checkpoint.offset, "partition handed over");
        LeaseState::Partition(checkpoint)
    }

    async fn lost(&self, key: &LeaseKey) {
        if let Some((partition, _)) = self.stop(key, |stops| stops.lost.cancel()).await {
            tracing::warn!(partition, "partition lease lost, partition stopped");
        }
    }

    fn diagnose(&self) -> WorkDiag {
        let mut partitions: Vec<PartitionDiag> = self
            .inner
            .lock()
            .iter()
            .map(|(&partition, running)| PartitionDiag {
                partition,
                handled_offset: partition::lock(&running.progress).offset,
            })
            .collect();
        partitions.sort_by_key(|diag| diag.partition);
        WorkDiag {
            partitions,
            ..WorkDiag::default()
        }
    }
}
