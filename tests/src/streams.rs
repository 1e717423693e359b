//! What the event streams hold, read back from the first offset of every partition and
//! checked against the simulator's ground truth: nothing missing, no gaps, nothing
//! that was never sent, repeats exact, and nothing lost to a consumer that deduplicates
//! by the consumer library's own rule ([`shardmesh_consumer::dedup`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shardmesh_broker::{BrokerConfig, StartAt, StreamId, StreamReader, Topology};
use shardmesh_consumer::dedup;
use shardmesh_harness::{Arrival, Id, Truth, Verdict, detail};
use shardmesh_proto::EventEnvelope;
use shardmesh_sim::Simulator;
use shardmesh_store::DedupMark;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a partition may stay quiet before the reader looks at the next one.
const QUIET: Duration = Duration::from_millis(200);

/// Every envelope of every partition, in stream order per partition.
#[derive(Debug, Clone, Default)]
pub struct StreamContents {
    /// `(partition, envelope)` in the order read.
    pub events: Vec<(u32, EventEnvelope)>,
}

/// Reads every partition from its first offset until the streams hold every dispatch
/// of the simulator's truth (re-read each round, as the last frames may still be on
/// their way through a node), then returns what they hold and that truth.
///
/// # Panics
///
/// When a reader fails, or after `timeout`, listing what is still missing.
pub async fn read_until_complete(
    broker: &BrokerConfig,
    topology: &Topology,
    sim: &Simulator,
    timeout: Duration,
) -> (Truth, StreamContents) {
    let token = CancellationToken::new();
    let mut readers = Vec::new();
    for partition in 0..topology.partitions() {
        let reader = StreamReader::connect(
            broker,
            topology,
            StreamId::Events(partition),
            StartAt::First,
            token.clone(),
        )
        .await
        .unwrap_or_else(|error| panic!("cannot read partition {partition}: {error}"));
        readers.push(reader);
    }
    let mut contents = StreamContents::default();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    loop {
        for (partition, reader) in (0..).zip(readers.iter_mut()) {
            while let Ok(next) = tokio::time::timeout(QUIET, reader.next_batch()).await {
                let (_, batch) =
                    next.unwrap_or_else(|error| panic!("reading partition {partition}: {error}"));
                for envelope in batch.events {
                    seen.insert(envelope_id(&envelope));
                    contents.events.push((partition, envelope));
                }
            }
        }
        let truth = Truth::read(sim);
        let missing: Vec<&Id> = truth
            .dispatches
            .keys()
            .filter(|id| !seen.contains(*id))
            .collect();
        if missing.is_empty() {
            token.cancel();
            for reader in readers {
                reader.close().await;
            }
            return (truth, contents);
        }
        assert!(
            Instant::now() < deadline,
            "after {timeout:?} the streams still miss {} of {} dispatches the simulator sent; \
             first ones: {:?}",
            missing.len(),
            truth.dispatches.len(),
            &missing[..missing.len().min(10)]
        );
    }
}

/// A dispatch's identity as an envelope carries it.
pub fn envelope_id(envelope: &EventEnvelope) -> Id {
    (envelope.shard, envelope.session.clone(), envelope.seq)
}

/// What the streams hold compared with the truth.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    /// Dispatches sent and never published.
    pub missing: Vec<Id>,
    /// Envelopes the simulator never sent.
    pub unknown: Vec<Id>,
    /// `(shard, session)` whose published seqs do not run 1, 2, 3, … without a hole.
    pub gaps: Vec<String>,
    /// Dispatches published more than once, with their number of copies.
    pub repeats: BTreeMap<Id, usize>,
    /// Repeats whose copies differ (type or payload).
    pub inexact: Vec<String>,
    /// Envelopes whose payload's `t`/`s`, or type, do not match the dispatch.
    pub mislabeled: Vec<String>,
    /// A shard's envelope with a lower lease epoch after a higher one in its partition:
    /// an earlier owner published after a later one. Consumers drop these as stale, so
    /// they only matter when the dispatch has no accepted copy ([`Self::lost_to_dedup`]).
    pub epoch_regressions: Vec<String>,
    /// Dispatches in the streams of which a deduplicating consumer accepts no copy.
    pub lost_to_dedup: Vec<Id>,
    /// Envelopes read.
    pub envelopes: usize,
    /// Distinct dispatches sent.
    pub dispatches: usize,
}

impl StreamReport {
    /// Compares `contents` with `truth`.
    pub fn new(truth: &Truth, contents: &StreamContents) -> Self {
        let ids: Vec<Id> = contents
            .events
            .iter()
            .map(|(_, envelope)| envelope_id(envelope))
            .collect();
        let frames: Vec<serde_json::Value> = contents
            .events
            .iter()
            .map(|(_, envelope)| serde_json::from_str(&envelope.payload).unwrap_or_default())
            .collect();
        // Stream order goes back on purpose after a resend, so the verdict's order
        // check does not apply; gaps and stale epochs are checked below instead.
        let verdict = Verdict::of(
            &truth.dispatches,
            contents.events.iter().zip(ids.iter().zip(&frames)).map(
                |((_, envelope), (id, payload))| Arrival {
                    id,
                    event_type: &envelope.event_type,
                    payload,
                },
            ),
        );
        let mut report = Self {
            envelopes: verdict.arrivals,
            dispatches: verdict.dispatches,
            missing: verdict.missing,
            unknown: verdict.unknown,
            mislabeled: verdict.mislabeled,
            ..Self::default()
        };
        let mut copies: BTreeMap<&Id, Vec<&EventEnvelope>> = BTreeMap::new();
        let mut epochs: BTreeMap<u32, u64> = BTreeMap::new();
        let mut marks: BTreeMap<u32, Option<DedupMark>> = BTreeMap::new();
        let mut accepted: BTreeSet<&Id> = BTreeSet::new();
        for ((partition, envelope), id) in contents.events.iter().zip(&ids) {
            let mark = marks.entry(envelope.shard).or_default();
            if dedup::observe(mark, envelope) == dedup::Verdict::New {
                accepted.insert(id);
            }
            let last = epochs.entry(envelope.shard).or_default();
            if envelope.epoch < *last {
                report.epoch_regressions.push(format!(
                    "partition {partition}: shard {} epoch {} after epoch {} ({id:?})",
                    envelope.shard, envelope.epoch, last
                ));
            }
            *last = (*last).max(envelope.epoch);
            copies.entry(id).or_default().push(envelope);
        }
        report.lost_to_dedup = copies
            .keys()
            .filter(|id| truth.dispatches.contains_key(**id) && !accepted.contains(**id))
            .map(|id| (*id).clone())
            .collect();
        let mut sessions: BTreeMap<(u32, &str), Vec<u64>> = BTreeMap::new();
        for (id, envelopes) in &copies {
            sessions
                .entry((id.0, id.1.as_str()))
                .or_default()
                .push(id.2);
            if envelopes.len() > 1 {
                report.repeats.insert((*id).clone(), envelopes.len());
                let first = envelopes[0];
                for copy in &envelopes[1..] {
                    if copy.payload != first.payload || copy.event_type != first.event_type {
                        report.inexact.push(format!(
                            "{id:?}: {} {:?} vs {} {:?}",
                            first.event_type,
                            shorten(&first.payload),
                            copy.event_type,
                            shorten(&copy.payload)
                        ));
                    }
                }
            }
        }
        for ((shard, session), seqs) in sessions {
            // Keys of a BTreeMap: sorted and distinct.
            let expected = 1..=seqs.len() as u64;
            if !seqs.iter().copied().eq(expected) {
                let holes: Vec<u64> = (1..=*seqs.last().unwrap_or(&0))
                    .filter(|seq| seqs.binary_search(seq).is_err())
                    .take(10)
                    .collect();
                report.gaps.push(format!(
                    "shard {shard} session {session}: {} seqs up to {}, missing {holes:?}",
                    seqs.len(),
                    seqs.last().unwrap_or(&0)
                ));
            }
        }
        report
    }

    /// Extra copies in all (a dispatch published 3 times counts 2).
    pub fn extra_copies(&self) -> usize {
        self.repeats.values().map(|copies| copies - 1).sum()
    }

    /// A one-paragraph account, for the test output.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} dispatches sent, {} envelopes in the streams: {} missing, {} unknown, \
             {} gaps, {} repeated ({} extra copies, {} inexact), {} mislabeled, \
             {} lost to dedup, {} stale-epoch envelopes",
            self.dispatches,
            self.envelopes,
            self.missing.len(),
            self.unknown.len(),
            self.gaps.len(),
            self.repeats.len(),
            self.extra_copies(),
            self.inexact.len(),
            self.mislabeled.len(),
            self.lost_to_dedup.len(),
            self.epoch_regressions.len()
        );
        let ids = |ids: &[Id]| ids.iter().map(|id| format!("{id:?}")).collect::<Vec<_>>();
        detail(&mut text, "missing", &ids(&self.missing));
        detail(&mut text, "unknown", &ids(&self.unknown));
        detail(&mut text, "gaps", &self.gaps);
        let repeats: Vec<String> = self
            .repeats
            .iter()
            .map(|(id, copies)| format!("{id:?} x{copies}"))
            .collect();
        detail(&mut text, "repeats", &repeats);
        detail(&mut text, "inexact", &self.inexact);
        detail(&mut text, "mislabeled", &self.mislabeled);
        detail(&mut text, "lost to dedup", &ids(&self.lost_to_dedup));
        detail(&mut text, "stale-epoch envelopes", &self.epoch_regressions);
        text
    }

    /// Asserts nothing is missing or unknown, no session has a gap, every envelope is
    /// labelled as its dispatch, and a deduplicating consumer accepts a copy of each.
    ///
    /// # Panics
    ///
    /// With [`StreamReport::summary`] when any of that fails.
    pub fn assert_complete(&self) {
        assert!(
            self.missing.is_empty()
                && self.unknown.is_empty()
                && self.gaps.is_empty()
                && self.mislabeled.is_empty()
                && self.lost_to_dedup.is_empty(),
            "expected every dispatch in the streams, labelled right, no gaps, each accepted \
             by a deduplicating consumer; seen: {}",
            self.summary()
        );
    }

    /// Asserts every repeat is exact: same `(shard, session, seq)`, type and payload.
    ///
    /// # Panics
    ///
    /// With [`StreamReport::summary`] when a repeat differs.
    pub fn assert_repeats_exact(&self) {
        assert!(
            self.inexact.is_empty(),
            "expected repeats to be exact copies; seen: {}",
            self.summary()
        );
    }

    /// Asserts nothing was published twice.
    ///
    /// # Panics
    ///
    /// With [`StreamReport::summary`] when something was.
    pub fn assert_no_repeats(&self) {
        assert!(
            self.repeats.is_empty(),
            "expected zero repeats; seen: {}",
            self.summary()
        );
    }
}

/// The first 80 characters of `text`.
fn shorten(text: &str) -> &str {
    text.char_indices()
        .nth(80)
        .map_or(text, |(end, _)| &text[..end])
}
