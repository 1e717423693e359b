//! `shardmesh ctl status`'s report: the cluster's rows as the store holds them, read in
//! one go, and each shard's command backlog as the broker holds it, rendered as plain
//! aligned text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use shardmesh_broker::{BrokerConfig, CommandBacklog, Topology};
use shardmesh_proto::NodeRole;

use crate::text::{lower, relative, row, section, table};
use shardmesh_store::{
    Action, ClusterSpec, IdentifyBudget, Lease, LeaseKey, LeaseState, NodeRecord, Store,
};

/// Everything the report shows, read from the store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The cluster name the rows belong to.
    pub cluster: String,
    /// Which store they were read from (`sqlite file /path on host`, ...).
    pub store: String,
    /// The agreed spec; none before the first node started.
    pub spec: Option<ClusterSpec>,
    /// The daily identify budget, once a gateway node recorded Discord's figures.
    pub budget: Option<IdentifyBudget>,
    /// Registry rows that have not expired.
    pub nodes: Vec<NodeRecord>,
    /// Every shard and partition lease row, held, expired or released.
    pub leases: Vec<Lease>,
    /// Newest first.
    pub actions: Vec<Action>,
    /// Each shard's command queue, by shard (a shard without one has never had a
    /// command or an owner); why not, if the broker could not be read.
    pub commands: Result<BTreeMap<u32, CommandBacklog>, String>,
}

/// How long the broker may take to report the command queues: the report is read
/// from the store and must come even when RabbitMQ does not answer.
const BROKER_DEADLINE: Duration = Duration::from_secs(10);

impl Snapshot {
    /// Reads the cluster's rows, with the `actions` most recent actions.
    pub async fn read(store: &impl Store, actions: usize) -> Result<Self, shardmesh_store::Error> {
        Ok(Self {
            cluster: store.cluster().to_owned(),
            store: store.location(),
            spec: store.spec().await?,
            budget: store.identify_budget().await?,
            nodes: store.nodes().await?,
            leases: store.leases().await?,
            actions: store.recent_actions(actions).await?,
            commands: Err("not read".into()),
        })
    }

    /// Reads the shards' command queues from the broker, within [`BROKER_DEADLINE`];
    /// a failure is kept as the reason, for the report to show.
    pub async fn read_commands(&mut self, broker: &BrokerConfig) {
        let Some(spec) = self.spec else {
            self.commands = Err("no shard count recorded yet".into());
            return;
        };
        let topology = match Topology::new(&self.cluster, spec.partitions, broker) {
            Ok(topology) => topology.with_command_queues(spec.shard_count),
            Err(error) => {
                self.commands = Err(error.to_string());
                return;
            }
        };
        let read = tokio::time::timeout(
            BROKER_DEADLINE,
            shardmesh_broker::command_backlog(broker, &topology),
        )
        .await;
        self.commands = match read {
            Ok(Ok(queues)) => Ok(queues
                .into_iter()
                .map(|queue| (queue.shard, queue))
                .collect()),
            Ok(Err(error)) => Err(format!("broker {}: {error}", broker.url)),
            Err(_) => Err(format!(
                "broker {} did not answer within {}s",
                broker.url,
                BROKER_DEADLINE.as_secs()
            )),
        };
    }
}

/// The report, as of `now` (lease expiries and "ago" times are relative to it).
pub fn render(snapshot: &Snapshot, now: SystemTime) -> String {
    let mut out = String::new();
    header(&mut out, snapshot, now);
    nodes(&mut out, snapshot, now);
    shards(&mut out, snapshot, now);
    partitions(&mut out, snapshot, now);
    actions(&mut out, snapshot, now);
    out
}

fn header(out: &mut String, snapshot: &Snapshot, now: SystemTime) {
    let cluster = &snapshot.cluster;
    match &snapshot.spec {
        Some(spec) => writeln!(
            out,
            "cluster {cluster}: {} shards, {} partitions, max_concurrency {}",
            spec.shard_count, spec.partitions, spec.max_concurrency
        ),
        None => writeln!(
            out,
            "cluster {cluster}: no spec recorded (no node started yet)"
        ),
    }
    .expect("writing to a String");
    writeln!(out, "store: {}", snapshot.store).expect("writing to a String");
    if let Some(budget) = &snapshot.budget {
        writeln!(
            out,
            "identify budget: {} of {} left, resets {}",
            budget.remaining,
            budget.total,
            relative(budget.resets_at, now)
        )
        .expect("writing to a String");
    }
}

fn nodes(out: &mut String, snapshot: &Snapshot, now: SystemTime) {
    section(out, &format!("nodes: {}", snapshot.nodes.len()));
    let mut rows = vec![row(["NODE", "ROLE", "GROUP", "STATE", "STARTED", "SEEN"])];
    let mut nodes: Vec<&NodeRecord> = snapshot.nodes.iter().collect();
    // Gateways first, then consumers by group.
    nodes.sort_by_key(|node| (node.role != NodeRole::Gateway, &node.group, &node.node));
    for node in nodes {
        rows.push(vec![
            node.node.clone(),
            lower(node.role),
            node.group.clone().unwrap_or_else(|| "-".into()),
            lower(node.state),
            relative(node.started_at, now),
            relative(node.seen_at, now),
        ]);
    }
    table(out, &rows);
}

fn shards(out: &mut String, snapshot: &Snapshot, now: SystemTime) {
    let mut by_shard: BTreeMap<u32, &Lease> = BTreeMap::new();
    for lease in &snapshot.leases {
        if let LeaseKey::Shard(shard) = lease.key {
            by_shard.insert(shard, lease);
        }
    }
    let count = snapshot.spec.map_or(0, |spec| spec.shard_count);
    let all: BTreeSet<u32> = (0..count).chain(by_shard.keys().copied()).collect();
    if all.is_empty() {
        return;
    }
    let leases: Vec<&Lease> = by_shard.values().copied().collect();
    section(
        out,
        &format!("shards: {}", ownership(all.len(), &leases, now)),
    );
    let mut rows = vec![row([
        "SHARD", "OWNER", "EPOCH", "SESSION", "SEQ", "LEASE", "COMMANDS",
    ])];
    for shard in all {
        let commands = command_backlog(snapshot, shard);
        let Some(lease) = by_shard.get(&shard) else {
            rows.push(row([
                &shard.to_string(),
                "-",
                "-",
                "-",
                "-",
                "never held",
                &commands,
            ]));
            continue;
        };
        let (session, seq) = match &lease.state {
            LeaseState::Shard(saved) => (saved.session_id.clone(), saved.seq.to_string()),
            _ => ("-".into(), "-".into()),
        };
        rows.push(vec![
            shard.to_string(),
            owner(lease),
            lease.epoch.to_string(),
            session,
            seq,
            expiry(lease, now),
            commands,
        ]);
    }
    table(out, &rows);
    if let Err(reason) = &snapshot.commands {
        writeln!(out, "  command backlog not read: {reason}").expect("writing to a String");
    }
}

/// A shard's commands waiting in the broker: "0", "12 waiting, no reader" while
/// nobody takes them, "-" without a queue, "?" when the broker was not read.
fn command_backlog(snapshot: &Snapshot, shard: u32) -> String {
    let Ok(queues) = &snapshot.commands else {
        return "?".into();
    };
    match queues.get(&shard) {
        None => "-".into(),
        Some(queue) if queue.readers == 0 && queue.waiting > 0 => {
            format!("{} waiting, no reader", queue.waiting)
        }
        Some(queue) => queue.waiting.to_string(),
    }
}

fn partitions(out: &mut String, snapshot: &Snapshot, now: SystemTime) {
    let mut groups: BTreeMap<&str, BTreeMap<u32, &Lease>> = BTreeMap::new();
    for lease in &snapshot.leases {
        if let LeaseKey::Partition { group, partition } = &lease.key {
            groups
                .entry(group.as_str())
                .or_default()
                .insert(*partition, lease);
        }
    }
    let count = snapshot.spec.map_or(0, |spec| spec.partitions);
    for (group, by_partition) in groups {
        let all: BTreeSet<u32> = (0..count).chain(by_partition.keys().copied()).collect();
        let leases: Vec<&Lease> = by_partition.values().copied().collect();
        section(
            out,
            &format!(
                "partitions of group {group}: {}",
                ownership(all.len(), &leases, now)
            ),
        );
        let mut rows = vec![row([
            "PARTITION",
            "OWNER",
            "EPOCH",
            "OFFSET",
            "SHARDS SEEN",
            "LEASE",
        ])];
        for partition in all {
            let Some(lease) = by_partition.get(&partition) else {
                rows.push(row([
                    &partition.to_string(),
                    "-",
                    "-",
                    "-",
                    "-",
                    "never held",
                ]));
                continue;
            };
            let (offset, marks) = match &lease.state {
                LeaseState::Partition(checkpoint) => (
                    checkpoint
                        .offset
                        .map_or_else(|| "-".into(), |offset| offset.to_string()),
                    checkpoint.marks.len().to_string(),
                ),
                _ => ("-".into(), "-".into()),
            };
            rows.push(vec![
                partition.to_string(),
                owner(lease),
                lease.epoch.to_string(),
                offset,
                marks,
                expiry(lease, now),
            ]);
        }
        table(out, &rows);
    }
}

fn actions(out: &mut String, snapshot: &Snapshot, now: SystemTime) {
    if snapshot.actions.is_empty() {
        return;
    }
    section(
        out,
        &format!("recent actions: {} (newest first)", snapshot.actions.len()),
    );
    let mut rows = vec![row(["WHEN", "ACTOR", "ACTION", "ARGS", "RESULT"])];
    for action in &snapshot.actions {
        rows.push(vec![
            relative(action.at, now),
            action.actor.clone(),
            action.action.clone(),
            action.args.clone(),
            action.result.clone(),
        ]);
    }
    table(out, &rows);
}

/// "12 of 16 owned (a 6, b 6), 1 expired": live owners and their counts.
fn ownership(total: usize, leases: &[&Lease], now: SystemTime) -> String {
    let mut per_owner: BTreeMap<&str, usize> = BTreeMap::new();
    let mut expired = 0;
    for lease in leases {
        match &lease.owner {
            Some(owner) if lease.lease_until > now => *per_owner.entry(owner).or_default() += 1,
            Some(_) => expired += 1,
            None => {}
        }
    }
    let owned: usize = per_owner.values().sum();
    let mut text = format!("{owned} of {total} owned");
    if !per_owner.is_empty() {
        let counts: Vec<String> = per_owner
            .iter()
            .map(|(owner, count)| format!("{owner} {count}"))
            .collect();
        write!(text, " ({})", counts.join(", ")).expect("writing to a String");
    }
    if expired > 0 {
        write!(text, ", {expired} expired (their owner stopped renewing)")
            .expect("writing to a String");
    }
    text
}

fn owner(lease: &Lease) -> String {
    lease.owner.clone().unwrap_or_else(|| "-".into())
}

/// When the lease runs out, or how it ended.
fn expiry(lease: &Lease, now: SystemTime) -> String {
    match (&lease.owner, lease.lease_until > now) {
        (None, _) => "released".into(),
        (Some(_), true) => format!("expires {}", relative(lease.lease_until, now)),
        (Some(_), false) => format!("expired {}", relative(lease.lease_until, now)),
    }
}

#[cfg(test)]
mod tests {
    use shardmesh_proto::NodeState;
    use shardmesh_store::{Checkpoint, DedupMark, ShardSession};

    use super::*;

    const NOW_S: u64 = 1_800_000_000;

    fn at(offset_ms: i64) -> SystemTime {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_S);
        if offset_ms >= 0 {
            now + Duration::from_millis(offset_ms.unsigned_abs())
        } else {
            now - Duration::from_millis(offset_ms.unsigned_abs())
        }
    }

    fn lease(
        key: LeaseKey,
        owner: Option<&str>,
        epoch: u64,
        until_ms: i64,
        state: LeaseState,
    ) -> Lease {
        Lease {
            key,
            owner: owner.map(str::to_owned),
            epoch,
            lease_until: at(until_ms),
            state,
        }
    }

    fn node(name: &str, role: NodeRole, group: Option<&str>) -> NodeRecord {
        NodeRecord {
            node: name.into(),
            role,
            group: group.map(str::to_owned),
            state: NodeState::Ready,
            address: None,
            started_at: at(-754_000),
            seen_at: at(-400),
        }
    }

    fn session(id: &str, seq: u64) -> LeaseState {
        LeaseState::Shard(ShardSession {
            session_id: id.into(),
            seq,
            resume_url: "wss://resume.example".into(),
        })
    }

    fn backlog(shard: u32, waiting: u32, readers: u32) -> CommandBacklog {
        CommandBacklog {
            shard,
            waiting,
            readers,
        }
    }

    #[test]
    fn the_report_shows_owners_sessions_checkpoints_and_what_went_wrong() {
        let mark = DedupMark {
            epoch: 3,
            session: "s0".into(),
            seq: 120,
        };
        let snapshot = Snapshot {
            cluster: "prod".into(),
            store: "sqlite file /s.sqlite on h".into(),
            spec: Some(ClusterSpec {
                shard_count: 4,
                partitions: 2,
                max_concurrency: 1,
            }),
            budget: Some(IdentifyBudget {
                remaining: 990,
                total: 1_000,
                resets_at: at(7_200_000),
            }),
            nodes: vec![
                node("c1", NodeRole::Consumer, Some("bot")),
                node("g1", NodeRole::Gateway, None),
            ],
            leases: vec![
                lease(LeaseKey::Shard(0), Some("g1"), 3, 7_250, session("s0", 123)),
                lease(LeaseKey::Shard(1), Some("g2"), 1, -2_000, session("s1", 7)),
                lease(LeaseKey::Shard(2), None, 2, -60_000, session("s2", 99)),
                lease(
                    LeaseKey::Partition {
                        group: "bot".into(),
                        partition: 0,
                    },
                    Some("c1"),
                    5,
                    9_000,
                    LeaseState::Partition(Checkpoint {
                        offset: Some(41),
                        marks: [(0, mark)].into(),
                    }),
                ),
            ],
            actions: vec![Action {
                actor: "g2".into(),
                action: "hand_over".into(),
                args: "shard/2".into(),
                result: "ok".into(),
                at: at(-61_000),
            }],
            commands: Ok([
                (0, backlog(0, 0, 1)),
                (1, backlog(1, 41, 0)),
                (2, backlog(2, 0, 0)),
            ]
            .into()),
        };
        let expected = "\
cluster prod: 4 shards, 2 partitions, max_concurrency 1
store: sqlite file /s.sqlite on h
identify budget: 990 of 1000 left, resets in 2h 0m

nodes: 2
  NODE  ROLE      GROUP  STATE  STARTED      SEEN
  g1    gateway   -      ready  12m 34s ago  0.4s ago
  c1    consumer  bot    ready  12m 34s ago  0.4s ago

shards: 1 of 4 owned (g1 1), 1 expired (their owner stopped renewing)
  SHARD  OWNER  EPOCH  SESSION  SEQ  LEASE             COMMANDS
  0      g1     3      s0       123  expires in 7.2s   0
  1      g2     1      s1       7    expired 2.0s ago  41 waiting, no reader
  2      -      2      s2       99   released          0
  3      -      -      -        -    never held        -

partitions of group bot: 1 of 2 owned (c1 1)
  PARTITION  OWNER  EPOCH  OFFSET  SHARDS SEEN  LEASE
  0          c1     5      41      1            expires in 9.0s
  1          -      -      -       -            never held

recent actions: 1 (newest first)
  WHEN       ACTOR  ACTION     ARGS     RESULT
  1m 1s ago  g2     hand_over  shard/2  ok
";
        assert_eq!(render(&snapshot, at(0)), expected);
    }

    #[test]
    fn an_empty_store_says_no_node_started() {
        let snapshot = Snapshot {
            cluster: "new".into(),
            store: "sqlite file /s.sqlite on h".into(),
            spec: None,
            budget: None,
            nodes: Vec::new(),
            leases: Vec::new(),
            actions: Vec::new(),
            commands: Err("no shard count recorded yet".into()),
        };
        assert_eq!(
            render(&snapshot, at(0)),
            "cluster new: no spec recorded (no node started yet)\nstore: sqlite file /s.sqlite on h\n\nnodes: 0\n  NODE  ROLE  GROUP  STATE  STARTED  SEEN\n"
        );
    }
}
