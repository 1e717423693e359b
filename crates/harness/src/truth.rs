//! The simulator's ground truth, reshaped for the questions a test asks: which
//! dispatches exist (and what each carried), which shards are READY, which resumed after
//! a given moment, and, while a bot re-shards, which copies (one per shard set) belong
//! to the same logical event.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use shardmesh_sim::{EventKind, Simulator};

/// A dispatch's identity, `(shard, session, seq)`: what every delivery carries.
pub type Id = (u32, String, u64);

/// What one dispatch carried: its type and the simulator's unique id in its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The dispatch type.
    pub kind: EventKind,
    /// The unique id in the payload, where [`EventKind::id_field`] says (0 for READY).
    pub id: u64,
}

/// Where a session sits: shard `shard` of a set of `count` shards (its IDENTIFY's
/// `shard: [shard, count]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionShard {
    /// The shard id.
    pub shard: u32,
    /// The shard count of its set.
    pub count: u32,
}

/// Every dispatch the simulator sent so far.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    /// Each distinct dispatch (RESUME replays folded in). RESUMED is left out: it ends a
    /// replay rather than belonging to a session's events, and gateways never publish it.
    pub dispatches: BTreeMap<Id, Sent>,
    /// Shards that have had a READY, with the sessions those READYs started (of every
    /// shard count: [`Truth::sessions`] tells the sets apart).
    pub readies: BTreeMap<u32, Vec<String>>,
    /// Every session that had a READY, with the shard and shard count it identified
    /// with.
    pub sessions: BTreeMap<String, SessionShard>,
    /// Each logical event with its distinct copies, one per session it was sent to
    /// (RESUME replays folded in, RESUMED left out): while sessions of two shard counts
    /// overlap, a generated event has one copy in each set.
    pub copies: BTreeMap<u64, Vec<Id>>,
    /// `(cursor, shard)` of every RESUMED sent.
    pub resumed: Vec<(u64, u32)>,
    /// Records written again by a RESUME replay (each dispatch still counts once).
    pub replays: u64,
    /// Records the simulator's log dropped before they were read (its capacity).
    pub dropped: u64,
    /// The cursor the next record will get.
    pub next_cursor: u64,
}

impl Truth {
    /// Reads the simulator's whole log.
    ///
    /// # Panics
    ///
    /// When the log dropped records (its capacity is too small for the test).
    pub fn read(sim: &Simulator) -> Self {
        let mut truth = Self::default();
        truth.update(sim);
        assert_eq!(
            truth.dropped, 0,
            "the simulator dropped ground-truth records: raise SimConfig::truth_capacity"
        );
        truth
    }

    /// Reads every record written since the last read, in pages, so a long run can
    /// follow the log while it grows.
    pub fn update(&mut self, sim: &Simulator) {
        loop {
            let page = sim.log_since(self.next_cursor, 50_000);
            self.dropped += page.dropped;
            self.next_cursor = page.next.max(self.next_cursor);
            if page.records.is_empty() {
                return;
            }
            for record in page.records {
                if record.kind == EventKind::Resumed {
                    self.resumed.push((record.cursor, record.shard));
                    continue;
                }
                let session = record.session.to_string();
                if record.replay {
                    self.replays += 1;
                } else if record.kind == EventKind::Ready {
                    self.readies
                        .entry(record.shard)
                        .or_default()
                        .push(session.clone());
                    self.sessions.insert(
                        session.clone(),
                        SessionShard {
                            shard: record.shard,
                            count: record.shard_count,
                        },
                    );
                }
                let id = (record.shard, session, record.seq);
                if let Entry::Vacant(entry) = self.dispatches.entry(id.clone()) {
                    entry.insert(Sent {
                        kind: record.kind,
                        id: record.id,
                    });
                    self.copies.entry(record.logical).or_default().push(id);
                }
            }
        }
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

    /// Shards of the set of `count` shards with at least one READY.
    pub fn ready_shards_of(&self, count: u32) -> BTreeSet<u32> {
        self.sessions
            .values()
            .filter(|at| at.count == count)
            .map(|at| at.shard)
            .collect()
    }

    /// The shard and shard count of the session a dispatch went to (`None` before its
    /// READY was read).
    pub fn session_shard(&self, id: &Id) -> Option<SessionShard> {
        self.sessions.get(&id.1).copied()
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
