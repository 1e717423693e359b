//! The simulator's ground truth, reshaped for the questions a scenario asks: which
//! dispatches exist, which shards are READY, which resumed after a given moment.

use std::collections::{BTreeMap, BTreeSet};

use shardmesh_sim::{EventKind, Simulator};

/// A dispatch's identity, `(shard, session, seq)`: what every delivery carries.
pub type Id = (u32, String, u64);

/// Every dispatch the simulator sent so far.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    /// Each distinct dispatch (replays folded in) with its `t`; RESUMED is left out,
    /// as it ends a replay rather than belonging to a session's events.
    pub dispatches: BTreeMap<Id, &'static str>,
    /// Shards that have had a READY, with the sessions those READYs started.
    pub readies: BTreeMap<u32, Vec<String>>,
    /// `(cursor, shard)` of every RESUMED sent.
    pub resumed: Vec<(u64, u32)>,
    /// The cursor the next record will get.
    pub next_cursor: u64,
}

impl Truth {
    /// Reads the simulator's whole log.
    ///
    /// # Panics
    ///
    /// When the log dropped records (its capacity is too small for the scenario).
    pub fn read(sim: &Simulator) -> Self {
        let page = sim.log_since(0, usize::MAX);
        assert_eq!(
            page.dropped, 0,
            "the simulator dropped ground-truth records: raise SimConfig::truth_capacity"
        );
        let mut truth = Self {
            next_cursor: page.next,
            ..Self::default()
        };
        for record in page.records {
            match record.kind {
                EventKind::Resumed => truth.resumed.push((record.cursor, record.shard)),
                kind => {
                    let session = record.session.to_string();
                    if kind == EventKind::Ready && !record.replay {
                        truth
                            .readies
                            .entry(record.shard)
                            .or_default()
                            .push(session.clone());
                    }
                    truth
                        .dispatches
                        .insert((record.shard, session, record.seq), kind.as_str());
                }
            }
        }
        truth
    }

    /// Shards with at least one READY.
    pub fn ready_shards(&self) -> BTreeSet<u32> {
        self.readies.keys().copied().collect()
    }

    /// Shards that were sent a RESUMED at or after `cursor`.
    pub fn resumed_since(&self, cursor: u64) -> BTreeSet<u32> {
        self.resumed
            .iter()
            .filter(|(at, _)| *at >= cursor)
            .map(|(_, shard)| *shard)
            .collect()
    }

    /// Shards that started more than one session (a READY where a RESUME was due).
    pub fn shards_with_new_sessions(&self) -> BTreeMap<u32, usize> {
        self.readies
            .iter()
            .filter(|(_, sessions)| sessions.len() > 1)
            .map(|(shard, sessions)| (*shard, sessions.len()))
            .collect()
    }

    /// The distinct dispatches as a set.
    pub fn ids(&self) -> BTreeSet<Id> {
        self.dispatches.keys().cloned().collect()
    }
}
