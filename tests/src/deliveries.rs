//! What a consumer group's handlers received, checked against the simulator's ground
//! truth: every dispatch (matched by `(shard, session, seq)` and the simulator's unique
//! id in the payload), labelled right, in seq order per `(shard, session)`, and once —
//! or, where a consumer was killed with SIGKILL, at most once more for the event it had in flight.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use shardmesh_harness::{Arrival, Id, Sent, Truth, Verdict, detail, wait_until};
use shardmesh_sim::Simulator;
use tokio::time::Instant;

use crate::sink::{EventSink, Post};

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
    /// The group's handled POSTs (answered 2xx) against what was sent; its mislabeled
    /// ones include events read from the wrong partition.
    pub verdict: Verdict,
    /// Handled POSTs per node.
    pub per_node: BTreeMap<String, usize>,
    /// Dispatches handled more than once, with every copy in arrival order.
    pub repeats: BTreeMap<Id, Vec<Receipt>>,
}

impl GroupReport {
    /// Compares the handled POSTs of `group` among `posts` with `sent`; `partitions` is
    /// the cluster's partition count (shard `s` is read from partition `s % partitions`).
    pub fn new(group: &str, partitions: u32, sent: &BTreeMap<Id, Sent>, posts: &[Post]) -> Self {
        let handled: Vec<&Post> = posts
            .iter()
            .filter(|post| post.group == group && post.handled())
            .collect();
        let ids: Vec<Id> = handled.iter().map(|post| post.event.id()).collect();
        let mut verdict = Verdict::of(
            sent,
            handled.iter().zip(&ids).map(|(post, id)| Arrival {
                id,
                event_type: &post.event.event_type,
                payload: &post.event.payload,
            }),
        );
        let mut per_node = BTreeMap::new();
        for post in &handled {
            *per_node.entry(post.node.clone()).or_default() += 1;
            let event = &post.event;
            if event.partition != event.shard % partitions {
                verdict.mislabeled.push(format!(
                    "post #{} at {}: {:?} read from partition {}, expected {}",
                    post.index,
                    post.node,
                    event.id(),
                    event.partition,
                    event.shard % partitions
                ));
            }
        }
        let repeats = verdict
            .repeats
            .iter()
            .map(|(id, copies)| {
                let receipts = copies.iter().map(|at| Receipt::of(handled[*at])).collect();
                (id.clone(), receipts)
            })
            .collect();
        Self {
            group: group.to_owned(),
            verdict,
            per_node,
            repeats,
        }
    }

    /// A one-paragraph account, for the test output.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "group {}: {} ({:?} per node){}",
            self.group,
            self.verdict.counts(),
            self.per_node,
            self.verdict.details()
        );
        let repeats: Vec<String> = self
            .repeats
            .iter()
            .map(|(id, copies)| format!("{id:?} {}", describe(copies)))
            .collect();
        detail(&mut text, "repeated copies", &repeats);
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
            self.verdict.complete(),
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
    sink: &impl EventSink,
    groups: &[&str],
    upto: Upto<'_>,
    timeout: Duration,
) {
    let mut handled: BTreeMap<&str, HashSet<Id>> = groups
        .iter()
        .map(|group| (*group, HashSet::new()))
        .collect();
    let mut cursor = 0;
    wait_until(
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
                    read = Truth::read(sim).dispatches;
                    (&read, &|_| true)
                }
                Upto::AllWhere(only) => {
                    read = Truth::read(sim).dispatches;
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
