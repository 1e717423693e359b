//! Re-sharding as Discord does it: sessions of different shard counts live side by
//! side, and each guild's dispatch goes to the matching shard of every count in use.
//!
//! Discord's documentation says the shard count only routes events: a session
//! `shard: [id, count]` receives the guilds with `(guild_id >> 22) % count == id`, and
//! a bot grows by starting a second set of sessions with the higher count and handing
//! over to it. So the simulator keeps one [`ShardSet`] per count anyone identified with
//! (the configured count's from the start), and a generated event is pushed to one
//! shard of each set, with each session's own seq. Sets are never removed: one
//! nobody is connected to costs a skipped entry.
//!
//! The hot path takes the sets' list once per traffic batch (an `Arc` snapshot: the
//! list changes only when a new count first identifies), then each touched shard's
//! slot lock, as before there were several sets.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::session::Session;
use crate::state::lock;
use crate::traffic::EventKind;
use crate::world::shard_of_id;

/// The sessions of one shard and what was written to them.
#[derive(Debug, Default)]
struct Slot {
    sessions: Mutex<Vec<Arc<Session>>>,
    sent: AtomicU64,
}

/// Every session that identified with one shard count, by shard.
#[derive(Debug)]
pub(crate) struct ShardSet {
    count: u32,
    slots: Box<[Slot]>,
    /// Sessions alive in the set, so dispatching skips a set nobody uses.
    live: AtomicUsize,
}

impl ShardSet {
    fn new(count: u32) -> Self {
        Self {
            count,
            slots: (0..count).map(|_| Slot::default()).collect(),
            live: AtomicUsize::new(0),
        }
    }

    /// Its shard count.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Sessions alive in it now.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Starts routing `shard`'s dispatches to `session`.
    pub(crate) fn add(&self, session: Arc<Session>) {
        lock(&self.slots[session.shard as usize].sessions).push(session);
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops routing to `session`; false if it was not there (already removed).
    pub(crate) fn remove(&self, session: &Session) -> bool {
        let mut sessions = lock(&self.slots[session.shard as usize].sessions);
        let before = sessions.len();
        sessions.retain(|s| s.id != session.id);
        let removed = sessions.len() < before;
        if removed {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// The sessions of `shard` now (none for a shard beyond the count).
    pub(crate) fn sessions(&self, shard: u32) -> Vec<Arc<Session>> {
        self.slots
            .get(shard as usize)
            .map(|slot| lock(&slot.sessions).clone())
            .unwrap_or_default()
    }

    /// Appends the copy of logical event `logical` to every session of `shard` that
    /// wants it, without waking connections. Returns how many took it.
    pub(crate) fn push(
        &self,
        shard: u32,
        kind: EventKind,
        id: u64,
        logical: u64,
        d: &str,
    ) -> usize {
        let sessions = lock(&self.slots[shard as usize].sessions);
        sessions
            .iter()
            .filter(|s| s.wants(kind) && s.push_copy(kind, id, logical, d))
            .count()
    }

    /// Wakes the connections of `shard`'s sessions.
    pub(crate) fn notify(&self, shard: u32) {
        for session in lock(&self.slots[shard as usize].sessions).iter() {
            session.notify.notify_one();
        }
    }

    /// Counts `frames` written to a session of `shard`.
    pub(crate) fn count_sent(&self, shard: u32, frames: u64) {
        if let Some(slot) = self.slots.get(shard as usize) {
            slot.sent.fetch_add(frames, Ordering::Relaxed);
        }
    }

    /// Dispatch frames written per shard (index = shard id).
    pub(crate) fn sent_per_shard(&self) -> Vec<u64> {
        self.slots
            .iter()
            .map(|slot| slot.sent.load(Ordering::Relaxed))
            .collect()
    }
}

/// The shard sets in use, the configured count's first.
#[derive(Debug)]
pub(crate) struct ShardSets {
    sets: Mutex<Arc<[Arc<ShardSet>]>>,
}

impl ShardSets {
    /// The configured count's set alone.
    pub(crate) fn new(configured: u32) -> Self {
        Self {
            sets: Mutex::new(Arc::from([Arc::new(ShardSet::new(configured))])),
        }
    }

    /// Every set now, oldest first (the configured count's is the first).
    pub(crate) fn snapshot(&self) -> Arc<[Arc<ShardSet>]> {
        Arc::clone(&lock(&self.sets))
    }

    /// The set of `count`, if anyone ever identified with it (or it is configured).
    pub(crate) fn get(&self, count: u32) -> Option<Arc<ShardSet>> {
        lock(&self.sets)
            .iter()
            .find(|set| set.count == count)
            .cloned()
    }

    /// The set of `count`, created when a session first identifies with it.
    pub(crate) fn get_or_create(&self, count: u32) -> Arc<ShardSet> {
        let mut sets = lock(&self.sets);
        if let Some(set) = sets.iter().find(|set| set.count == count) {
            return Arc::clone(set);
        }
        let set = Arc::new(ShardSet::new(count));
        let grown: Vec<Arc<ShardSet>> = sets.iter().cloned().chain([Arc::clone(&set)]).collect();
        *sets = Arc::from(grown);
        set
    }
}

/// Fans dispatches out to every set for a batch, then wakes each touched shard once.
///
/// Reused between batches so a batch allocates nothing once the sets are known.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    sets: Option<Arc<[Arc<ShardSet>]>>,
    /// Per set (same order), whether each shard was touched in this batch.
    touched: Vec<Vec<bool>>,
    touched_list: Vec<(usize, u32)>,
}

impl Fanout {
    /// Starts a batch with the sets in use now.
    pub(crate) fn begin(&mut self, sets: &ShardSets) {
        let now = sets.snapshot();
        if self.sets.as_ref().is_some_and(|old| Arc::ptr_eq(old, &now)) {
            return;
        }
        self.touched = now
            .iter()
            .map(|set| vec![false; set.count as usize])
            .collect();
        self.touched_list.clear();
        self.sets = Some(now);
    }

    /// Sends logical event `logical` of guild `guild_id` to the matching shard of every
    /// set with live sessions; returns how many sessions took a copy.
    pub(crate) fn dispatch(
        &mut self,
        guild_id: u64,
        kind: EventKind,
        id: u64,
        logical: u64,
        d: &str,
    ) -> usize {
        let Some(sets) = &self.sets else {
            return 0;
        };
        let mut took = 0;
        for (index, set) in sets.iter().enumerate() {
            if set.live() == 0 {
                continue;
            }
            let shard = shard_of_id(guild_id, set.count);
            took += set.push(shard, kind, id, logical, d);
            if !std::mem::replace(&mut self.touched[index][shard as usize], true) {
                self.touched_list.push((index, shard));
            }
        }
        took
    }

    /// Wakes the connections of every shard touched since the last call.
    pub(crate) fn notify(&mut self) {
        let Some(sets) = &self.sets else {
            return;
        };
        for (index, shard) in self.touched_list.drain(..) {
            self.touched[index][shard as usize] = false;
            sets[index].notify(shard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truth::SessionId;

    fn session(id: u64, shard: u32, count: u32) -> Arc<Session> {
        Arc::new(Session::new(
            SessionId(id),
            [shard, count],
            u64::MAX,
            16,
            Arc::new(AtomicU64::new(1)),
        ))
    }

    fn logical_ids(session: &Session) -> Vec<u64> {
        let mut out = Vec::new();
        session.take_from(1, &mut out).unwrap();
        out.iter().map(|b| b.logical).collect()
    }

    #[test]
    fn an_event_reaches_the_matching_shard_of_every_set_in_use() {
        let sets = ShardSets::new(8);
        let (old, new, other) = (session(1, 3, 8), session(2, 11, 16), session(3, 3, 16));
        sets.get(8).unwrap().add(Arc::clone(&old));
        sets.get_or_create(16).add(Arc::clone(&new));
        sets.get_or_create(16).add(Arc::clone(&other));
        let mut fanout = Fanout::default();
        fanout.begin(&sets);
        let guild = 27_u64 << 22; // 27 % 8 == 3, 27 % 16 == 11
        assert_eq!(
            fanout.dispatch(guild, EventKind::MessageCreate, 5, 100, "{}"),
            2
        );
        fanout.notify();
        assert_eq!(logical_ids(&old), [100]);
        assert_eq!(logical_ids(&new), [100]);
        assert!(logical_ids(&other).is_empty());
        assert_eq!(sets.snapshot().len(), 2);
    }

    #[test]
    fn a_removed_session_gets_nothing_and_empty_sets_are_skipped() {
        let sets = ShardSets::new(2);
        let gone = session(1, 0, 2);
        let set = sets.get(2).unwrap();
        set.add(Arc::clone(&gone));
        assert!(set.remove(&gone));
        assert!(!set.remove(&gone), "removing twice counts once");
        assert_eq!(set.live(), 0);
        let mut fanout = Fanout::default();
        fanout.begin(&sets);
        assert_eq!(fanout.dispatch(0, EventKind::TypingStart, 1, 1, "{}"), 0);
        assert!(logical_ids(&gone).is_empty());
    }
}
