//! One node's life in the mesh: announce, watch the others, compute the assignment, and
//! keep the leases it assigns to this node, until shutdown drains it.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardmesh_broker::{FailureRun, Incoming, IncomingRequest, NodeBus};
use shardmesh_proto::{
    Announcement, ControlCommand, ControlOutcome, NodeDiag, NodeRole, NodeState, StoreIdentity,
};
use shardmesh_store::{Action, LeaseKey, NodeRecord, Store};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::keeper::{LeaseHolder, LeaseKeeper, StepReport};
use crate::membership::{Change, MembershipView};
use crate::{Error, LeaseConfig, MembershipConfig, assign};

/// Who this node is in the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Node id (fresh per process start).
    pub node: String,
    /// Gateway or consumer.
    pub role: NodeRole,
    /// Consumer group, for consumer nodes.
    pub group: Option<String>,
    /// Weight in the assignment.
    pub capacity: u32,
    /// `host:port` of the node's HTTP endpoint, written to the node registry.
    pub address: Option<String>,
}

/// What a node is doing now, for `/ready`, metrics and status replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Life-cycle state.
    pub state: NodeState,
    /// Keys held now.
    pub owns: Vec<LeaseKey>,
    /// Live nodes of the same role (and group), this one included.
    pub peers: usize,
}

/// Everything [`run`] needs; plain data plus the parts it drives.
pub struct MeshNode<S, H> {
    /// This node.
    pub identity: NodeIdentity,
    /// Every key of the role: `shard/0..n` for gateways, `partition/<group>/0..p` for
    /// consumers.
    pub keys: Vec<LeaseKey>,
    /// The cluster's store.
    pub store: Arc<S>,
    /// The cluster as `store` knows it: announced, and compared with what the other
    /// nodes announce.
    pub store_identity: StoreIdentity,
    /// The role's work.
    pub holder: H,
    /// Lease timing.
    pub lease: LeaseConfig,
    /// Announcement and assignment timing.
    pub membership: MembershipConfig,
}

/// Runs the node until `shutdown` is cancelled, then drains it: every lease is handed
/// over, a `leaving` announcement is sent, and `run` returns.
///
/// `inbox` is the receiver [`NodeBus::connect`] returned. `status` is updated after
/// every change.
///
/// Announcements of nodes on another store (another cluster id for the same cluster
/// name) are kept out of the view. A node that hears one before its first assignment
/// takes no work and ends.
///
/// # Errors
///
/// [`Error::ForeignStore`] when this node heard a node on another store before it took
/// any work.
///
/// # Cancel safety
///
/// Not cancel safe: cancel `shutdown` instead, so the node drains.
pub async fn run<S: Store, H: LeaseHolder>(
    node: MeshNode<S, H>,
    bus: &NodeBus,
    mut inbox: mpsc::UnboundedReceiver<Incoming>,
    status: &watch::Sender<NodeStatus>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut life = Life::new(node);
    let started = SystemTime::now();
    let mut heartbeat = tokio::time::interval(life.announce_interval());
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut renew = tokio::time::interval(life.lease.renew_interval());
    renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first assignment waits for the settle delay, so nodes started together see
    // each other before anyone takes keys.
    let mut settle_check = tokio::time::interval(Duration::from_millis(100));

    life.state = NodeState::Ready;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = heartbeat.tick() => {
                life.heartbeat(bus, started).await;
            }
            _ = renew.tick() => {
                life.reassign(Instant::now());
                let report = life.keeper.step(&life.target, &life.holder).await;
                life.stepped(bus, report).await;
            }
            _ = settle_check.tick() => {
                let now = Instant::now();
                if !life.view.expire(now.into_std()).is_empty() {
                    // A node gone silent holds keys that need a home: don't settle.
                    life.urgent = true;
                    life.pending_since.get_or_insert(now);
                }
                if life.reassign(now) {
                    let report = life.keeper.step(&life.target, &life.holder).await;
                    life.stepped(bus, report).await;
                }
            }
            incoming = inbox.recv() => match incoming {
                Some(Incoming::Announcement(announcement)) => {
                    // Our own comes back through the fanout: already in the view.
                    if announcement.node != life.identity.node {
                        match life.admit(&announcement) {
                            Ok(true) => life.observe(&announcement).await,
                            Ok(false) => {}
                            Err(refusal) => {
                                life.refused = Some(refusal);
                                break;
                            }
                        }
                    }
                }
                Some(Incoming::Request(request)) => {
                    life.answer(bus, &request, started).await;
                    if life.exit_asked {
                        tracing::info!("drained on request; the node exits");
                        break;
                    }
                }
                Some(_) => {}
                None => {
                    tracing::warn!("node bus closed, draining");
                    break;
                }
            },
        }
        status.send_replace(life.status());
    }

    life.state = NodeState::Draining;
    status.send_replace(life.status());
    life.announce(bus).await;
    life.register(started).await;
    let report = life.keeper.release_all(&life.holder).await;
    life.record(report).await;
    life.state = NodeState::Leaving;
    status.send_replace(life.status());
    life.announce(bus).await;
    // The row says `leaving` until it expires, rather than `ready` for a node gone.
    life.register(started).await;
    match life.refused {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// The loop's state: one place, so each event handler reads as one step.
struct Life<S, H> {
    identity: NodeIdentity,
    keys: Vec<LeaseKey>,
    store: Arc<S>,
    holder: H,
    lease: LeaseConfig,
    membership: MembershipConfig,
    keeper: LeaseKeeper<S>,
    view: MembershipView,
    state: NodeState,
    target: BTreeSet<LeaseKey>,
    /// Since when a membership change waits for the settle delay.
    pending_since: Option<Instant>,
    /// A change that must be acted on at once (a node left or is draining: its keys
    /// need a home now, settling would only lengthen the gap).
    urgent: bool,
    /// The cluster as this node's store knows it.
    store_identity: StoreIdentity,
    /// Nodes on another store, come after this one, already warned about.
    foreign_nodes: HashSet<String>,
    /// Set when this node is the one on the wrong store: the loop ends and drains.
    refused: Option<Error>,
    /// Whether an assignment was computed yet: the first waits until every live node
    /// was heard from.
    assigned_once: bool,
    /// Heartbeats whose announcement was not sent, in a row: a broker outage is one
    /// WARN, not one per heartbeat.
    announce_failures: FailureRun,
    /// A drain with exit was asked for: the loop ends, and the node drains and ends.
    exit_asked: bool,
}

impl<S: Store, H: LeaseHolder> Life<S, H> {
    fn new(node: MeshNode<S, H>) -> Self {
        let now = Instant::now();
        let keeper = LeaseKeeper::new(
            Arc::clone(&node.store),
            node.identity.node.clone(),
            node.lease.clone(),
        );
        Self {
            view: MembershipView::new(
                Duration::from_millis(node.membership.node_timeout_ms),
                now.into_std(),
            ),
            identity: node.identity,
            keys: node.keys,
            store: node.store,
            holder: node.holder,
            lease: node.lease,
            membership: node.membership,
            keeper,
            state: NodeState::Starting,
            target: BTreeSet::new(),
            pending_since: Some(now),
            urgent: false,
            store_identity: node.store_identity,
            foreign_nodes: HashSet::new(),
            refused: None,
            assigned_once: false,
            announce_failures: FailureRun::default(),
            exit_asked: false,
        }
    }

    /// Whether `announcement` belongs in the view: it comes from a node on this node's
    /// store (a node that does not say is taken to be). One from another store is left
    /// out; heard before this node took any work, it is this node's refusal (`Err`).
    /// Heard later, it is warned about once: that node is the newcomer, and refuses.
    ///
    /// The newcomer refuses, not the younger store: which store is right cannot be
    /// known, and the newcomer is the one that has not started working yet.
    fn admit(&mut self, announcement: &Announcement) -> Result<bool, Error> {
        let Some(theirs) = announcement.store.as_ref() else {
            return Ok(true);
        };
        let ours = &self.store_identity;
        if theirs.cluster_id == ours.cluster_id {
            return Ok(true);
        }
        if announcement.state == NodeState::Leaving {
            return Ok(false);
        }
        if !self.assigned_once {
            let refusal = Error::ForeignStore {
                ours: ours.location.clone(),
                our_id: ours.cluster_id.clone(),
                node: announcement.node.clone(),
                theirs: theirs.location.clone(),
                their_id: theirs.cluster_id.clone(),
            };
            tracing::error!("{refusal}");
            return Err(refusal);
        }
        if self.foreign_nodes.insert(announcement.node.clone()) {
            tracing::warn!(
                node = %announcement.node,
                store = %theirs.location,
                cluster_id = %theirs.cluster_id,
                our_store = %ours.location,
                "a node of this cluster name runs on another store; it is left out and should refuse to work"
            );
        }
        Ok(false)
    }

    fn announce_interval(&self) -> Duration {
        Duration::from_millis(self.membership.announce_interval_ms)
    }

    fn announcement(&self) -> Announcement {
        Announcement::new(
            self.identity.node.clone(),
            self.identity.role,
            self.identity.group.clone(),
            self.state,
            self.identity.capacity,
            self.keeper.held().map(ToString::to_string).collect(),
            unix_ms(SystemTime::now()),
        )
        .with_store(self.store_identity.clone())
    }

    /// Announces this node, and records it in its own view (its own announcements come
    /// back through the fanout too, but not before the first round trip).
    async fn announce(&mut self, bus: &NodeBus) {
        let announcement = self.announcement();
        self.observe(&announcement).await;
        match bus.announce(&announcement).await {
            Ok(()) => {
                if let Some(run) = self.announce_failures.ended() {
                    tracing::info!(
                        failures = run.failures,
                        outage_ms = run.millis(),
                        "announcements sent again"
                    );
                }
            }
            Err(error) if self.announce_failures.failed() => {
                tracing::warn!(%error, "announcement not sent; the next heartbeats retry");
            }
            Err(error) => {
                tracing::debug!(%error, "announcement not sent again; the next heartbeat retries");
            }
        }
    }

    async fn heartbeat(&mut self, bus: &NodeBus, started: SystemTime) {
        self.announce(bus).await;
        self.register(started).await;
    }

    /// Writes the node's registry row (what `shardmesh ctl status` lists) with its
    /// current state; it expires a node timeout later unless written again.
    async fn register(&self, started: SystemTime) {
        let record = NodeRecord {
            node: self.identity.node.clone(),
            role: self.identity.role,
            group: self.identity.group.clone(),
            state: self.state,
            address: self.identity.address.clone(),
            started_at: started,
            seen_at: SystemTime::now(),
        };
        let ttl = Duration::from_millis(self.membership.node_timeout_ms);
        if let Err(error) = self.store.register_node(&record, ttl).await {
            tracing::warn!(%error, "node registry row not written");
        }
    }

    /// Folds an announcement into the view; acquires at once keys a peer let go.
    async fn observe(&mut self, announcement: &Announcement) {
        let now = Instant::now();
        match self.view.observe(announcement, now.into_std()) {
            Change::None => {}
            Change::Joined(_) => {
                self.pending_since.get_or_insert(now);
            }
            Change::Updated(node) | Change::Left(node) => {
                let urgent = announcement.node == node
                    && matches!(announcement.state, NodeState::Draining | NodeState::Leaving);
                self.urgent |= urgent;
                self.pending_since.get_or_insert(now);
            }
        }
        if announcement.node != self.identity.node && self.unclaimed_target() {
            let report = self
                .keeper
                .acquire_missing(&self.target, &self.holder)
                .await;
            self.record(report).await;
        }
    }

    /// Whether a key targeted here is neither held here nor claimed by any peer.
    fn unclaimed_target(&self) -> bool {
        let held: HashSet<&LeaseKey> = self.keeper.held().collect();
        let claimed: HashSet<String> = self
            .view
            .members()
            .filter(|(node, _)| *node != self.identity.node)
            .flat_map(|(_, member)| member.owns.iter().cloned())
            .collect();
        self.target
            .iter()
            .any(|key| !held.contains(key) && !claimed.contains(&key.to_string()))
    }

    /// Recomputes the target when a change has settled (or is urgent). Returns whether
    /// the target changed.
    fn reassign(&mut self, now: Instant) -> bool {
        let Some(since) = self.pending_since else {
            return false;
        };
        let settle = Duration::from_millis(self.membership.settle_delay_ms);
        let waited = now.saturating_duration_since(since);
        if !self.urgent && waited < settle {
            return false;
        }
        // Before its first assignment a node hears every live node's heartbeat (one
        // and a half intervals), so it knows its peers, and a node on another store is
        // found, before it takes anything.
        let heard_everyone = self.announce_interval() * 3 / 2;
        if !self.assigned_once && waited < heard_everyone {
            return false;
        }
        self.assigned_once = true;
        self.pending_since = None;
        self.urgent = false;
        let candidates = self
            .view
            .candidates(self.identity.role, self.identity.group.as_deref());
        let names: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        let assignment = assign(&names, &candidates);
        let target: BTreeSet<LeaseKey> = self
            .keys
            .iter()
            .filter(|key| {
                assignment.get(&key.to_string()).map(String::as_str)
                    == Some(self.identity.node.as_str())
            })
            .cloned()
            .collect();
        let changed = target != self.target;
        if changed {
            tracing::info!(
                keys = target.len(),
                nodes = candidates.len(),
                "assignment changed"
            );
        }
        self.target = target;
        changed
    }

    async fn answer(&mut self, bus: &NodeBus, request: &IncomingRequest, started: SystemTime) {
        if request.is_expired() {
            return;
        }
        let asked_by = &request.request.from;
        let outcome = match &request.request.command {
            ControlCommand::Ping => ControlOutcome::Pong,
            ControlCommand::Status => ControlOutcome::Status {
                state: self.state,
                owns: self.keeper.held().map(ToString::to_string).collect(),
            },
            ControlCommand::Diag => ControlOutcome::Diag(Box::new(self.diag(started))),
            ControlCommand::Drain { exit } => {
                tracing::info!(%asked_by, exit, "drain asked for");
                if *exit {
                    // The loop ends after this reply; the node then drains as on SIGTERM.
                    self.exit_asked = true;
                } else {
                    // Draining nodes get no keys: the reassignment (at once) empties
                    // this node's target and the keeper hands everything over; the node
                    // stays up.
                    self.become_now(bus, NodeState::Draining).await;
                }
                ControlOutcome::Done
            }
            ControlCommand::Undrain => self.undrain(bus, asked_by).await,
            ControlCommand::RestartShard { shard, new_session } => {
                let key = LeaseKey::Shard(*shard);
                if self.keeper.held().any(|held| *held == key) {
                    tracing::info!(%asked_by, %key, new_session, "restart asked for");
                    match self.holder.restart(&key, *new_session) {
                        Ok(()) => ControlOutcome::Done,
                        Err(error) => ControlOutcome::Failed { error },
                    }
                } else {
                    ControlOutcome::Failed {
                        error: format!("{key} is not held by node {}", self.identity.node),
                    }
                }
            }
            ControlCommand::Release { key } => ControlOutcome::Failed {
                error: format!(
                    "release of a single key ({key}) is not supported: drain the node instead"
                ),
            },
        };
        if let Err(error) = bus.reply(request, outcome).await {
            tracing::warn!(%error, "control reply not sent");
        }
    }

    /// Announces `state` and reassigns at once: the peers and this node's own target
    /// follow without waiting for the settle delay.
    async fn become_now(&mut self, bus: &NodeBus, state: NodeState) {
        self.state = state;
        self.announce(bus).await;
        self.urgent = true;
        self.pending_since.get_or_insert(Instant::now());
    }

    async fn undrain(&mut self, bus: &NodeBus, asked_by: &str) -> ControlOutcome {
        if self.state != NodeState::Draining {
            return ControlOutcome::Failed {
                error: format!(
                    "node {} is {}, not draining: nothing to undo",
                    self.identity.node,
                    self.state.as_str()
                ),
            };
        }
        tracing::info!(%asked_by, "undrain asked for: taking work again");
        self.become_now(bus, NodeState::Ready).await;
        ControlOutcome::Done
    }

    fn diag(&self, started: SystemTime) -> NodeDiag {
        NodeDiag {
            role: self.identity.role,
            group: self.identity.group.clone(),
            state: self.state,
            uptime_ms: u64::try_from(started.elapsed().unwrap_or_default().as_millis())
                .unwrap_or(u64::MAX),
            owns: self.keeper.held().map(ToString::to_string).collect(),
            work: self.holder.diagnose(),
        }
    }

    /// Writes what a keeper step did to the action log: hand-overs and losses are what
    /// an operator asks about afterwards.
    /// After a keeper step: peers waiting for the keys this node just released learn it
    /// now rather than at the next heartbeat (up to an announce interval later).
    async fn stepped(&mut self, bus: &NodeBus, report: StepReport) {
        if !report.handed_over.is_empty() {
            self.announce(bus).await;
        }
        self.record(report).await;
    }

    async fn record(&self, report: StepReport) {
        let actions = report
            .acquired
            .iter()
            .map(|key| ("acquire", key, "ok".to_owned()))
            .chain(
                report
                    .handed_over
                    .iter()
                    .map(|key| ("hand_over", key, "ok".to_owned())),
            )
            .chain(
                report
                    .lost
                    .iter()
                    .map(|key| ("lease_lost", key, "stopped".to_owned())),
            )
            .chain(
                report
                    .errors
                    .iter()
                    .map(|(key, error)| ("lease_error", key, error.to_string())),
            );
        for (action, key, result) in actions {
            let entry = Action {
                actor: self.identity.node.clone(),
                action: action.into(),
                args: key.to_string(),
                result,
                at: SystemTime::now(),
            };
            if let Err(error) = self.store.log_action(&entry).await {
                tracing::warn!(%error, "action log entry not written");
            }
        }
    }

    fn status(&self) -> NodeStatus {
        NodeStatus {
            state: self.state,
            owns: self.keeper.held().cloned().collect(),
            peers: self
                .view
                .candidates(self.identity.role, self.identity.group.as_deref())
                .len(),
        }
    }
}

/// Unix milliseconds of `time` (0 before 1970).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    })
}
