//! What the node's shards are doing: per-shard status and node-wide counters, for the
//! lease holder (the state to save), `/ready`, metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shardmesh_store::{LeaseState, ShardSession};

/// Where an owned shard stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardPhase {
    /// Connecting or identifying: no session yet.
    Connecting,
    /// Resuming the session the lease carried (or its own, after a reconnect).
    Resuming,
    /// READY or RESUMED received: dispatches flow.
    Active,
    /// Closed with RESUME, reading to the close echo, waiting for confirms.
    Draining,
    /// Discord closed it for good (invalid token, disallowed intents, ...): it does not
    /// reconnect, and the action log says why.
    FatallyClosed,
    /// Its task ended (hand-over, lost lease, shutdown).
    Stopped,
}

/// One owned shard as its task last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    /// The shard id.
    pub shard: u32,
    /// Lease epoch it publishes under.
    pub epoch: u64,
    /// What it is doing.
    pub phase: ShardPhase,
    /// The session to save: its id, resume URL and last broker-confirmed seq.
    pub session: ShardSession,
    /// The last seq handed to the publisher in this session (confirmed or not).
    pub queued_seq: Option<u64>,
    /// When this node last received RESUMED for the shard: with the old owner's
    /// hand-over start, how long a move took (metrics, benchmarks). `None` until the
    /// shard resumed here.
    pub resumed_at: Option<Instant>,
    /// Average of the recent heartbeat round trips to Discord; `None` before the first
    /// acknowledged heartbeat.
    pub latency: Option<Duration>,
    /// The shard's gateway commands on this node.
    pub commands: ShardCommandCounts,
    /// Unix ms of the last dispatch read on this node; `None` before the first.
    pub last_event_at_ms: Option<u64>,
    /// Unix ms of the READY or RESUMED that made the connection active here.
    pub active_since_ms: Option<u64>,
}

impl ShardStatus {
    /// Events read and queued but not yet confirmed by the broker: what a crash right
    /// now would make Discord replay.
    pub fn unconfirmed(&self) -> u64 {
        self.queued_seq
            .map_or(0, |queued| queued.saturating_sub(self.session.seq))
    }
}

/// One shard's gateway commands on this node, since the shard started here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardCommandCounts {
    /// Taken from the shard's queue and not yet written, expired or rejected (at most
    /// the prefetch; the rest waits in the broker, see `shardmesh ctl status`).
    pub held: u32,
    /// Written to Discord.
    pub sent: u64,
    /// Not sent: their expiry passed first.
    pub expired: u64,
    /// Not sent: refused as unsendable.
    pub rejected: u64,
}

/// The task-side view of a shard, shared with the holder under a std `Mutex` (never held
/// across an `.await`).
#[derive(Debug)]
pub(crate) struct ShardView {
    pub epoch: u64,
    pub phase: ShardPhase,
    pub session_id: String,
    pub resume_url: String,
    /// Publisher source of the current session on this node.
    pub source: u32,
    /// The session's seq when this node began it: what was saved before, 0 for a new one.
    pub base_seq: u64,
    pub queued_seq: Option<u64>,
    pub resumed_at: Option<Instant>,
    pub latency: Option<Duration>,
    pub commands: ShardCommandCounts,
    pub last_event_at_ms: Option<u64>,
    pub active_since_ms: Option<u64>,
}

impl ShardView {
    /// A view of a shard starting from the state the lease carried.
    pub(crate) fn new(epoch: u64, saved: &LeaseState, source: u32) -> Self {
        let session = match saved {
            LeaseState::Shard(session) if !session.session_id.is_empty() => session.clone(),
            _ => ShardSession::default(),
        };
        Self {
            epoch,
            phase: if session.session_id.is_empty() {
                ShardPhase::Connecting
            } else {
                ShardPhase::Resuming
            },
            session_id: session.session_id,
            resume_url: session.resume_url,
            source,
            base_seq: session.seq,
            queued_seq: None,
            resumed_at: None,
            latency: None,
            commands: ShardCommandCounts::default(),
            last_event_at_ms: None,
            active_since_ms: None,
        }
    }

    /// The session at `confirmed`, the broker's watermark of [`ShardView::source`]:
    /// what a renewal or release saves.
    pub(crate) fn session(&self, confirmed: Option<u64>) -> ShardSession {
        ShardSession {
            session_id: self.session_id.clone(),
            seq: confirmed.unwrap_or(0).max(self.base_seq),
            resume_url: self.resume_url.clone(),
        }
    }

    /// The status of `shard` with its session at `confirmed`; see [`ShardView::session`].
    pub(crate) fn status(&self, shard: u32, confirmed: Option<u64>) -> ShardStatus {
        ShardStatus {
            shard,
            epoch: self.epoch,
            phase: self.phase,
            session: self.session(confirmed),
            queued_seq: self.queued_seq,
            resumed_at: self.resumed_at,
            latency: self.latency,
            commands: self.commands,
            last_event_at_ms: self.last_event_at_ms,
            active_since_ms: self.active_since_ms,
        }
    }
}

/// Node-wide counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayCounters {
    /// Dispatches handed to the publisher.
    pub events_queued: u64,
    /// READYs received: sessions started (each cost an IDENTIFY).
    pub sessions_started: u64,
    /// RESUMEDs received: sessions continued without an IDENTIFY.
    pub sessions_resumed: u64,
    /// READYs where a session was expected to resume: events after the last saved seq
    /// of the old session are gone.
    pub sessions_lost: u64,
    /// Shards Discord closed for good.
    pub fatal_closes: u64,
    /// Frames that could not be read, logged and skipped.
    pub malformed_frames: u64,
    /// Shards handed over to another node.
    pub hand_overs: u64,
    /// Gateway commands written to Discord.
    pub commands_sent: u64,
    /// Gateway commands whose expiry passed before they could be sent; not sent.
    pub commands_expired: u64,
    /// Gateway commands refused (undecodable, another shard count, not a command a bot
    /// may send); not sent.
    pub commands_rejected: u64,
}

/// The atomic side of [`GatewayCounters`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub events_queued: AtomicU64,
    pub sessions_started: AtomicU64,
    pub sessions_resumed: AtomicU64,
    pub sessions_lost: AtomicU64,
    pub fatal_closes: AtomicU64,
    pub malformed_frames: AtomicU64,
    pub hand_overs: AtomicU64,
    pub commands_sent: AtomicU64,
    pub commands_expired: AtomicU64,
    pub commands_rejected: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> GatewayCounters {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        GatewayCounters {
            events_queued: read(&self.events_queued),
            sessions_started: read(&self.sessions_started),
            sessions_resumed: read(&self.sessions_resumed),
            sessions_lost: read(&self.sessions_lost),
            fatal_closes: read(&self.fatal_closes),
            malformed_frames: read(&self.malformed_frames),
            hand_overs: read(&self.hand_overs),
            commands_sent: read(&self.commands_sent),
            commands_expired: read(&self.commands_expired),
            commands_rejected: read(&self.commands_rejected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_seq_is_the_confirmed_one_and_never_below_the_start() {
        let saved = LeaseState::Shard(ShardSession {
            session_id: "s".into(),
            seq: 10,
            resume_url: "ws://r".into(),
        });
        let mut view = ShardView::new(2, &saved, 0);
        assert_eq!(view.phase, ShardPhase::Resuming);
        assert_eq!(view.session(None).seq, 10);
        view.queued_seq = Some(14);
        let confirmed = Some(12);
        assert_eq!(view.session(confirmed).seq, 12);
        assert_eq!(view.session(confirmed).resume_url, "ws://r");
    }

    #[test]
    fn an_empty_lease_starts_without_a_session() {
        let view = ShardView::new(1, &LeaseState::Empty, 0);
        assert_eq!(view.phase, ShardPhase::Connecting);
        assert!(view.session_id.is_empty());
    }
}
