//! What `GET /api/state` answers: the cluster as the store holds it (the same rows
//! `ctl status` prints) with what the nodes said about themselves when last asked,
//! flattened into plain JSON for the page to draw. Times are Unix milliseconds of the
//! dashboard's clock, with `now_ms` alongside, so the page computes ages against the
//! server's clock rather than the browser's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::text::unix_ms;

use serde::Serialize;
use shardmesh_proto::NodeRole;
use shardmesh_store::{Lease, LeaseKey, LeaseState};

use crate::status_report::Snapshot;

/// The whole page's data.
#[derive(Debug, Clone, Serialize)]
pub struct DashboardState {
    /// The cluster name.
    pub cluster: String,
    /// Which store the rows come from.
    pub store: String,
    /// When the rows were read.
    pub now_ms: u64,
    /// Whether the control buttons work (an admin token is configured).
    pub actions_enabled: bool,
    /// Shard count, partitions and `max_concurrency`; none before the first node.
    pub spec: Option<SpecView>,
    /// The daily identify budget, once a gateway node recorded it.
    pub budget: Option<BudgetView>,
    /// Registry rows that have not expired, gateways first.
    pub nodes: Vec<NodeView>,
    /// One per shard, by shard id.
    pub shards: Vec<ShardView>,
    /// One per consumer group that has partition leases, by name.
    pub groups: Vec<GroupView>,
    /// The action log, newest first.
    pub actions: Vec<ActionView>,
    /// How the last round of asking the nodes went.
    pub live: LiveStatus,
}

/// The cluster spec.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SpecView {
    /// Discord shards.
    pub shard_count: u32,
    /// Event stream partitions.
    pub partitions: u32,
    /// Identify buckets.
    pub max_concurrency: u32,
}

/// The identify budget.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BudgetView {
    /// Session starts left today.
    pub remaining: u32,
    /// Session starts per day.
    pub total: u32,
    /// When Discord resets `remaining` to `total`.
    pub resets_at_ms: u64,
}

/// A node of the registry.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// `gateway` or `consumer`.
    pub role: NodeRole,
    /// Consumer group, for consumers.
    pub group: Option<String>,
    /// `starting`, `ready`, `draining` or `leaving`.
    pub state: shardmesh_proto::NodeState,
    /// Its HTTP address (`/health`, `/ready`, `/metrics`), if it serves one.
    pub address: Option<String>,
    /// When it started.
    pub started_at_ms: u64,
    /// When it last wrote its registry row.
    pub seen_at_ms: u64,
    /// Whether it failed to answer the last round of questions.
    pub silent: bool,
    /// A gateway's events not yet confirmed by the broker, as it last said.
    pub backlog: Option<u64>,
}

/// How a lease row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseStanding {
    /// Owned and renewed in time.
    Held,
    /// Its owner stopped renewing (crashed, frozen, cut off); free for the taking.
    Expired,
    /// Handed over and not yet taken.
    Released,
    /// No row: nobody ever held the key.
    NeverHeld,
}

/// One shard cell.
#[derive(Debug, Clone, Serialize)]
pub struct ShardView {
    /// Shard id.
    pub shard: u32,
    /// The lease's owner as the store says, also once expired.
    pub owner: Option<String>,
    /// How the lease stands.
    pub lease: LeaseStanding,
    /// Fencing epoch of the lease (0 without a row).
    pub epoch: u64,
    /// When the lease runs or ran out.
    pub lease_until_ms: Option<u64>,
    /// The saved Discord session, empty before the first.
    pub session_id: String,
    /// The saved (last confirmed) seq.
    pub seq: u64,
    /// What the owning node said about the connection, when it answered.
    pub live: Option<ShardLive>,
}

/// A shard as its node sees it (from the nodes' diagnostics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShardLive {
    /// `connecting`, `resuming`, `active`, `draining`, `fatally_closed`, `stopped`.
    pub phase: String,
    /// The node that reported it.
    pub node: String,
    /// Heartbeat round trip, ms.
    pub latency_ms: Option<u64>,
    /// When the last dispatch arrived.
    pub last_event_at_ms: Option<u64>,
    /// When the connection became active on that node (its session age).
    pub active_since_ms: Option<u64>,
}

/// A consumer group and its partitions.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// Group name.
    pub group: String,
    /// One per partition, by number.
    pub partitions: Vec<PartitionView>,
}

/// One partition of a group.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionView {
    /// Partition (stream) number.
    pub partition: u32,
    /// The lease's owner as the store says.
    pub owner: Option<String>,
    /// How the lease stands.
    pub lease: LeaseStanding,
    /// The checkpoint: last handled stream offset.
    pub offset: Option<u64>,
    /// Stream messages (batches of events) after the checkpoint, when known.
    pub lag: Option<u64>,
    /// Age of the oldest of them, ms (0 when caught up), when known.
    pub lag_ms: Option<u64>,
}

/// One action-log entry.
#[derive(Debug, Clone, Serialize)]
pub struct ActionView {
    /// When it happened.
    pub at_ms: u64,
    /// Who did or asked for it.
    pub actor: String,
    /// What (`acquire`, `hand_over`, `drain`, ...).
    pub action: String,
    /// On what.
    pub args: String,
    /// How it went.
    pub result: String,
}

/// The outcome of the last round of asking the nodes over the control exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveStatus {
    /// When the round finished; none before the first.
    pub at_ms: Option<u64>,
    /// Nodes that did not answer in time.
    pub silent: Vec<String>,
    /// Why the round failed as a whole (the broker down, ...).
    pub error: Option<String>,
    /// Why the consumer groups' lag could not be measured, if it could not.
    pub lag_error: Option<String>,
}

/// What the nodes last said: each shard's live view and who kept quiet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// How the round went.
    pub status: LiveStatus,
    /// Every report of a shard, by shard; more than one while it moves.
    pub shards: BTreeMap<u32, Vec<ShardLive>>,
    /// Consumer lag by (group, partition), when known.
    pub lag: BTreeMap<(String, u32), Lag>,
    /// Each answering gateway node's publisher backlog.
    pub backlog: BTreeMap<String, u64>,
}

/// How far a group's partition is behind its stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Stream messages after the checkpoint.
    pub behind: u64,
    /// Age of the oldest of them, ms.
    pub behind_ms: u64,
}

/// Builds the page's data from the store's rows and the nodes' last answers, as of
/// `now`.
pub fn build(
    snapshot: &Snapshot,
    live: &Live,
    now: SystemTime,
    actions_enabled: bool,
) -> DashboardState {
    DashboardState {
        cluster: snapshot.cluster.clone(),
        store: snapshot.store.clone(),
        now_ms: unix_ms(now),
        actions_enabled,
        spec: snapshot.spec.map(|spec| SpecView {
            shard_count: spec.shard_count,
            partitions: spec.partitions,
            max_concurrency: spec.max_concurrency,
        }),
        budget: snapshot.budget.map(|budget| BudgetView {
            remaining: budget.remaining,
            total: budget.total,
            resets_at_ms: unix_ms(budget.resets_at),
        }),
        nodes: nodes(snapshot, live),
        shards: shards(snapshot, live, now),
        groups: groups(snapshot, live, now),
        actions: snapshot
            .actions
            .iter()
            .map(|action| ActionView {
                at_ms: unix_ms(action.at),
                actor: action.actor.clone(),
                action: action.action.clone(),
                args: action.args.clone(),
                result: action.result.clone(),
            })
            .collect(),
        live: live.status.clone(),
    }
}

fn nodes(snapshot: &Snapshot, live: &Live) -> Vec<NodeView> {
    let mut nodes: Vec<NodeView> = snapshot
        .nodes
        .iter()
        .map(|node| NodeView {
            id: node.node.clone(),
            role: node.role,
            group: node.group.clone(),
            state: node.state,
            address: node.address.clone(),
            started_at_ms: unix_ms(node.started_at),
            seen_at_ms: unix_ms(node.seen_at),
            silent: live.status.silent.contains(&node.node),
            backlog: live.backlog.get(&node.node).copied(),
        })
        .collect();
    // As `ctl status` lists them: gateways first, then consumers by group.
    nodes.sort_by(|a, b| {
        (a.role != NodeRole::Gateway, &a.group, &a.id).cmp(&(
            b.role != NodeRole::Gateway,
            &b.group,
            &b.id,
        ))
    });
    nodes
}

fn shards(snapshot: &Snapshot, live: &Live, now: SystemTime) -> Vec<ShardView> {
    let by_shard: BTreeMap<u32, &Lease> = snapshot
        .leases
        .iter()
        .filter_map(|lease| match lease.key {
            LeaseKey::Shard(shard) => Some((shard, lease)),
            LeaseKey::Partition { .. } => None,
        })
        .collect();
    let count = snapshot.spec.map_or(0, |spec| spec.shard_count);
    let all: BTreeSet<u32> = (0..count).chain(by_shard.keys().copied()).collect();
    all.into_iter()
        .map(|shard| {
            let lease = by_shard.get(&shard).copied();
            let (session_id, seq) = match lease.map(|lease| &lease.state) {
                Some(LeaseState::Shard(saved)) => (saved.session_id.clone(), saved.seq),
                _ => (String::new(), 0),
            };
            let owner = lease.and_then(|lease| lease.owner.clone());
            ShardView {
                shard,
                live: shard_live(live, shard, owner.as_deref()),
                owner,
                lease: standing(lease, now),
                epoch: lease.map_or(0, |lease| lease.epoch),
                lease_until_ms: lease.map(|lease| unix_ms(lease.lease_until)),
                session_id,
                seq,
            }
        })
        .collect()
}

/// The report of the node the store names as owner; another node's while the store
/// names none that reported (a shard on its way from one to the other).
fn shard_live(live: &Live, shard: u32, owner: Option<&str>) -> Option<ShardLive> {
    let reports = live.shards.get(&shard)?;
    reports
        .iter()
        .find(|report| Some(report.node.as_str()) == owner)
        .or_else(|| reports.first())
        .cloned()
}

fn groups(snapshot: &Snapshot, live: &Live, now: SystemTime) -> Vec<GroupView> {
    let mut groups: BTreeMap<&str, BTreeMap<u32, &Lease>> = BTreeMap::new();
    for lease in &snapshot.leases {
        if let LeaseKey::Partition { group, partition } = &lease.key {
            groups
                .entry(group.as_str())
                .or_default()
                .insert(*partition, lease);
        }
    }
    // A group whose nodes run but have not taken a lease yet is shown too.
    for node in &snapshot.nodes {
        if let Some(group) = &node.group {
            groups.entry(group.as_str()).or_default();
        }
    }
    let count = snapshot.spec.map_or(0, |spec| spec.partitions);
    groups
        .into_iter()
        .map(|(group, by_partition)| {
            let all: BTreeSet<u32> = (0..count).chain(by_partition.keys().copied()).collect();
            let partitions = all
                .into_iter()
                .map(|partition| {
                    let lease = by_partition.get(&partition).copied();
                    let lag = live.lag.get(&(group.to_owned(), partition));
                    PartitionView {
                        partition,
                        owner: lease.and_then(|lease| lease.owner.clone()),
                        lease: standing(lease, now),
                        offset: match lease.map(|lease| &lease.state) {
                            Some(LeaseState::Partition(checkpoint)) => checkpoint.offset,
                            _ => None,
                        },
                        lag: lag.map(|lag| lag.behind),
                        lag_ms: lag.map(|lag| lag.behind_ms),
                    }
                })
                .collect();
            GroupView {
                group: group.to_owned(),
                partitions,
            }
        })
        .collect()
}

fn standing(lease: Option<&Lease>, now: SystemTime) -> LeaseStanding {
    match lease {
        None => LeaseStanding::NeverHeld,
        Some(lease) if lease.owner.is_none() => LeaseStanding::Released,
        Some(lease) if lease.lease_until > now => LeaseStanding::Held,
        Some(_) => LeaseStanding::Expired,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use shardmesh_proto::NodeState;
    use shardmesh_store::{ClusterSpec, NodeRecord, ShardSession};

    use super::*;

    fn at(offset_ms: i64) -> SystemTime {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        if offset_ms >= 0 {
            now + Duration::from_millis(offset_ms.unsigned_abs())
        } else {
            now - Duration::from_millis(offset_ms.unsigned_abs())
        }
    }

    fn shard_lease(shard: u32, owner: Option<&str>, until_ms: i64) -> Lease {
        Lease {
            key: LeaseKey::Shard(shard),
            owner: owner.map(str::to_owned),
            epoch: 2,
            lease_until: at(until_ms),
            state: LeaseState::Shard(ShardSession {
                session_id: format!("s{shard}"),
                seq: 40 + u64::from(shard),
                resume_url: "wss://resume".into(),
            }),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            cluster: "prod".into(),
            store: "sqlite file /s.sqlite on h".into(),
            spec: Some(ClusterSpec {
                shard_count: 4,
                partitions: 2,
                max_concurrency: 1,
            }),
            budget: None,
            nodes: vec![
                NodeRecord {
                    node: "c1".into(),
                    role: NodeRole::Consumer,
                    group: Some("bot".into()),
                    state: NodeState::Ready,
                    address: None,
                    started_at: at(-60_000),
                    seen_at: at(-100),
                },
                NodeRecord {
                    node: "g1".into(),
                    role: NodeRole::Gateway,
                    group: None,
                    state: NodeState::Ready,
                    address: Some("10.0.0.1:9000".into()),
                    started_at: at(-60_000),
                    seen_at: at(-100),
                },
            ],
            leases: vec![
                shard_lease(0, Some("g1"), 5_000),
                shard_lease(1, Some("g2"), -1_000),
                shard_lease(2, None, -9_000),
            ],
            actions: Vec::new(),
            commands: Err("not read".into()),
        }
    }

    #[test]
    fn every_shard_gets_a_cell_with_its_owner_and_how_its_lease_stands() {
        let state = build(&snapshot(), &Live::default(), at(0), false);
        let cells: Vec<(u32, Option<&str>, LeaseStanding, u64)> = state
            .shards
            .iter()
            .map(|cell| (cell.shard, cell.owner.as_deref(), cell.lease, cell.seq))
            .collect();
        assert_eq!(
            cells,
            [
                (0, Some("g1"), LeaseStanding::Held, 40),
                (1, Some("g2"), LeaseStanding::Expired, 41),
                (2, None, LeaseStanding::Released, 42),
                (3, None, LeaseStanding::NeverHeld, 0),
            ]
        );
        assert_eq!(state.now_ms, 1_800_000_000_000);
        // Gateways first; the consumer's group is listed though it holds no lease yet.
        let nodes: Vec<&str> = state.nodes.iter().map(|node| node.id.as_str()).collect();
        assert_eq!(nodes, ["g1", "c1"]);
        assert_eq!(state.groups.len(), 1);
        assert_eq!(state.groups[0].partitions.len(), 2);
        let json = serde_json::to_value(&state).expect("serializable");
        assert_eq!(json["shards"][3]["lease"], "never_held");
        assert_eq!(json["nodes"][0]["role"], "gateway");
    }

    #[test]
    fn a_shard_shows_what_its_owner_reported_and_silent_nodes_are_marked() {
        let report = |node: &str, phase: &str| ShardLive {
            phase: phase.into(),
            node: node.into(),
            latency_ms: Some(41),
            last_event_at_ms: Some(1_799_999_999_000),
            active_since_ms: Some(1_799_999_000_000),
        };
        let live = Live {
            status: LiveStatus {
                at_ms: Some(1_800_000_000_000),
                silent: vec!["c1".into()],
                error: None,
                lag_error: None,
            },
            // Shard 0 is on its way: the old node still reports it draining.
            shards: [(0, vec![report("g0", "draining"), report("g1", "active")])].into(),
            lag: [(
                ("bot".to_owned(), 1),
                Lag {
                    behind: 17,
                    behind_ms: 900,
                },
            )]
            .into(),
            backlog: [("g1".to_owned(), 3)].into(),
        };
        let state = build(&snapshot(), &live, at(0), true);
        let shard0 = state.shards[0].live.as_ref().expect("shard 0 reported");
        assert_eq!(
            (shard0.node.as_str(), shard0.phase.as_str()),
            ("g1", "active")
        );
        assert!(state.shards[1].live.is_none());
        let silent: Vec<(&str, bool, Option<u64>)> = state
            .nodes
            .iter()
            .map(|node| (node.id.as_str(), node.silent, node.backlog))
            .collect();
        assert_eq!(silent, [("g1", false, Some(3)), ("c1", true, None)]);
        let lags: Vec<(Option<u64>, Option<u64>)> = state.groups[0]
            .partitions
            .iter()
            .map(|partition| (partition.lag, partition.lag_ms))
            .collect();
        assert_eq!(lags, [(None, None), (Some(17), Some(900))]);
        assert!(state.actions_enabled);
    }
}
