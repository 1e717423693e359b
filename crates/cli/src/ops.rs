//! Control actions on the nodes (drain, undrain, restart a shard), asked over the
//! control exchange with a deadline and recorded in the action log with who asked.
//!
//! [`Control`] is one operator's session: the store, and a place on the node bus from
//! which it sends requests and hears the nodes' announcements, so it can tell when an
//! action took effect (a drained node owns nothing, its keys are owned elsewhere).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use shardmesh_broker::{Incoming, NodeBus, Topology};
use shardmesh_mesh::{MembershipView, MeshSettings, assign};
use shardmesh_proto::{
    ControlCommand, ControlOutcome, ControlReply, NodeRole, NodeState, ShardDiag,
};
use shardmesh_store::{Action, AnyStore, LeaseKey, NodeRecord, Store as _};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::text::lower;

/// How long a node may take to answer a control request.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(5);

/// How often a wait re-checks its condition against what the nodes announced.
const POLL: Duration = Duration::from_millis(100);

/// One operator's control session.
pub struct Control {
    settings: MeshSettings,
    store: AnyStore,
    bus: NodeBus,
    /// The nodes as their announcements describe them.
    view: Arc<Mutex<MembershipView>>,
    /// When each node last announced that it leaves: a supervisor may start a node of
    /// the same id again before a wait looks, and the view then shows the new one.
    left: Arc<Mutex<HashMap<String, std::time::Instant>>>,
    listening: JoinHandle<()>,
    actor: String,
}

/// A live node as the session knows it: from the store's registry, or heard on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    /// Node id.
    pub node: String,
    /// Gateway or consumer.
    pub role: NodeRole,
    /// Consumer group, for consumer nodes.
    pub group: Option<String>,
    /// Life-cycle state.
    pub state: NodeState,
}

impl Control {
    /// Opens the store and joins the node bus as `actor` (who the action log names).
    ///
    /// # Errors
    ///
    /// A store or broker that cannot be reached.
    pub async fn connect(settings: &MeshSettings, actor: &str) -> anyhow::Result<Self> {
        let store = shardmesh_store::open(&settings.store, &settings.cluster.name).await?;
        let partitions = store
            .spec()
            .await
            .context("reading the cluster spec")?
            .map_or(settings.cluster.partitions, |spec| spec.partitions);
        let topology = Topology::new(&settings.cluster.name, partitions, &settings.broker)?;
        let bus_id = format!("ctl-{}", uuid::Uuid::now_v7());
        let (bus, mut inbox) = NodeBus::connect(
            &settings.broker,
            &topology,
            &bus_id,
            CancellationToken::new(),
        )
        .await
        .with_context(|| format!("joining the node bus at {}", settings.broker.url))?;
        let timeout = Duration::from_millis(settings.membership.node_timeout_ms);
        let view = Arc::new(Mutex::new(MembershipView::new(
            timeout,
            std::time::Instant::now(),
        )));
        let left = Arc::new(Mutex::new(HashMap::new()));
        let (fed, leaving) = (Arc::clone(&view), Arc::clone(&left));
        let listening = tokio::spawn(async move {
            while let Some(incoming) = inbox.recv().await {
                if let Incoming::Announcement(announcement) = incoming {
                    let now = std::time::Instant::now();
                    if announcement.state == NodeState::Leaving {
                        leaving
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(announcement.node.clone(), now);
                    }
                    lock(&fed).observe(&announcement, now);
                }
            }
        });
        Ok(Self {
            settings: settings.clone(),
            store,
            bus,
            view,
            left,
            listening,
            actor: actor.to_owned(),
        })
    }

    /// The cluster's store.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// The session's place on the node bus.
    pub fn bus(&self) -> &NodeBus {
        &self.bus
    }

    /// The settings the session was opened with.
    pub fn settings(&self) -> &MeshSettings {
        &self.settings
    }

    /// Ends the session.
    pub async fn close(self) {
        self.listening.abort();
        self.bus.shutdown().await;
    }

    /// Nodes the registry lists as live, and nodes heard announcing since the session
    /// began, by id.
    ///
    /// # Errors
    ///
    /// A store that cannot be read.
    pub async fn live_nodes(&self) -> anyhow::Result<BTreeMap<String, LiveNode>> {
        let mut nodes: BTreeMap<String, LiveNode> = self
            .store
            .nodes()
            .await
            .context("reading the node registry")?
            .into_iter()
            .filter(|record| record.state != NodeState::Leaving)
            .map(|record: NodeRecord| {
                let node = LiveNode {
                    node: record.node.clone(),
                    role: record.role,
                    group: record.group,
                    state: record.state,
                };
                (record.node, node)
            })
            .collect();
        let mut view = lock(&self.view);
        view.expire(std::time::Instant::now());
        for (id, member) in view.members() {
            nodes.insert(
                id.to_owned(),
                LiveNode {
                    node: id.to_owned(),
                    role: member.role,
                    group: member.group.clone(),
                    state: member.state,
                },
            );
        }
        Ok(nodes)
    }

    /// The live node named `node`, or an error listing the live ones.
    ///
    /// # Errors
    ///
    /// No live node has that id.
    pub async fn find(&self, node: &str) -> anyhow::Result<LiveNode> {
        let nodes = self.live_nodes().await?;
        if let Some(found) = nodes.get(node) {
            return Ok(found.clone());
        }
        let known: Vec<&str> = nodes.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        bail!("no live node is called {node:?} (live nodes: {known})")
    }

    /// Sends `command` to `node` and returns its answer, or says it did not answer.
    ///
    /// # Errors
    ///
    /// The node did not answer within [`REPLY_DEADLINE`], or the bus is gone.
    pub async fn ask(&self, node: &str, command: ControlCommand) -> anyhow::Result<ControlReply> {
        self.bus
            .request(node, command, REPLY_DEADLINE)
            .await
            .with_context(|| {
                format!(
                    "node {node} did not answer within {} s",
                    REPLY_DEADLINE.as_secs()
                )
            })
    }

    /// Records an action's outcome in the action log (its summary, or `failed: why`)
    /// and hands the outcome on.
    async fn recorded(
        &self,
        action: &str,
        args: &str,
        outcome: anyhow::Result<String>,
    ) -> anyhow::Result<String> {
        let result = match &outcome {
            Ok(done) => done.clone(),
            Err(error) => format!("failed: {error:#}"),
        };
        self.record(action, args, &result).await;
        outcome
    }

    /// Writes an action log entry; a failure to write is said on stderr, not fatal: the
    /// action itself happened.
    pub async fn record(&self, action: &str, args: &str, result: &str) {
        let entry = Action {
            actor: self.actor.clone(),
            action: action.to_owned(),
            args: args.to_owned(),
            result: result.to_owned(),
            at: SystemTime::now(),
        };
        if let Err(error) = self.store.log_action(&entry).await {
            eprintln!("warning: action log entry not written: {error}");
        }
    }

    /// Asks `node` to drain, and with `exit` to end once drained; then waits until it
    /// owns nothing (and, with `exit`, has left) within `timeout`. Returns what
    /// happened, for a person. The last ready node of its role (and group) is drained
    /// only with `last_allowed`: its keys would have no owner until another starts.
    ///
    /// # Errors
    ///
    /// An unknown node, a node that refuses or does not answer, one that goes silent
    /// during the drain, or one not drained in time; each recorded in the action log.
    pub async fn drain(
        &self,
        node: &str,
        exit: bool,
        last_allowed: bool,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let action = if exit { "drain_exit" } else { "drain" };
        let outcome = self.drain_steps(node, exit, last_allowed, timeout).await;
        self.recorded(action, node, outcome).await
    }

    async fn drain_steps(
        &self,
        node: &str,
        exit: bool,
        last_allowed: bool,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let began = Instant::now();
        let target = self.find(node).await?;
        // What it owns comes from its announcements: wait for one first.
        let heard = self
            .wait(began + self.silence(), || {
                lock(&self.view)
                    .member(node)
                    .map(|member| member.owns.clone())
            })
            .await;
        let Some(owned_before) = heard else {
            bail!(
                "node {node} is in the registry but was not heard announcing within {} s",
                self.silence().as_secs()
            );
        };
        // From the registry and the announcements both: this session may not have
        // heard every node yet.
        let others = self
            .live_nodes()
            .await?
            .values()
            .filter(|other| {
                other.node != node
                    && other.role == target.role
                    && other.group == target.group
                    && other.state == NodeState::Ready
            })
            .count();
        if others == 0 && !last_allowed {
            bail!(
                "node {node} is the only ready {} node: drained, its {} keys would have no owner (their work stops) until another node starts; add --force to drain it anyway",
                lower(target.role),
                owned_before.len()
            );
        }
        let asked = std::time::Instant::now();
        self.done(node, ControlCommand::Drain { exit }).await?;
        let drained = self
            .wait(began + timeout, || {
                if exit && self.left_since(node, asked) {
                    return Some(Ok(()));
                }
                let view = lock(&self.view);
                match view.member(node) {
                    None if exit => Some(Err(anyhow::anyhow!(
                        "node {node} went silent during the drain without announcing that it left; its keys move to the other nodes when their leases expire"
                    ))),
                    None => Some(Ok(())),
                    Some(member) if member.owns.is_empty() && !exit => Some(Ok(())),
                    Some(member) if member.last_seen.elapsed() > self.silence() => {
                        Some(Err(anyhow::anyhow!(
                            "node {node} went silent during the drain (last heard {:.1} s ago, still owning {}); its keys move to the other nodes when their leases expire",
                            member.last_seen.elapsed().as_secs_f64(),
                            member.owns.len()
                        )))
                    }
                    Some(_) => None,
                }
            })
            .await;
        match drained {
            Some(result) => result?,
            None => bail!(
                "node {node} was not drained within {} s (it still owns {})",
                timeout.as_secs(),
                self.owned_by(node).len()
            ),
        }
        // The new owners' announcements may come a heartbeat after the drain's end.
        let settle = Instant::now() + self.silence();
        let moved = self
            .wait(settle, || {
                let owners = self.owners_of(&owned_before);
                (owners.values().sum::<usize>() == owned_before.len()).then_some(owners)
            })
            .await
            .unwrap_or_else(|| self.owners_of(&owned_before));
        let took = began.elapsed().as_secs_f64();
        let role = lower(target.role);
        let after = if exit {
            "and exited"
        } else {
            "and stays up as draining"
        };
        Ok(format!(
            "{role} node {node} drained in {took:.1} s {after}: {} keys handed over{}",
            owned_before.len(),
            describe_owners(&moved)
        ))
    }

    /// Asks a draining `node` to take work again.
    ///
    /// # Errors
    ///
    /// An unknown node, or one that is not draining or does not answer.
    pub async fn undrain(&self, node: &str) -> anyhow::Result<String> {
        let outcome = async {
            self.find(node).await?;
            self.done(node, ControlCommand::Undrain).await?;
            Ok(format!("node {node} takes work again"))
        }
        .await;
        self.recorded("undrain", node, outcome).await
    }

    /// Asks the node holding `shard` to reconnect it: RESUME, or with `new_session` a
    /// new IDENTIFY. Waits (within `timeout`) until the node reports it active again.
    ///
    /// # Errors
    ///
    /// No spec, a shard outside it, no live owner, or a node that refuses, does not
    /// answer, or does not bring the shard back in time.
    pub async fn restart_shard(
        &self,
        shard: u32,
        new_session: bool,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let outcome = self.restart_steps(shard, new_session, timeout).await;
        let args = if new_session {
            format!("shard/{shard} new session")
        } else {
            format!("shard/{shard}")
        };
        self.recorded("restart_shard", &args, outcome).await
    }

    async fn restart_steps(
        &self,
        shard: u32,
        new_session: bool,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let began = Instant::now();
        let spec = self
            .store
            .spec()
            .await
            .context("reading the cluster spec")?
            .context("no cluster spec recorded yet: no gateway node has started")?;
        if shard >= spec.shard_count {
            bail!(
                "shard {shard} does not exist: the cluster has {} shards (0..={})",
                spec.shard_count,
                spec.shard_count - 1
            );
        }
        let key = LeaseKey::Shard(shard);
        let lease = self
            .store
            .lease(&key)
            .await
            .context("reading the shard's lease")?;
        let owner = lease
            .filter(|lease| lease.lease_until > SystemTime::now())
            .and_then(|lease| lease.owner)
            .with_context(|| format!("shard {shard} has no live owner to restart it"))?;
        // Compared with the node's own clock, not this one's: hosts' clocks differ.
        let before = self
            .shard_diag(&owner, shard)
            .await?
            .and_then(|s| s.active_since_ms);
        self.done(&owner, ControlCommand::RestartShard { shard, new_session })
            .await?;
        let deadline = began + timeout;
        loop {
            // The node reports the shard active again once READY or RESUMED came.
            let status = self.shard_diag(&owner, shard).await?;
            if let Some(status) = status
                && status.phase == "active"
                && status.active_since_ms != before
            {
                let how = if new_session {
                    "with a new session (one IDENTIFY spent)"
                } else {
                    "and resumed its session"
                };
                return Ok(format!(
                    "shard {shard} on node {owner} reconnected {how} in {:.1} s",
                    began.elapsed().as_secs_f64()
                ));
            }
            if Instant::now() >= deadline {
                bail!(
                    "shard {shard} on node {owner} was not active again within {} s",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(POLL * 2).await;
        }
    }

    /// What `node` says about `shard`; `None` when it does not run it.
    async fn shard_diag(&self, node: &str, shard: u32) -> anyhow::Result<Option<ShardDiag>> {
        match self.ask(node, ControlCommand::Diag).await?.outcome {
            ControlOutcome::Diag(diag) => {
                Ok(diag.work.shards.into_iter().find(|s| s.shard == shard))
            }
            ControlOutcome::Failed { error } => bail!("node {node} refused: {error}"),
            other => bail!("node {node} answered {other:?}"),
        }
    }

    /// Sends `command` and turns anything but `Done` into an error.
    async fn done(&self, node: &str, command: ControlCommand) -> anyhow::Result<()> {
        match self.ask(node, command).await?.outcome {
            ControlOutcome::Done => Ok(()),
            ControlOutcome::Failed { error } => bail!("node {node} refused: {error}"),
            other => bail!("node {node} answered {other:?}"),
        }
    }

    /// Whether `node` announced that it leaves after `since`.
    fn left_since(&self, node: &str, since: std::time::Instant) -> bool {
        self.left
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .is_some_and(|at| *at >= since)
    }

    /// Keys `node` announced it owns.
    pub fn owned_by(&self, node: &str) -> Vec<String> {
        lock(&self.view)
            .member(node)
            .map(|member| member.owns.clone())
            .unwrap_or_default()
    }

    /// Who owns each of `keys` now, by the announcements.
    fn owners_of(&self, keys: &[String]) -> BTreeMap<String, usize> {
        let view = lock(&self.view);
        let mut owners = BTreeMap::new();
        for key in keys {
            if let Some((node, _)) = view.members().find(|(_, member)| member.owns.contains(key)) {
                *owners.entry(node.to_owned()).or_default() += 1;
            }
        }
        owners
    }

    /// Whether the nodes of `role` (and `group`) own `keys` as the assignment says,
    /// each exactly once: what "ownership has settled" means after a change. `Err`
    /// says what does not match yet.
    pub fn settled(
        &self,
        role: NodeRole,
        group: Option<&str>,
        keys: &[String],
    ) -> Result<(), String> {
        let view = lock(&self.view);
        let candidates = view.candidates(role, group);
        if candidates.is_empty() {
            return Err("no live node to own the keys".into());
        }
        let target = assign(keys, &candidates);
        let mut owners: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (node, member) in view.members() {
            for key in &member.owns {
                owners.entry(key.as_str()).or_default().push(node);
            }
        }
        let wanted: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
        let mut unsettled = Vec::new();
        for key in &wanted {
            match owners.get(key).map(Vec::as_slice) {
                Some([owner]) if target.get(*key).map(String::as_str) == Some(*owner) => {}
                Some([owner]) => unsettled.push(format!("{key} on {owner}, due to move")),
                Some(several) => unsettled.push(format!("{key} on {}", several.join(" and "))),
                None => unsettled.push(format!("{key} unowned")),
            }
        }
        if unsettled.is_empty() {
            Ok(())
        } else {
            let more = unsettled.len().saturating_sub(3);
            unsettled.truncate(3);
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            Err(format!("{}{tail}", unsettled.join(", ")))
        }
    }

    /// The membership view, for waits of other actions.
    pub(crate) fn view(&self) -> std::sync::MutexGuard<'_, MembershipView> {
        lock(&self.view)
    }

    /// How long a node may go unheard before it counts as silent.
    pub(crate) fn silence(&self) -> Duration {
        Duration::from_millis(self.settings.membership.node_timeout_ms)
    }

    /// Checks `condition` every [`POLL`] until it gives an answer or `deadline` passes
    /// (`None`).
    pub(crate) async fn wait<T>(
        &self,
        deadline: Instant,
        mut condition: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        loop {
            if let Some(answer) = condition() {
                return Some(answer);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Who asks, for the action log: `<via>:<user>@<host>`.
pub fn actor(via: &str) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{via}:{user}@{}", host_name())
}

/// This host's name, for the action log's actors.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Drains `node` (see [`Control::drain`]) in a session of its own, as `actor`.
///
/// # Errors
///
/// As [`Control::connect`] and [`Control::drain`].
pub async fn drain(
    settings: &MeshSettings,
    node: &str,
    exit: bool,
    actor: &str,
) -> anyhow::Result<String> {
    let control = Control::connect(settings, actor).await?;
    let outcome = control
        .drain(node, exit, false, Duration::from_secs(120))
        .await;
    control.close().await;
    outcome
}

/// Restarts `shard` (see [`Control::restart_shard`]) in a session of its own, as
/// `actor`.
///
/// # Errors
///
/// As [`Control::connect`] and [`Control::restart_shard`].
pub async fn restart_shard(
    settings: &MeshSettings,
    shard: u32,
    new_session: bool,
    actor: &str,
) -> anyhow::Result<String> {
    let control = Control::connect(settings, actor).await?;
    let outcome = control
        .restart_shard(shard, new_session, Duration::from_secs(60))
        .await;
    control.close().await;
    outcome
}

fn describe_owners(owners: &BTreeMap<String, usize>) -> String {
    if owners.is_empty() {
        return String::new();
    }
    let list: Vec<String> = owners
        .iter()
        .map(|(node, keys)| format!("{node} ({keys})"))
        .collect();
    format!(", now on {}", list.join(", "))
}

fn lock(view: &Mutex<MembershipView>) -> std::sync::MutexGuard<'_, MembershipView> {
    view.lock().unwrap_or_else(PoisonError::into_inner)
}
