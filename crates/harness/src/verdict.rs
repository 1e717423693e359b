//! The ground-truth verdict: what the simulator sent against what arrived somewhere (a
//! stream, a sink, a handler), in arrival order. Every check of "nothing lost, nothing
//! twice, nothing foreign" in the tests, the benchmarks and the demo is this one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

#[cfg(doc)]
use crate::truth::Truth;
use crate::truth::{Id, Sent};

/// One copy of a dispatch as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// `(shard, session, seq)` as the copy names it.
    pub id: &'a Id,
    /// The event type the copy is labelled with.
    pub event_type: &'a str,
    /// The Discord frame it carries (`op`, `s`, `t`, `d`), parsed.
    pub payload: &'a serde_json::Value,
}

/// What arrived, against the truth.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Distinct dispatches sent.
    pub dispatches: usize,
    /// Copies that arrived.
    pub arrivals: usize,
    /// Dispatches sent that never arrived.
    pub missing: Vec<Id>,
    /// Arrivals the simulator never sent.
    pub unknown: Vec<Id>,
    /// Arrivals whose label or payload is not the dispatch sent (index: problem).
    pub mislabeled: Vec<String>,
    /// Arrivals whose seq is below one that arrived before it in their session.
    pub disorder: Vec<String>,
    /// Dispatches that arrived more than once, with the arrival index of every copy.
    pub repeats: BTreeMap<Id, Vec<usize>>,
}

impl Verdict {
    /// Compares `arrivals` (in the order they arrived) with the dispatches `sent`
    /// (usually [`Truth::dispatches`], or the part of it a test expects).
    pub fn of<'a>(
        sent: &BTreeMap<Id, Sent>,
        arrivals: impl IntoIterator<Item = Arrival<'a>>,
    ) -> Self {
        let mut verdict = Self {
            dispatches: sent.len(),
            ..Self::default()
        };
        let mut copies: BTreeMap<&Id, Vec<usize>> = BTreeMap::new();
        let mut newest: BTreeMap<(u32, &str), (u64, usize)> = BTreeMap::new();
        for (index, arrival) in arrivals.into_iter().enumerate() {
            verdict.arrivals += 1;
            let id = arrival.id;
            match sent.get(id) {
                Some(sent) => {
                    if let Some(problem) = label_problem(*sent, &arrival) {
                        verdict
                            .mislabeled
                            .push(format!("arrival #{index}: {problem}"));
                    }
                }
                None => verdict.unknown.push(id.clone()),
            }
            let (shard, session, seq) = id;
            let last = newest.entry((*shard, session.as_str())).or_insert((0, 0));
            if *seq < last.0 {
                verdict.disorder.push(format!(
                    "shard {shard} session {session}: seq {seq} (arrival #{index}) after seq {} \
                     (arrival #{})",
                    last.0, last.1
                ));
            } else {
                *last = (*seq, index);
            }
            copies.entry(id).or_default().push(index);
        }
        verdict.missing = sent
            .keys()
            .filter(|id| !copies.contains_key(id))
            .cloned()
            .collect();
        verdict.repeats = copies
            .into_iter()
            .filter(|(_, copies)| copies.len() > 1)
            .map(|(id, copies)| (id.clone(), copies))
            .collect();
        verdict
    }

    /// Extra copies in all (a dispatch that arrived 3 times counts 2).
    pub fn extra_copies(&self) -> usize {
        self.repeats.values().map(|copies| copies.len() - 1).sum()
    }

    /// Every dispatch arrived, labelled right, in seq order per session, and nothing the
    /// simulator did not send (repeats aside).
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
            && self.unknown.is_empty()
            && self.mislabeled.is_empty()
            && self.disorder.is_empty()
    }

    /// [`Verdict::complete`], and nothing arrived twice.
    pub fn passed(&self) -> bool {
        self.complete() && self.repeats.is_empty()
    }

    /// The counts on one line.
    pub fn counts(&self) -> String {
        format!(
            "{} dispatches sent, {} arrived: {} missing, {} unknown, {} mislabeled, \
             {} out of order, {} repeated ({} extra copies)",
            self.dispatches,
            self.arrivals,
            self.missing.len(),
            self.unknown.len(),
            self.mislabeled.len(),
            self.disorder.len(),
            self.repeats.len(),
            self.extra_copies()
        )
    }

    /// The first few of each kind of problem, one line each (empty when it passed).
    pub fn details(&self) -> String {
        let mut text = String::new();
        let ids = |ids: &[Id]| ids.iter().map(|id| format!("{id:?}")).collect::<Vec<_>>();
        detail(&mut text, "missing", &ids(&self.missing));
        detail(&mut text, "unknown", &ids(&self.unknown));
        detail(&mut text, "mislabeled", &self.mislabeled);
        detail(&mut text, "out of order", &self.disorder);
        detail(
            &mut text,
            "repeats",
            &self
                .repeats
                .iter()
                .map(|(id, copies)| format!("{id:?} at arrivals {copies:?}"))
                .collect::<Vec<_>>(),
        );
        text
    }
}

/// Appends `\n  name: [first ten items]` to `text` when there are any.
pub fn detail(text: &mut String, name: &str, items: &[String]) {
    if !items.is_empty() {
        let _ = write!(text, "\n  {name}: {:?}", &items[..items.len().min(10)]);
    }
}

/// Why `arrival` does not carry the dispatch `sent` as the simulator sent it, if it
/// does not: its type, the frame's `op`/`s`/`t`, and the simulator's unique id.
fn label_problem(sent: Sent, arrival: &Arrival<'_>) -> Option<String> {
    let (id, name, frame) = (arrival.id, sent.kind.as_str(), arrival.payload);
    if arrival.event_type != name {
        return Some(format!(
            "{id:?}: labelled {} but {name} was sent",
            arrival.event_type
        ));
    }
    if frame["t"].as_str() != Some(name)
        || frame["s"].as_u64() != Some(id.2)
        || frame["op"].as_u64() != Some(0)
    {
        return Some(format!(
            "{id:?}: payload says op={} s={} t={}",
            frame["op"], frame["s"], frame["t"]
        ));
    }
    let field = sent.kind.id_field()?;
    let found = field
        .split('.')
        .fold(&frame["d"], |value, key| &value[key])
        .as_str()
        .and_then(|text| text.parse::<u64>().ok());
    (found != Some(sent.id)).then(|| {
        format!(
            "{id:?}: payload d.{field} = {found:?}, the simulator sent id {}",
            sent.id
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shardmesh_sim::EventKind;

    use crate::truth::Truth;

    use super::*;

    fn truth(sent: &[(u64, EventKind, u64)]) -> Truth {
        let mut truth = Truth::default();
        for (seq, kind, id) in sent {
            truth.dispatches.insert(
                (0, "s".into(), *seq),
                Sent {
                    kind: *kind,
                    id: *id,
                },
            );
        }
        truth
    }

    fn frame(seq: u64, kind: EventKind, id: u64) -> serde_json::Value {
        json!({"op": 0, "s": seq, "t": kind.as_str(), "d": {"id": id.to_string()}})
    }

    #[test]
    fn every_dispatch_once_in_order_passes() {
        let truth = truth(&[(1, EventKind::Ready, 0), (2, EventKind::MessageCreate, 7)]);
        let ids: Vec<Id> = vec![(0, "s".into(), 1), (0, "s".into(), 2)];
        let frames = [
            frame(1, EventKind::Ready, 0),
            frame(2, EventKind::MessageCreate, 7),
        ];
        let types = ["READY", "MESSAGE_CREATE"];
        let arrivals = (0..2).map(|i| Arrival {
            id: &ids[i],
            event_type: types[i],
            payload: &frames[i],
        });
        let verdict = Verdict::of(&truth.dispatches, arrivals);
        assert!(
            verdict.passed(),
            "{}{}",
            verdict.counts(),
            verdict.details()
        );
    }

    #[test]
    fn losses_repeats_strangers_wrong_ids_and_disorder_are_found() {
        let truth = truth(&[
            (1, EventKind::MessageCreate, 7),
            (2, EventKind::MessageCreate, 8),
            (3, EventKind::MessageCreate, 9),
        ]);
        let ids: Vec<Id> = vec![
            (0, "s".into(), 2),
            (0, "s".into(), 1),
            (0, "s".into(), 1),
            (0, "s".into(), 5),
        ];
        let frames = [
            frame(2, EventKind::MessageCreate, 99),
            frame(1, EventKind::MessageCreate, 7),
            frame(1, EventKind::MessageCreate, 7),
            frame(5, EventKind::MessageCreate, 1),
        ];
        let arrivals = (0..4).map(|i| Arrival {
            id: &ids[i],
            event_type: "MESSAGE_CREATE",
            payload: &frames[i],
        });
        let verdict = Verdict::of(&truth.dispatches, arrivals);
        assert_eq!(verdict.missing, vec![(0, "s".into(), 3)]);
        assert_eq!(verdict.unknown, vec![(0, "s".into(), 5)]);
        assert_eq!(verdict.mislabeled.len(), 1, "{:?}", verdict.mislabeled);
        assert_eq!(verdict.disorder.len(), 2, "{:?}", verdict.disorder);
        assert_eq!(verdict.extra_copies(), 1);
        assert!(!verdict.complete());
    }
}
