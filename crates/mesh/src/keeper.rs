//! Acquiring, renewing, handing over and fencing leases for one node.
//!
//! The keeper is driven by its caller: each [`LeaseKeeper::step`] receives the keys the
//! assignment targets at this node and makes the store agree, calling the role (a
//! [`LeaseHolder`]) to start work, read the state to save, hand work over, or drop it.
//! The caller steps every renew interval, and sooner when the assignment changes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use futures_util::{StreamExt, stream};
use shardmesh_proto::WorkDiag;
use shardmesh_store::{Error, Lease, LeaseGrant, LeaseKey, LeaseState, Store};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::LeaseConfig;

/// Store calls of one step run this many at a time: a gateway node may hold hundreds of
/// shards, and renewing them one by one would take longer than the renew interval.
const CONCURRENT_STORE_CALLS: usize = 32;

/// What a role (gateway shards, consumer partitions) does as leases come and go.
pub trait LeaseHolder: Send + Sync {
    /// Begins work under a newly acquired lease. [`LeaseGuard::lease`] carries the state
    /// the previous holder saved (the session to resume, the checkpoint to read from).
    /// Must not wait for the work itself: spawn it.
    fn start(&self, guard: LeaseGuard) -> impl Future<Output = ()> + Send;

    /// The state to save with the next renewal of `key`.
    fn state(&self, key: &LeaseKey) -> LeaseState;

    /// Stops work on `key` in an orderly way (a shard closes with RESUME and drains its
    /// confirms; a partition finishes its in-flight events) and returns the final state.
    fn hand_over(&self, key: &LeaseKey) -> impl Future<Output = LeaseState> + Send;

    /// The lease on `key` is gone (renewal refused, or not renewed in time): stop at
    /// once and save nothing; someone else may hold it already.
    fn lost(&self, key: &LeaseKey) -> impl Future<Output = ()> + Send;

    /// How each piece of work is doing, for a diagnostics request; nothing by default.
    fn diagnose(&self) -> WorkDiag {
        WorkDiag::default()
    }

    /// Restarts the work under `key`, which this node holds, in place: a shard
    /// reconnects and resumes its session, or with `fresh` starts a new one. `Err` says
    /// why not, in words for a person.
    fn restart(&self, key: &LeaseKey, fresh: bool) -> Result<(), String> {
        let _ = fresh;
        Err(format!(
            "{key} cannot be restarted: this node's role has nothing to restart"
        ))
    }
}

/// Handed to the holder with a new lease: the lease as acquired, and the instant until
/// which the holder may act, extended by every successful renewal.
#[derive(Debug)]
pub struct LeaseGuard {
    lease: Lease,
    valid_until: watch::Receiver<Instant>,
    state_writes: Arc<Mutex<()>>,
}

impl LeaseGuard {
    /// The lease as acquired, with the previous holder's state.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The fencing epoch of this holding; stamp it on everything published under it.
    pub fn epoch(&self) -> u64 {
        self.lease.epoch
    }

    /// Whether the holder may still act now: the lease is neither past its fence nor
    /// let go by the keeper.
    pub fn is_valid(&self) -> bool {
        let let_go = self.valid_until.has_changed().is_err();
        !let_go && Instant::now() < *self.valid_until.borrow()
    }

    /// Holds off the keeper's renewals of this lease while the holder saves its state
    /// itself (a consumer's checkpoint between renewals, through [`Store::renew`] with
    /// the lease's grant). Read the state and write it while the returned guard lives:
    /// each keeper renewal reads [`LeaseHolder::state`] under the same lock, so the
    /// writes land in the order their states were read and the store never goes back
    /// to an older state.
    pub async fn hold_renewals(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.state_writes).lock_owned().await
    }

    /// Resolves once the holder must stop acting: the lease was not renewed in time, or
    /// the keeper let it go.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is consumed, call it again in the next `select!`.
    pub async fn lapsed(&mut self) {
        loop {
            let deadline = *self.valid_until.borrow_and_update();
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                changed = self.valid_until.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// What one step did, for logs, metrics and the action log.
#[derive(Debug, Default)]
pub struct StepReport {
    /// Keys newly acquired.
    pub acquired: Vec<LeaseKey>,
    /// Keys handed over and released.
    pub handed_over: Vec<LeaseKey>,
    /// Keys lost: renewal refused, or not renewed before the fence.
    pub lost: Vec<LeaseKey>,
    /// Store calls that failed; the step goes on, and the fence guards safety.
    pub errors: Vec<(LeaseKey, Error)>,
}

struct Held {
    grant: LeaseGrant,
    valid_until: watch::Sender<Instant>,
    /// Shared with the holder's [`LeaseGuard::hold_renewals`].
    state_writes: Arc<Mutex<()>>,
}

/// Holds this node's leases in one store.
pub struct LeaseKeeper<S> {
    store: Arc<S>,
    owner: String,
    config: LeaseConfig,
    held: BTreeMap<LeaseKey, Held>,
    /// When the last renewal of every held lease began.
    last_renewed: Instant,
}

impl<S: Store> LeaseKeeper<S> {
    /// A keeper holding nothing yet, acting as node `owner`.
    pub fn new(store: Arc<S>, owner: impl Into<String>, config: LeaseConfig) -> Self {
        Self {
            store,
            owner: owner.into(),
            config,
            held: BTreeMap::new(),
            last_renewed: Instant::now(),
        }
    }

    /// The keys held now.
    pub fn held(&self) -> impl Iterator<Item = &LeaseKey> {
        self.held.keys()
    }

    /// Makes the held leases match `target`: drops leases past their fence, renews the
    /// held ones with their current state, hands over and releases those not in
    /// `target`, and tries to acquire targeted keys not held (they may still be held by someone
    /// handing them over; a later step gets them).
    pub async fn step(
        &mut self,
        target: &BTreeSet<LeaseKey>,
        holder: &impl LeaseHolder,
    ) -> StepReport {
        let mut report = StepReport::default();
        self.drop_lapsed(holder, &mut report).await;

        // Renew first: a hand-over may take seconds (a shard drains to its close echo and
        // waits for confirms), and the leases kept must not lapse meanwhile. Keys about
        // to be handed over are renewed too, which covers their hand-over time.
        self.renew_all(holder, &mut report).await;
        let leaving: Vec<LeaseKey> = self
            .held
            .keys()
            .filter(|key| !target.contains(*key))
            .cloned()
            .collect();
        self.hand_over(leaving, holder, &mut report).await;

        let wanted = self.not_held(target);
        self.acquire_all(wanted, holder, &mut report).await;
        report
    }

    /// Only tries to acquire targeted keys not held: cheap enough to call whenever a peer
    /// announces it let keys go, so a hand-over completes without waiting for the next
    /// renewal round.
    pub async fn acquire_missing(
        &mut self,
        target: &BTreeSet<LeaseKey>,
        holder: &impl LeaseHolder,
    ) -> StepReport {
        let mut report = StepReport::default();
        self.drop_lapsed(holder, &mut report).await;
        let wanted = self.not_held(target);
        self.acquire_all(wanted, holder, &mut report).await;
        report
    }

    /// Hands every held lease over and releases it: the last thing a draining node does.
    pub async fn release_all(&mut self, holder: &impl LeaseHolder) -> StepReport {
        let mut report = StepReport::default();
        // Fresh leases for the whole drain, however long the hand-overs take.
        self.renew_all(holder, &mut report).await;
        let all: Vec<LeaseKey> = self.held.keys().cloned().collect();
        self.hand_over(all, holder, &mut report).await;
        report
    }

    /// The targeted keys this keeper does not hold.
    fn not_held(&self, target: &BTreeSet<LeaseKey>) -> Vec<LeaseKey> {
        target
            .iter()
            .filter(|key| !self.held.contains_key(*key))
            .cloned()
            .collect()
    }

    async fn drop_lapsed(&mut self, holder: &impl LeaseHolder, report: &mut StepReport) {
        let now = Instant::now();
        let lapsed: Vec<LeaseKey> = self
            .held
            .iter()
            .filter(|(_, held)| now >= *held.valid_until.borrow())
            .map(|(key, _)| key.clone())
            .collect();
        for key in lapsed {
            self.held.remove(&key);
            tracing::warn!(key = %key, "lease not renewed in time, stopping work on it");
            holder.lost(&key).await;
            report.lost.push(key);
        }
    }

    async fn hand_over(
        &mut self,
        keys: Vec<LeaseKey>,
        holder: &impl LeaseHolder,
        report: &mut StepReport,
    ) {
        let handing: Vec<(LeaseKey, Held)> = keys
            .into_iter()
            .filter_map(|key| self.held.remove(&key).map(|held| (key, held)))
            .collect();
        let store = Arc::clone(&self.store);
        let mut handed = stream::iter(handing)
            .map(|(key, held)| {
                let store = Arc::clone(&store);
                async move {
                    let state = holder.hand_over(&key).await;
                    let released = store.release(&held.grant, &state).await;
                    // Dropping `held` ends the guard: the holder's `lapsed()` resolves.
                    drop(held);
                    (key, released)
                }
            })
            .buffer_unordered(CONCURRENT_STORE_CALLS);
        // One hand-over may take seconds (a shard waits for its close echo and the
        // broker's confirms; a partition for its handler) and a drain of many keys far
        // longer: the leases kept, and those waiting their turn, are renewed on
        // schedule meanwhile, or they would lapse and their next owners wait them out.
        let every = self.config.renew_interval();
        let mut renewals = tokio::time::interval_at(self.last_renewed + every, every);
        renewals.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut outcomes = Vec::new();
        loop {
            tokio::select! {
                next = handed.next() => match next {
                    Some(outcome) => outcomes.push(outcome),
                    None => break,
                },
                _ = renewals.tick() => self.renew_all(holder, report).await,
            }
        }
        for (key, released) in outcomes {
            match released {
                Ok(true) => report.handed_over.push(key),
                Ok(false) => {
                    tracing::warn!(key = %key, "lease was already lost when handing it over");
                    report.lost.push(key);
                }
                Err(error) => {
                    // The work stopped; the lease lapses on its own and the next owner
                    // waits it out, reading the state of the last renewal.
                    tracing::warn!(key = %key, %error, "release failed, the lease will expire");
                    report.errors.push((key, error));
                }
            }
        }
    }

    async fn renew_all(&mut self, holder: &impl LeaseHolder, report: &mut StepReport) {
        self.last_renewed = Instant::now();
        let (store, config) = (&self.store, &self.config);
        // Owned grants: a closure over borrowed map entries would make the step's future
        // Send only for one lifetime, and nodes spawn it.
        let grants: Vec<(LeaseGrant, Arc<Mutex<()>>)> = self
            .held
            .values()
            .map(|held| (held.grant.clone(), Arc::clone(&held.state_writes)))
            .collect();
        let outcomes: Vec<(LeaseKey, Instant, Result<bool, Error>)> = stream::iter(grants)
            .map(|(grant, state_writes)| async move {
                // Before waiting for the lock: the fence counts from here, the earlier
                // moment, so it can only come early.
                let sent_at = Instant::now();
                let _writing = state_writes.lock().await;
                let state = holder.state(&grant.key);
                let renewed = store.renew(&grant, config.duration(), &state).await;
                (grant.key, sent_at, renewed)
            })
            .buffer_unordered(CONCURRENT_STORE_CALLS)
            .collect()
            .await;
        for (key, sent_at, renewed) in outcomes {
            match renewed {
                Ok(true) => {
                    if let Some(held) = self.held.get(&key) {
                        held.valid_until.send_replace(sent_at + config.valid_for());
                    }
                }
                Ok(false) => {
                    self.held.remove(&key);
                    tracing::warn!(key = %key, "lease renewal refused: another node holds it");
                    holder.lost(&key).await;
                    report.lost.push(key);
                }
                Err(error) => {
                    tracing::warn!(key = %key, %error, "lease renewal failed, will retry");
                    report.errors.push((key, error));
                }
            }
        }
        // A failed renewal may have been the last chance before the fence.
        self.drop_lapsed(holder, report).await;
    }

    async fn acquire_all(
        &mut self,
        keys: Vec<LeaseKey>,
        holder: &impl LeaseHolder,
        report: &mut StepReport,
    ) {
        let (store, config, owner) = (&self.store, &self.config, self.owner.as_str());
        let outcomes: Vec<(LeaseKey, Instant, Result<Option<Lease>, Error>)> = stream::iter(keys)
            .map(|key| async move {
                let sent_at = Instant::now();
                let acquired = store.acquire(&key, owner, config.duration()).await;
                (key, sent_at, acquired)
            })
            .buffer_unordered(CONCURRENT_STORE_CALLS)
            .collect()
            .await;
        for (key, sent_at, acquired) in outcomes {
            match acquired {
                Ok(Some(lease)) => {
                    let (sender, receiver) = watch::channel(sent_at + config.valid_for());
                    let grant = LeaseGrant {
                        key: key.clone(),
                        owner: self.owner.clone(),
                        epoch: lease.epoch,
                    };
                    let state_writes = Arc::new(Mutex::new(()));
                    self.held.insert(
                        key.clone(),
                        Held {
                            grant,
                            valid_until: sender,
                            state_writes: Arc::clone(&state_writes),
                        },
                    );
                    holder
                        .start(LeaseGuard {
                            lease,
                            valid_until: receiver,
                            state_writes,
                        })
                        .await;
                    report.acquired.push(key);
                }
                Ok(None) => {}
                Err(error) => report.errors.push((key, error)),
            }
        }
    }
}
