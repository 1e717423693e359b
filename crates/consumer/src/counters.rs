//! Node-wide counters, for `/metrics` and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// What this node's partitions did since start; see [`ConsumerPartitions::counters`].
///
/// [`ConsumerPartitions::counters`]: crate::ConsumerPartitions::counters
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerCounters {
    /// Events the handler finished successfully.
    pub delivered: u64,
    /// Events dropped before the handler as already handled (same session, seq at or
    /// below the shard's mark).
    pub duplicates: u64,
    /// Events dropped before the handler as coming from a stale gateway owner (epoch
    /// below the shard's mark).
    pub stale: u64,
    /// Handler calls repeated after a failure or panic.
    pub retries: u64,
    /// Handler calls that panicked (each also counts as a failure).
    pub panics: u64,
    /// Events and undecodable messages published to the dead-letter stream.
    pub dead_lettered: u64,
    /// Stream messages that were not valid event batches (dead-lettered too).
    pub undecodable: u64,
    /// Checkpoints this node wrote between lease renewals, plus the final ones of
    /// hand-overs (renewals save one too, and are not counted here).
    pub checkpoints: u64,
}

/// The live counters behind [`ConsumerCounters`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub stale: AtomicU64,
    pub retries: AtomicU64,
    pub panics: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub undecodable: AtomicU64,
    pub checkpoints: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ConsumerCounters {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ConsumerCounters {
            delivered: read(&self.delivered),
            duplicates: read(&self.duplicates),
            stale: read(&self.stale),
            retries: read(&self.retries),
            panics: read(&self.panics),
            dead_lettered: read(&self.dead_lettered),
            undecodable: read(&self.undecodable),
            checkpoints: read(&self.checkpoints),
        }
    }
}
