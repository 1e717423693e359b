//! Confirmed watermarks per publisher source: the one record of which seqs the broker
//! has confirmed, moved by the publisher as confirms arrive and read from any task.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// The confirmed watermarks of a [`Publisher`](crate::Publisher)'s sources.
///
/// The publisher moves them as confirms arrive; a clone of
/// [`Publisher::watermarks`](crate::Publisher::watermarks) reads them, and waits for
/// them, from other tasks while the publisher is busy publishing: e.g. to save a
/// position only once the broker has everything up to it. Clones share the same
/// watermarks.
///
/// ```no_run
/// # async fn example(publisher: shardmesh_broker::Publisher) {
/// let watermarks = publisher.watermarks().clone();
/// let saver = tokio::spawn(async move {
///     watermarks.wait_for(3, 42).await;
///     // Everything source 3 published up to seq 42 is in its stream: 42 is safe to save.
/// });
/// // ... keep publishing with `publisher` meanwhile.
/// # let _ = saver;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Watermarks {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// A std `Mutex`: held only to read or move marks, never across an `.await`.
    sources: Mutex<HashMap<u32, SourceMarks>>,
    /// Wakes [`Watermarks::wait_for`] whenever a watermark moves.
    moved: Notify,
}

impl Watermarks {
    /// The highest `seq` of `source` such that every message of `source` with a `seq`
    /// up to it that went through the publisher is confirmed; `None` before the first
    /// (and after [`Watermarks::forget`]).
    pub fn confirmed(&self, source: u32) -> Option<u64> {
        self.lock()
            .get(&source)
            .filter(|marks| !marks.forgotten)
            .and_then(SourceMarks::watermark)
    }

    /// Resolves once `source` is confirmed up to `seq`.
    ///
    /// It never resolves for a forgotten source, nor once the publisher has stopped:
    /// bound the wait with a timeout or a shutdown signal.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn wait_for(&self, source: u32, seq: u64) {
        loop {
            let moved = self.shared.moved.notified();
            tokio::pin!(moved);
            // Registered before the check, so a move between the two is not missed.
            moved.as_mut().enable();
            if self
                .confirmed(source)
                .is_some_and(|confirmed| confirmed >= seq)
            {
                return;
            }
            moved.await;
        }
    }

    /// Stops tracking `source`, whose owner is done with it: confirms of what was
    /// published under it no longer count, [`Watermarks::confirmed`] reads `None`, and
    /// its marks are dropped once nothing of it is in flight or handed back. A message
    /// first published under `source` after this is tracked as if the source were new.
    pub fn forget(&self, source: u32) {
        let mut sources = self.lock();
        if let Some(marks) = sources.get_mut(&source) {
            if marks.pending.is_empty() {
                sources.remove(&source);
            } else {
                marks.forgotten = true;
            }
        }
    }

    /// Records that `seq` of `source` is published (again, for a handed-back message).
    pub(crate) fn sent(&self, source: u32, seq: u64) {
        self.lock().entry(source).or_default().sent(seq);
    }

    /// Records the broker's confirm of `seq` of `source`.
    pub(crate) fn acked(&self, source: u32, seq: u64) {
        let moved = {
            let mut sources = self.lock();
            let Some(marks) = sources.get_mut(&source) else {
                return;
            };
            let before = marks.watermark;
            marks.acked(seq);
            let moved = marks.watermark != before;
            if marks.forgotten && marks.pending.is_empty() {
                sources.remove(&source);
            }
            moved
        };
        if moved {
            self.shared.moved.notify_waiters();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u32, SourceMarks>> {
        // The marks stay consistent whatever panicked while holding them.
        self.shared
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a source has in flight or handed back, and what is acked.
#[derive(Debug, Default)]
struct SourceMarks {
    /// Seqs published (or handed back) and not acked yet.
    pending: BTreeSet<u64>,
    /// Acked seqs above the oldest pending one: they become the watermark once
    /// everything before them is acked.
    acked: BTreeSet<u64>,
    watermark: Option<u64>,
    /// Its owner is done with it: no watermark to read, gone once nothing is pending.
    forgotten: bool,
}

impl SourceMarks {
    fn sent(&mut self, seq: u64) {
        self.pending.insert(seq);
    }

    fn acked(&mut self, seq: u64) {
        self.pending.remove(&seq);
        // Every published seq below the oldest pending one is acked, so the watermark
        // is the largest acked seq below it.
        let limit = self.pending.first().copied();
        // Not a second copy of something already below the watermark.
        let fresh = self.watermark.is_none_or(|watermark| seq > watermark);
        if fresh && self.acked.is_empty() && limit.is_none_or(|limit| seq < limit) {
            // The common, in-order case: no bookkeeping beyond the watermark.
            self.watermark = Some(seq);
            return;
        }
        if fresh {
            self.acked.insert(seq);
        }
        while let Some(&first) = self.acked.first() {
            if limit.is_some_and(|limit| first > limit) {
                break;
            }
            self.watermark = Some(first);
            self.acked.pop_first();
        }
    }

    fn watermark(&self) -> Option<u64> {
        self.watermark
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn watermark_waits_for_the_oldest_pending_seq() {
        let mut marks = SourceMarks::default();
        for seq in 1..=5 {
            marks.sent(seq);
        }
        marks.acked(2);
        assert_eq!(marks.watermark(), None);
        marks.acked(1);
        assert_eq!(marks.watermark(), Some(2));
        marks.acked(4);
        marks.acked(5);
        assert_eq!(marks.watermark(), Some(2));
        marks.acked(3);
        assert_eq!(marks.watermark(), Some(5));
    }

    #[test]
    fn a_republished_seq_confirms_once_acked() {
        let mut marks = SourceMarks::default();
        marks.sent(1);
        marks.sent(2);
        marks.acked(2);
        // 1 was handed back and is published again.
        marks.sent(1);
        assert_eq!(marks.watermark(), None);
        marks.acked(1);
        assert_eq!(marks.watermark(), Some(2));
        // A duplicate ack of an old seq changes nothing.
        marks.acked(1);
        assert_eq!(marks.watermark(), Some(2));
    }

    #[test]
    fn a_second_copy_of_a_confirmed_seq_holds_later_ones_until_acked() {
        let mut marks = SourceMarks::default();
        marks.sent(5);
        marks.acked(5);
        marks.sent(5);
        marks.sent(6);
        marks.acked(6);
        assert_eq!(marks.watermark(), Some(5));
        marks.acked(5);
        assert_eq!(marks.watermark(), Some(6));
    }

    #[test]
    fn watermark_matches_a_naive_count_whatever_the_ack_order() {
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for _ in 0..200 {
            let mut marks = SourceMarks::default();
            let mut seqs: Vec<u64> = (0..40).collect();
            for &seq in &seqs {
                marks.sent(seq);
            }
            seqs.shuffle(&mut rng);
            let mut acked = BTreeSet::new();
            for seq in seqs.into_iter().filter(|_| rng.random_bool(0.9)) {
                marks.acked(seq);
                acked.insert(seq);
                let naive = (0..40u64).take_while(|s| acked.contains(s)).last();
                assert_eq!(marks.watermark(), naive);
            }
        }
    }

    #[test]
    fn gaps_in_seq_do_not_hold_the_watermark() {
        let mut marks = SourceMarks::default();
        marks.sent(10);
        marks.sent(20);
        marks.acked(20);
        marks.acked(10);
        assert_eq!(marks.watermark(), Some(20));
    }

    #[test]
    fn forgotten_sources_ignore_late_confirms() {
        let watermarks = Watermarks::default();
        watermarks.sent(0, 3);
        watermarks.acked(0, 3);
        assert_eq!(watermarks.confirmed(0), Some(3));
        // A watermark never goes back.
        watermarks.sent(0, 2);
        watermarks.acked(0, 2);
        assert_eq!(watermarks.confirmed(0), Some(3));
        watermarks.sent(0, 9);
        watermarks.forget(0);
        watermarks.acked(0, 9);
        assert_eq!(watermarks.confirmed(0), None);
        assert!(
            watermarks.lock().is_empty(),
            "settled forgotten marks are dropped"
        );
    }

    #[tokio::test]
    async fn waiters_wake_when_their_seq_is_confirmed() {
        let watermarks = Watermarks::default();
        watermarks.sent(0, 4);
        watermarks.sent(0, 5);
        let waiter = tokio::spawn({
            let watermarks = watermarks.clone();
            async move { watermarks.wait_for(0, 5).await }
        });
        watermarks.acked(0, 4);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        watermarks.acked(0, 5);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
