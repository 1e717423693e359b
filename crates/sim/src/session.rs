//! Gateway sessions: a session's seq, its replay buffer and the connection it is
//! attached to.
//!
//! The replay buffer is also the session's outbound queue: producers (traffic, REST)
//! append pre-serialized frames and wake the attached connection, which copies out
//! what it has not written yet. So a session keeps collecting dispatches while it is
//! disconnected-but-resumable, exactly as Discord does, and a RESUME replays them.
//! The buffer keeps the newest [`SimConfig::replay_capacity`](crate::SimConfig)
//! frames; a client further behind than that can no longer resume.
//!
//! Locks here are std mutexes, never held across an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

use crate::frames;
use crate::traffic::EventKind;
use crate::truth::SessionId;

/// A frame in a session's replay buffer.
#[derive(Clone, Debug)]
pub(crate) struct Buffered {
    pub seq: u64,
    pub kind: EventKind,
    pub id: u64,
    /// The logical event this frame is a copy of (see [`crate::DispatchRecord::logical`]).
    pub logical: u64,
    pub frame: Utf8Bytes,
}

/// What the simulator can ask of a live connection (chaos and shutdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Send op 7 RECONNECT.
    Reconnect,
    /// Send op 9 INVALID SESSION with `d` = resumable.
    InvalidSession(bool),
    /// Send a close frame with this code and hang up.
    Close(u16),
    /// Send op 1: the client must heartbeat now.
    RequestHeartbeat,
}

/// The connection a session is attached to.
#[derive(Debug)]
pub(crate) struct Link {
    pub connection: u64,
    pub commands: mpsc::Sender<Command>,
}

/// One gateway session.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: SessionId,
    pub shard: u32,
    /// The shard count it identified with: the set it belongs to.
    pub shard_count: u32,
    pub intents: u64,
    /// The simulator's logical-event counter, so events of this session alone (READY,
    /// `GUILD_CREATE`, command answers) get fresh logical ids from [`Session::push`].
    logical: Arc<AtomicU64>,
    /// Wakes the attached connection when frames were appended.
    pub notify: Notify,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    seq: u64,
    buffer: VecDeque<Buffered>,
    capacity: usize,
    link: Option<Link>,
    detached_at: Option<Instant>,
    ended: bool,
}

/// Why a connection cannot continue from where it asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gap {
    /// The session has ended (closed, invalidated or expired).
    Ended,
    /// The frames after the asked seq are no longer buffered.
    Evicted,
    /// The asked seq is beyond anything the session sent.
    Future,
}

impl Session {
    pub(crate) fn new(
        id: SessionId,
        [shard, shard_count]: [u32; 2],
        intents: u64,
        capacity: usize,
        logical: Arc<AtomicU64>,
    ) -> Self {
        Self {
            id,
            shard,
            shard_count,
            intents,
            logical,
            notify: Notify::new(),
            state: Mutex::new(State {
                seq: 0,
                buffer: VecDeque::with_capacity(capacity.min(64)),
                capacity,
                link: None,
                detached_at: None,
                ended: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this session receives `kind` (its intents allow it).
    pub(crate) fn wants(&self, kind: EventKind) -> bool {
        let needed = kind.required_intent();
        self.intents & needed == needed
    }

    /// Appends a dispatch meant for this session alone (a logical event of its own)
    /// with the next seq. Does not wake the connection: callers batch and call
    /// [`Notify::notify_one`] once. Returns false if the session ended.
    pub(crate) fn push(&self, kind: EventKind, id: u64, d: &str) -> bool {
        let logical = self.logical.fetch_add(1, Ordering::Relaxed);
        self.push_copy(kind, id, logical, d)
    }

    /// Appends this session's copy of logical event `logical` (one generated event
    /// fanned out to the sessions of every shard set) with the next seq; as
    /// [`Session::push`] otherwise.
    pub(crate) fn push_copy(&self, kind: EventKind, id: u64, logical: u64, d: &str) -> bool {
        let mut state = self.lock();
        if state.ended {
            return false;
        }
        state.seq += 1;
        let seq = state.seq;
        let frame = Utf8Bytes::from(frames::dispatch(kind, seq, d));
        if state.buffer.len() == state.capacity {
            state.buffer.pop_front();
        }
        state.buffer.push_back(Buffered {
            seq,
            kind,
            id,
            logical,
            frame,
        });
        true
    }

    /// Copies the buffered frames with `seq >= next` into `out`.
    pub(crate) fn take_from(&self, next: u64, out: &mut Vec<Buffered>) -> Result<(), Gap> {
        let state = self.lock();
        if state.ended {
            return Err(Gap::Ended);
        }
        if next > state.seq + 1 {
            return Err(Gap::Future);
        }
        let Some(first) = state.buffer.front().map(|b| b.seq) else {
            return Ok(());
        };
        if next < first {
            return Err(Gap::Evicted);
        }
        let skip = usize::try_from(next - first).unwrap_or(usize::MAX);
        out.extend(state.buffer.iter().skip(skip).cloned());
        Ok(())
    }

    /// Attaches a connection that continues after `after_seq` (0 for a new session).
    ///
    /// Returns the seq the replay ends at, and the link of a connection that was still
    /// attached (the caller drops it).
    pub(crate) fn attach(
        &self,
        link: Link,
        after_seq: u64,
        now: Instant,
        window: std::time::Duration,
    ) -> Result<(u64, Option<Link>), Gap> {
        let mut state = self.lock();
        if state.ended
            || state
                .detached_at
                .is_some_and(|at| now.duration_since(at) > window)
        {
            return Err(Gap::Ended);
        }
        if after_seq > state.seq {
            return Err(Gap::Future);
        }
        let first = state.buffer.front().map_or(state.seq + 1, |b| b.seq);
        if after_seq + 1 < first {
            return Err(Gap::Evicted);
        }
        state.detached_at = None;
        let previous = state.link.replace(link);
        Ok((state.seq, previous))
    }

    /// Detaches `connection` if it is still the attached one; the session stays
    /// resumable for the window from `now`.
    pub(crate) fn detach(&self, connection: u64, now: Instant) {
        let mut state = self.lock();
        if state
            .link
            .as_ref()
            .is_some_and(|l| l.connection == connection)
        {
            state.link = None;
            state.detached_at = Some(now);
        }
    }

    /// Ends the session; returns the attached connection's link, if any.
    pub(crate) fn end(&self) -> Option<Link> {
        let mut state = self.lock();
        state.ended = true;
        state.buffer.clear();
        state.link.take()
    }

    /// Whether it ended, or was detached for longer than `window` at `now`.
    pub(crate) fn is_expired(&self, now: Instant, window: std::time::Duration) -> bool {
        let state = self.lock();
        state.ended
            || state
                .detached_at
                .is_some_and(|at| now.duration_since(at) > window)
    }

    /// Sends `command` to the attached connection; false if none is attached.
    pub(crate) fn command(&self, command: Command) -> bool {
        let state = self.lock();
        state
            .link
            .as_ref()
            .is_some_and(|link| link.commands.try_send(command).is_ok())
    }

    /// Whether a connection is attached.
    #[cfg(test)]
    pub(crate) fn is_attached(&self) -> bool {
        self.lock().link.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn session(capacity: usize) -> Session {
        Session::new(
            SessionId(1),
            [0, 1],
            u64::MAX,
            capacity,
            Arc::new(AtomicU64::new(1)),
        )
    }

    fn link(connection: u64) -> Link {
        Link {
            connection,
            commands: mpsc::channel(1).0,
        }
    }

    fn seqs(session: &Session, next: u64) -> Result<Vec<u64>, Gap> {
        let mut out = Vec::new();
        session.take_from(next, &mut out)?;
        Ok(out.iter().map(|b| b.seq).collect())
    }

    #[test]
    fn frames_carry_consecutive_seqs() {
        let session = session(10);
        for id in 1..=3 {
            assert!(session.push(EventKind::MessageCreate, id, "{}"));
        }
        assert_eq!(seqs(&session, 2).unwrap(), [2, 3]);
        let mut out = Vec::new();
        session.take_from(3, &mut out).unwrap();
        assert_eq!(
            &*out[0].frame,
            r#"{"t":"MESSAGE_CREATE","s":3,"op":0,"d":{}}"#
        );
        assert_eq!(seqs(&session, 4).unwrap(), Vec::<u64>::new());
        assert_eq!(seqs(&session, 5), Err(Gap::Future));
    }

    #[test]
    fn buffer_is_bounded_and_old_seqs_cannot_resume() {
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let session = session(3);
        for id in 1..=5 {
            session.push(EventKind::TypingStart, id, "{}");
        }
        assert_eq!(seqs(&session, 1), Err(Gap::Evicted));
        assert!(matches!(
            session.attach(link(1), 1, now, window),
            Err(Gap::Evicted)
        ));
        assert_eq!(session.attach(link(1), 2, now, window).unwrap().0, 5);
        assert!(matches!(
            session.attach(link(2), 6, now, window),
            Err(Gap::Future)
        ));
    }

    #[test]
    fn detached_sessions_expire_after_the_window() {
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let session = session(3);
        session.attach(link(1), 0, now, window).unwrap();
        session.detach(2, now);
        assert!(
            session.is_attached(),
            "only the attached connection detaches"
        );
        session.detach(1, now);
        assert!(!session.is_expired(now + window, window));
        assert!(session.is_expired(now + window + Duration::from_millis(1), window));
        assert!(matches!(
            session.attach(link(3), 0, now + 2 * window, window),
            Err(Gap::Ended)
        ));
    }

    #[test]
    fn own_events_get_fresh_logical_ids_and_copies_keep_theirs() {
        let session = session(10);
        session.push(EventKind::Ready, 0, "{}");
        session.push_copy(EventKind::MessageCreate, 7, 40, "{}");
        session.push(EventKind::GuildCreate, 9, "{}");
        let mut out = Vec::new();
        session.take_from(1, &mut out).unwrap();
        let logical: Vec<u64> = out.iter().map(|b| b.logical).collect();
        assert_eq!(logical, [1, 40, 2]);
    }

    #[test]
    fn an_ended_session_takes_no_more_frames() {
        let session = session(3);
        session.end();
        assert!(!session.push(EventKind::MessageCreate, 1, "{}"));
        assert_eq!(seqs(&session, 1), Err(Gap::Ended));
    }
}
