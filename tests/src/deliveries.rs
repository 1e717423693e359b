//! What a consumer group's handlers received, checked against the simulator's ground
//! truth: every dispatch (matched by `(shard, session, seq)` and the simulator's unique
//! id in the payload), labelled right, in seq order per `(shard, session)`, and once —
//! or, where a consumer was killed with SIGKILL, at most once more for the event it had in flight.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use shardmesh_sim::{EventKind, Simulator};
use tokio::time::Instant;

use crate::sink::{Post, Sink, SinkEvent};
use crate::truth::Id;

/// A dispatch the simulator sent: its type and its unique id (0 for READY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The dispatch type.
    pub kind: EventKind,
    /// The unique id in the payload, where [`EventKind::id_field`] says.
    pub id: u64,
}

/// Every dispatch the simulator sent so far (RESUME replays folded in, RESUMED left
/// out: it is not a session event).
///
/// # Panics
///
/// When the simulator dropped ground-truth records.
pub fn sent_dispatches(sim: &Simulator) -> BTreeMap<Id, Sent> {
    let page = sim.log_since(0, usize::MAX);
    assert_eq!(
        page.dropped, 0,
        "the simulator dropped ground-truth records: raise SimConfig::truth_capacity"
    );
    page.records
        .into_iter()
        .filter(|record| record.kind != EventKind::Resumed)
        .map(|record| {
            (
                (record.shard, record.session.to_string(), record.seq),
                Sent {
                    kind: record.kind,
                    id: record.id,
                },
            )
        })
        .collect()
}

/// One copy of a delivery: which node got it, when, from where.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The sink's arrival index.
    pub index: usize,
    /// When the sink got it.
    pub at: Instant,
    /// The consumer node.
    pub node: String,
    /// The stream partition and offset it was read from.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
}

impl Receipt {
    fn of(post: &Post) -> Self {
        Self {
            index: post.index,
            at: post.at,
            node: post.node.clone(),
            partition: post.event.partition,
            offset: post.event.offset,
        }
    }
}

/// What one group's handlers received, against the truth.
#[derive(Debug, Clone, Default)]
pub struct GroupReport {
    /// The consumer group.
    pub group: String,
    /// Distinct dispatches sent.
    pub dispatches: usize,
    /// Handled POSTs of the group (answered 2xx).
    pub deliveries: usize,
    /// Handled POSTs per node.
    pub per_node: BTreeMap<String, usize>,
    /// Dispatches sent and never handled.
    pub missing: Vec<Id>,
    /// Deliveries the simulator never sent.
    pub unknown: Vec<Id>,
    /// Deliveries whose fields or payload do not match the dispatch sent.
    pub mislabeled: Vec<String>,
    /// `(shard, session)` whose seqs arrived going back.
    pub disorder: Vec<String>,
    /// Dispatches handled more than once, with every copy in arrival order.
    pub repeats: BTreeMap<Id, Vec<Receipt>>,
}

impl GroupReport {
    /// Compares the handled POSTs of `group` among `posts` with `sent`; `partitions` is
    /// the cluster's partition count (shard `s` is read from partition `s % partitions`).
    pub fn new(group: &str, partitions: u32, sent: &BTreeMap<Id, Sent>, posts: &[Post]) -> Self {
        let mut report = Self {
            group: group.to_owned(),
            dispatches: sent.len(),
            ..Self::default()
        };
        let mut copies: BTreeMap<Id, Vec<Receipt>> = BTreeMap::new();
        let mut last_seq: BTreeMap<(u32, &str), (u64, usize)> = BTreeMap::new();
        for post in posts
            .iter()
            .filter(|post| post.group == group && post.handled())
        {
            report.deliveries += 1;
            *report.per_node.entry(post.node.clone()).or_default() += 1;
            let event = &post.event;
            let id = event.id();
            match sent.get(&id) {
                Some(dispatch) => {
                    if let Some(problem) = label_problem(event, *dispatch, partitions) {
                        report
                            .mislabeled
                            .push(format!("post #{} at {}: {problem}", post.index, post.node));
                    }
                }
                None => report.unknown.push(id.clone()),
            }
            let last = last_seq
                .entry((event.shard, event.session.as_str()))
                .or_insert((0, 0));
            if event.seq < last.0 {
                report.disorder.push(format!(
                    "shard {} session {}: seq {} (post #{} at {}) after seq {} (post #{})",
                    event.shard, event.session, event.seq, post.index, post.node, last.0, last.1
                ));
            }
            *last = (event.seq.max(last.0), post.index);
            copies.entry(id).or_default().push(Receipt::of(post));
        }
        report.missing = sent
            .keys()
            .filter(|id| !copies.contains_key(*id))
            .cloned()
            .collect();
        report.repeats = copies
            .into_iter()
            .filter(|(_, copies)| copies.len() > 1)
            .collect();
        report
    }

    /// Extra copies in all (a dispatch handled 3 times counts 2).
    pub fn extra_copies(&self) -> usize {
        self.repeats.values().map(|copies| copies.len() - 1).sum()
    }

    /// A one-paragraph account, for the test output.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "group {}: {} dispatches sent, {} handled ({:?} per node): {} missing, {} unknown, \
             {} mislabeled, {} out of order, {} repeated ({} extra copies)",
            self.group,
            self.dispatches,
            self.deliveries,
            self.per_node,
            self.missing.len(),
            self.unknown.len(),
            self.mislabeled.len(),
            self.disorder.len(),
            self.repeats.len(),
            self.extra_copies()
        );
        let mut detail = |name: &str, items: Vec<String>| {
            if !items.is_empty() {
                let _ = write!(text, "\n  {name}: {:?}", &items[..items.len().min(10)]);
            }
        };
        detail(
            "missing",
            self.missing.iter().map(|id| format!("{id:?}")).collect(),
        );
        detail(
            "unknown",
            self.unknown.iter().map(|id| format!("{id:?}")).collect(),
        );
        detail("mislabeled", self.mislabeled.clone());
        detail("out of order", self.disorder.clone());
        detail(
            "repeats",
            self.repeats
                .iter()
                .map(|(id, copies)| format!("{id:?} {}", describe(copies)))
                .collect(),
        );
        text
    }

    /// Asserts every dispatch was handled, labelled right, in seq order per session,
    /// and nothing the simulator did not send.
    ///
    /// # Panics
    ///
    /// With [`GroupReport::summary`] when any of that fails.
    pub fn assert_complete(&self) {
        assert!(
            self.missing.is_empty()
                && self.unknown.is_empty()
                && self.mislabeled.is_empty()
                && self.disorder.is_empty(),
            "expected every dispatch handled by group {}, labelled right, in seq order per \
             (shard, session); seen: {}",
            self.group,
            self.summary()
        );
    }

    /// Asserts nothing was handled twice.
    ///
    /// # Panics
    ///
    /// With [`GroupReport::summary`] when something was.
    pub fn assert_no_repeats(&self) {
        assert!(
            self.repeats.is_empty(),
            "expected group {} to handle every dispatch exactly once (zero repeats); seen: {}",
            self.group,
            self.summary()
        );
    }

    /// Asserts every repeat is an event that was in flight on node `killed` when
    /// it was killed with SIGKILL: handled twice, first by `killed` as the last event it handled from
    /// that partition, then by another node; from partitions `killed` owned; at most
    /// `per_partition` of them per partition. `posts` are all the sink's POSTs.
    ///
    /// # Panics
    ///
    /// With [`GroupReport::summary`] and the offending repeat.
    pub fn assert_repeats_in_flight_at(
        &self,
        killed: &str,
        owned: &BTreeSet<u32>,
        per_partition: usize,
        posts: &[Post],
    ) {
        // The killed node's last handled post per partition.
        let mut last: BTreeMap<u32, usize> = BTreeMap::new();
        for post in posts
            .iter()
            .filter(|post| post.group == self.group && post.node == killed && post.handled())
        {
            last.insert(post.event.partition, post.index);
        }
        let mut per: BTreeMap<u32, usize> = BTreeMap::new();
        for (id, copies) in &self.repeats {
            let first = &copies[0];
            let fine = copies.len() == 2
                && first.node == killed
                && copies[1].node != killed
                && last.get(&first.partition) == Some(&first.index)
                && owned.contains(&first.partition);
            assert!(
                fine,
                "expected each repeat in group {} to be the last event {killed} (killed) \
                 handled from one of its partitions {owned:?} (its last posts per partition: \
                 {last:?}), handled once more by another node; seen {id:?} {}\n{}",
                self.group,
                describe(copies),
                self.summary()
            );
            *per.entry(first.partition).or_default() += 1;
        }
        assert!(
            per.values().all(|count| *count <= per_partition),
            "expected at most {per_partition} repeat(s) per partition of {killed} in group {}; \
             seen {per:?}\n{}",
            self.group,
            self.summary()
        );
    }
}

/// Why `event` does not carry the dispatch `sent` as the simulator sent it, if it does not.
fn label_problem(event: &SinkEvent, sent: Sent, partitions: u32) -> Option<String> {
    let id = event.id();
    let name = sent.kind.as_str();
    let payload = &event.payload;
    if event.event_type != name {
        return Some(format!(
            "{id:?}: event_type {} but {name} was sent",
            event.event_type
        ));
    }
    if payload["t"].as_str() != Some(name)
        || payload["s"].as_u64() != Some(event.seq)
        || payload["op"].as_u64() != Some(0)
    {
        return Some(format!(
            "{id:?}: payload says op={} s={} t={}",
            payload["op"], payload["s"], payload["t"]
        ));
    }
    if event.partition != event.shard % partitions {
        return Some(format!(
            "{id:?}: read from partition {}, expected {}",
            event.partition,
            event.shard % partitions
        ));
    }
    if let Some(field) = sent.kind.id_field() {
        let found = field
            .split('.')
            .fold(&payload["d"], |value, key| &value[key])
            .as_str()
            .and_then(|text| text.parse::<u64>().ok());
        if found != Some(sent.id) {
            return Some(format!(
                "{id:?}: payload d.{field} = {found:?}, the simulator sent id {}",
                sent.id
            ));
        }
    }
    None
}

fn describe(copies: &[Receipt]) -> String {
    copies
        .iter()
        .map(|copy| {
            format!(
                "#{} at {} (p{} @{})",
                copy.index, copy.node, copy.partition, copy.offset
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks some dispatches by id.
pub type IdFilter = dyn Fn(&Id) -> bool + Sync;

/// Which dispatches [`wait_caught_up`] waits for.
#[derive(Clone, Copy)]
pub enum Upto<'a> {
    /// Every dispatch the simulator has sent, re-read each round (the last frames may
    /// still be on their way, and the very last ones may be sent after traffic stops).
    All,
    /// These dispatches (a snapshot taken while traffic goes on).
    Snapshot(&'a BTreeMap<Id, Sent>),
    /// Every dispatch sent, re-read each round, whose id passes the filter.
    AllWhere(&'a IdFilter),
}

/// Waits until each of `groups` has handled (2xx) every dispatch `upto` names.
///
/// # Panics
///
/// After `timeout`, with how many each group still misses and the first of them.
pub async fn wait_caught_up(
    sim: &Simulator,
    sink: &Sink,
    groups: &[&str],
    upto: Upto<'_>,
    timeout: Duration,
) {
    let mut handled: BTreeMap<&str, HashSet<Id>> = groups
        .iter()
        .map(|group| (*group, HashSet::new()))
        .collect();
    let mut cursor = 0;
    crate::wait::wait_until(
        &format!("groups {groups:?} to have handled every dispatch the simulator sent"),
        timeout,
        || {
            let posts = sink.posts_since(cursor);
            cursor += posts.len();
            for post in posts.iter().filter(|post| post.handled()) {
                if let Some(ids) = handled.get_mut(post.group.as_str()) {
                    ids.insert(post.event.id());
                }
            }
            let read;
            let (sent, only): (&BTreeMap<Id, Sent>, &IdFilter) = match upto {
                Upto::Snapshot(sent) => (sent, &|_| true),
                Upto::All => {
                    read = sent_dispatches(sim);
                    (&read, &|_| true)
                }
                Upto::AllWhere(only) => {
                    read = sent_dispatches(sim);
                    (&read, only)
                }
            };
            let mut behind = Vec::new();
            for (group, ids) in &handled {
                let missing: Vec<&Id> = sent
                    .keys()
                    .filter(|id| only(id) && !ids.contains(*id))
                    .collect();
                if !missing.is_empty() {
                    behind.push(format!(
                        "group {group} misses {} of {} (first: {:?})",
                        missing.len(),
                        sent.len(),
                        &missing[..missing.len().min(5)]
                    ));
                }
            }
            if behind.is_empty() {
                Ok(())
            } else {
                Err(behind.join("; "))
            }
        },
    )
    .await;
}
