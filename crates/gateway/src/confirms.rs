//! Per-source confirmed watermarks shared between the publish loop (which writes them)
//! and the shards and lease holder (which read them and wait on them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// Confirmed watermarks by publisher source.
///
/// A source is one shard's one session on this node: Discord restarts seqs with a new
/// session, and the broker's watermarks only move up, so a shard takes a fresh source
/// whenever its session changes (and with each lease it acquires).
#[derive(Debug, Default)]
pub(crate) struct Confirms {
    next_source: AtomicU32,
    /// `None` until the first confirm of the source. A std `Mutex`: never held across an
    /// `.await`.
    marks: Mutex<HashMap<u32, Option<u64>>>,
    changed: Notify,
}

impl Confirms {
    /// A fresh source id, tracked until [`Confirms::forget`].
    pub(crate) fn register(&self) -> u32 {
        let source = self.next_source.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(source, None);
        source
    }

    /// Stops tracking `source`; later confirms of it are ignored.
    pub(crate) fn forget(&self, source: u32) {
        self.lock().remove(&source);
    }

    /// The highest seq of `source` confirmed with everything before it.
    pub(crate) fn confirmed(&self, source: u32) -> Option<u64> {
        self.lock().get(&source).copied().flatten()
    }

    /// Records new watermarks of tracked sources and wakes the waiters.
    pub(crate) fn update(&self, marks: impl IntoIterator<Item = (u32, u64)>) {
        {
            let mut tracked = self.lock();
            for (source, seq) in marks {
                if let Some(mark) = tracked.get_mut(&source) {
                    *mark = Some(mark.map_or(seq, |old| old.max(seq)));
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Resolves once `source` is confirmed up to `seq`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub(crate) async fn wait_for(&self, source: u32, seq: u64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so an update between the two is not missed.
            notified.as_mut().enable();
            if self
                .confirmed(source)
                .is_some_and(|confirmed| confirmed >= seq)
            {
                return;
            }
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Option<u64>>> {
        // The map stays consistent whatever panicked while holding it.
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn forgotten_sources_ignore_late_confirms() {
        let confirms = Confirms::default();
        let source = confirms.register();
        confirms.update([(source, 3)]);
        assert_eq!(confirms.confirmed(source), Some(3));
        // A watermark never goes back.
        confirms.update([(source, 2)]);
        assert_eq!(confirms.confirmed(source), Some(3));
        confirms.forget(source);
        confirms.update([(source, 9)]);
        assert_eq!(confirms.confirmed(source), None);
        assert_ne!(confirms.register(), source);
    }

    #[tokio::test]
    async fn waiters_wake_when_their_seq_is_confirmed() {
        let confirms = Arc::new(Confirms::default());
        let source = confirms.register();
        let waiter = tokio::spawn({
            let confirms = Arc::clone(&confirms);
            async move { confirms.wait_for(source, 5).await }
        });
        confirms.update([(source, 4)]);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        confirms.update([(source, 5)]);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
