//! State shared by every task of one simulator: sessions by shard set and shard
//! (`shard_sets.rs`), pacing, ground truth, channel history and counters.
//!
//! The hot path (traffic → session buffer → connection) takes only the shard's slot
//! lock and the session's lock; the ground-truth lock is taken once per written
//! batch. All locks are std mutexes never held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channels::Channels;
use crate::config::SimConfig;
use crate::pacing::{Pacer, Verdict};
use crate::rate_limit::Window;
use crate::session::{Buffered, Command, Link, Session};
use crate::shard_sets::{Fanout, ShardSets};
use crate::traffic::EventKind;
use crate::truth::{DispatchRecord, LogPage, SessionId, TruthLog};
use crate::world::{Snowflakes, World};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A chaos action against every connection or session of one shard (of every shard
/// set, or of one: `POST /_sim/chaos/{shard}?shards=N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Chaos {
    /// Drop the TCP connection without a close frame; the session stays resumable.
    Drop,
    /// Send op 7 RECONNECT (the client closes and resumes).
    Reconnect,
    /// Send op 9 INVALID SESSION; `resumable: false` also ends the session.
    InvalidSession {
        /// The `d` of the op 9.
        resumable: bool,
    },
    /// End the session now, as if its resume window had passed (a live connection is
    /// closed with 4009).
    Expire,
    /// Close the connection with this code; the session stays resumable unless the
    /// code is one after which Discord wants a new session (4007, 4009) or none at all
    /// (4004, 4010..=4014).
    Close {
        /// The close code.
        code: u16,
    },
    /// Send op 1: the client must heartbeat at once.
    RequestHeartbeat,
}

/// Whether Discord wants a new session (or no reconnect at all) after close `code`.
pub(crate) fn close_ends_session(code: u16) -> bool {
    matches!(code, 4004 | 4007 | 4009..=4014)
}

/// A snapshot of the simulator's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// WebSocket connections open now.
    pub connections: u64,
    /// Connections opened so far with `compress=zlib-stream`.
    pub zlib_connections: u64,
    /// Connections opened so far with `compress=zstd-stream`.
    pub zstd_connections: u64,
    /// Sessions alive now (attached or resumable).
    pub sessions: u64,
    /// Successful IDENTIFYs (session starts).
    pub identifies: u64,
    /// Successful RESUMEs.
    pub resumes: u64,
    /// IDENTIFYs refused because their bucket identified less than 5 s before.
    pub pacing_violations: u64,
    /// op 9 INVALID SESSION frames sent (for any reason).
    pub invalid_sessions: u64,
    /// Connections closed with 4008 for sending more than 120 payloads in 60 s.
    pub rate_limit_closes: u64,
    /// `session_start_limit.remaining`.
    pub session_start_remaining: u32,
    /// `session_start_limit.total`.
    pub session_start_total: u32,
    /// Dispatch frames written, replays and RESUMED included.
    pub dispatches_sent: u64,
    /// Of those, frames written as part of a RESUME replay.
    pub replayed: u64,
    /// Payload bytes of the data messages written to clients, after transport
    /// compression (what a bot's network link carries, WebSocket framing aside).
    pub bytes_sent: u64,
    /// Dispatch frames written per shard of the configured count (index = shard id).
    pub dispatches_per_shard: Vec<u64>,
    /// Dispatch frames written per shard, for every shard count sessions identified
    /// with (the configured one included), by count.
    pub dispatches_per_shard_count: BTreeMap<u32, Vec<u64>>,
    /// Sessions alive now, by the shard count they identified with.
    pub sessions_per_shard_count: BTreeMap<u32, u64>,
    /// The shard count `GET /gateway/bot` recommends now.
    pub recommended_shards: u32,
    /// Traffic events generated.
    pub generated: u64,
    /// Target traffic rate, dispatches per second.
    pub rate: f64,
    /// Whether traffic is running.
    pub traffic_running: bool,
    /// REST requests served (429s included).
    pub rest_requests: u64,
    /// REST requests refused with 429.
    pub rest_rate_limited: u64,
    /// Ground-truth records written so far (the next cursor).
    pub truth_records: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    /// Which transport compression clients ask for (a load test's cost depends on it).
    pub zlib_connections: AtomicU64,
    pub zstd_connections: AtomicU64,
    pub identifies: AtomicU64,
    pub resumes: AtomicU64,
    pub pacing_violations: AtomicU64,
    pub invalid_sessions: AtomicU64,
    pub rate_limit_closes: AtomicU64,
    pub dispatches_sent: AtomicU64,
    pub replayed: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub generated: AtomicU64,
    pub rest_requests: AtomicU64,
    pub rest_rate_limited: AtomicU64,
}

/// Traffic knobs the driver task reads.
#[derive(Debug)]
pub(crate) struct TrafficControl {
    pub running: AtomicBool,
    rate_bits: AtomicU64,
    /// Wakes the driver when the knobs change.
    pub changed: Notify,
}

impl TrafficControl {
    pub(crate) fn rate(&self) -> f64 {
        f64::from_bits(self.rate_bits.load(Ordering::Relaxed))
    }

    pub(crate) fn set_rate(&self, rate: f64) {
        self.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
        self.changed.notify_one();
    }

    pub(crate) fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
        self.changed.notify_one();
    }
}

/// Everything one simulator's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SimConfig,
    pub world: World,
    pub ids: Snowflakes,
    /// `ws://host:port`, the READY `resume_gateway_url` and `/gateway` url.
    pub gateway_url: String,
    pub counters: Counters,
    pub traffic: TrafficControl,
    pub rest_window: Mutex<Window>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    /// Live sessions by shard count and shard: where dispatches are routed.
    pub sets: ShardSets,
    sessions: Mutex<HashMap<SessionId, Arc<Session>>>,
    /// The next logical event id (see [`DispatchRecord::logical`]), shared with every
    /// session for the events of its own.
    logical: Arc<AtomicU64>,
    /// What `GET /gateway/bot` recommends (`POST /_sim/recommended_shards`).
    recommended_shards: AtomicU32,
    next_session: AtomicU64,
    next_connection: AtomicU64,
    pacer: Mutex<Pacer>,
    truth: Mutex<TruthLog>,
    /// Taken only by requests that create or read messages and webhooks, never by
    /// generated traffic.
    channels: Mutex<Channels>,
    /// Gateway commands received, and what answering them remembers (`commands.rs`).
    pub commands: crate::commands::Commands,
}

impl Shared {
    pub(crate) fn new(config: SimConfig, gateway_url: String, cancel: CancellationToken) -> Self {
        let world = World::new(config.guilds, config.shards);
        let pacer = Pacer::new(
            config.max_concurrency,
            std::time::Duration::from_millis(config.identify_interval_ms),
            std::time::Duration::from_millis(config.identify_slack_ms),
            config.session_start_total,
        );
        Self {
            world,
            ids: Snowflakes::default(),
            gateway_url,
            counters: Counters::default(),
            traffic: TrafficControl {
                running: AtomicBool::new(true),
                rate_bits: AtomicU64::new(config.rate.to_bits()),
                changed: Notify::new(),
            },
            rest_window: Mutex::new(Window::new(config.rest_global_limit)),
            cancel,
            tracker: TaskTracker::new(),
            sets: ShardSets::new(config.shards),
            sessions: Mutex::new(HashMap::new()),
            logical: Arc::new(AtomicU64::new(1)),
            recommended_shards: AtomicU32::new(config.shards),
            next_session: AtomicU64::new(1),
            next_connection: AtomicU64::new(1),
            pacer: Mutex::new(pacer),
            truth: Mutex::new(TruthLog::new(config.truth_capacity)),
            channels: Mutex::new(Channels::default()),
            commands: crate::commands::Commands::new(config.truth_capacity),
            config,
        }
    }

    pub(crate) fn next_connection(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Judges an IDENTIFY against pacing and the budget, counting violations.
    pub(crate) fn pace_identify(&self, shard: u32) -> Verdict {
        let verdict = lock(&self.pacer).identify(shard, Instant::now());
        match verdict {
            Verdict::Granted => self.counters.identifies.fetch_add(1, Ordering::Relaxed),
            Verdict::TooSoon => self
                .counters
                .pacing_violations
                .fetch_add(1, Ordering::Relaxed),
            Verdict::BudgetExhausted => 0,
        };
        verdict
    }

    /// A fresh logical event id.
    pub(crate) fn next_logical(&self) -> u64 {
        self.logical.fetch_add(1, Ordering::Relaxed)
    }

    /// The shard count `GET /gateway/bot` recommends.
    pub(crate) fn recommended_shards(&self) -> u32 {
        self.recommended_shards.load(Ordering::Relaxed)
    }

    /// Changes what `GET /gateway/bot` recommends (1..=65,535; the caller checks).
    pub(crate) fn set_recommended_shards(&self, shards: u32) {
        self.recommended_shards.store(shards, Ordering::Relaxed);
    }

    /// Creates a session for shard `[id, count]` and starts routing that shard's
    /// dispatches to it.
    pub(crate) fn start_session(&self, shard: [u32; 2], intents: u64) -> Arc<Session> {
        let id = SessionId(self.next_session.fetch_add(1, Ordering::Relaxed));
        let session = Arc::new(Session::new(
            id,
            shard,
            intents,
            self.config.replay_capacity,
            Arc::clone(&self.logical),
        ));
        lock(&self.sessions).insert(id, Arc::clone(&session));
        self.sets.get_or_create(shard[1]).add(Arc::clone(&session));
        session
    }

    pub(crate) fn find_session(&self, wire_id: &str) -> Option<Arc<Session>> {
        let id = SessionId::parse(wire_id)?;
        lock(&self.sessions).get(&id).cloned()
    }

    /// Ends `session` and forgets it; returns its attached connection's link.
    pub(crate) fn end_session(&self, session: &Session) -> Option<Link> {
        let link = session.end();
        lock(&self.sessions).remove(&session.id);
        if let Some(set) = self.sets.get(session.shard_count) {
            set.remove(session);
        }
        link
    }

    /// Ends every session detached for longer than the resume window.
    pub(crate) fn sweep(&self, now: Instant) {
        let window = self.config.resume_window();
        let expired: Vec<Arc<Session>> = lock(&self.sessions)
            .values()
            .filter(|s| s.is_expired(now, window))
            .cloned()
            .collect();
        for session in expired {
            tracing::debug!(shard = session.shard, session = %session.id, "session expired");
            self.end_session(&session);
        }
    }

    /// Sends one new logical event of guild `guild_id` to the matching session of
    /// every shard set and wakes them (one event outside a traffic batch, such as a
    /// created message). Returns how many sessions took a copy.
    pub(crate) fn dispatch_now(&self, guild_id: u64, kind: EventKind, id: u64, d: &str) -> usize {
        let mut fanout = Fanout::default();
        fanout.begin(&self.sets);
        let took = fanout.dispatch(guild_id, kind, id, self.next_logical(), d);
        fanout.notify();
        took
    }

    /// Records a written batch in the ground truth; frames other than RESUMED with
    /// `seq <= replay_to` were part of a RESUME replay.
    pub(crate) fn record_sent(
        &self,
        connection: u64,
        session: &Session,
        batch: &[Buffered],
        replay_to: u64,
    ) {
        let is_replay = |b: &Buffered| b.kind != EventKind::Resumed && b.seq <= replay_to;
        let replayed = batch.iter().filter(|b| is_replay(b)).count() as u64;
        let sent_at_us = crate::truth::unix_us();
        {
            let mut truth = lock(&self.truth);
            for b in batch {
                truth.push(DispatchRecord {
                    cursor: 0,
                    shard: session.shard,
                    shard_count: session.shard_count,
                    session: session.id,
                    connection,
                    seq: b.seq,
                    kind: b.kind,
                    id: b.id,
                    logical: b.logical,
                    replay: is_replay(b),
                    sent_at_us,
                });
            }
        }
        let sent = batch.len() as u64;
        if let Some(set) = self.sets.get(session.shard_count) {
            set.count_sent(session.shard, sent);
        }
        self.counters
            .dispatches_sent
            .fetch_add(sent, Ordering::Relaxed);
        self.counters
            .replayed
            .fetch_add(replayed, Ordering::Relaxed);
    }

    pub(crate) fn log_since(&self, since: u64, limit: usize) -> LogPage {
        lock(&self.truth).since(since, limit)
    }

    /// The channels' history and webhooks, locked; hold the guard only briefly.
    pub(crate) fn channels(&self) -> MutexGuard<'_, Channels> {
        lock(&self.channels)
    }

    pub(crate) fn session_start_remaining(&self) -> u32 {
        lock(&self.pacer).remaining()
    }

    /// Applies `chaos` to the sessions of shard `shard` of every shard set, or only of
    /// the set of `shard_count` when given; returns how many it reached.
    pub(crate) fn chaos(&self, shard: u32, shard_count: Option<u32>, chaos: Chaos) -> usize {
        let sessions: Vec<Arc<Session>> = self
            .sets
            .snapshot()
            .iter()
            .filter(|set| shard_count.is_none_or(|count| set.count() == count))
            .flat_map(|set| set.sessions(shard))
            .collect();
        let mut reached = 0;
        for session in sessions {
            let hit = match chaos {
                Chaos::Drop => session.command(Command::Drop),
                Chaos::Reconnect => session.command(Command::Reconnect),
                Chaos::RequestHeartbeat => session.command(Command::RequestHeartbeat),
                Chaos::Close { code } => session.command(Command::Close(code)),
                Chaos::InvalidSession { resumable: true } => {
                    session.command(Command::InvalidSession(true))
                }
                Chaos::InvalidSession { resumable: false } => {
                    self.end_session(&session).is_none_or(|link| {
                        link.commands
                            .try_send(Command::InvalidSession(false))
                            .is_ok()
                    })
                }
                Chaos::Expire => {
                    if let Some(link) = self.end_session(&session) {
                        let _ = link.commands.try_send(Command::Close(4009));
                    }
                    true
                }
            };
            reached += usize::from(hit);
        }
        reached
    }

    pub(crate) fn stats(&self) -> Stats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let c = &self.counters;
        let sets = self.sets.snapshot();
        Stats {
            connections: load(&c.connections),
            zlib_connections: load(&c.zlib_connections),
            zstd_connections: load(&c.zstd_connections),
            sessions: lock(&self.sessions).len() as u64,
            identifies: load(&c.identifies),
            resumes: load(&c.resumes),
            pacing_violations: load(&c.pacing_violations),
            invalid_sessions: load(&c.invalid_sessions),
            rate_limit_closes: load(&c.rate_limit_closes),
            session_start_remaining: self.session_start_remaining(),
            session_start_total: self.config.session_start_total,
            dispatches_sent: load(&c.dispatches_sent),
            bytes_sent: load(&c.bytes_sent),
            replayed: load(&c.replayed),
            dispatches_per_shard: sets[0].sent_per_shard(),
            dispatches_per_shard_count: sets
                .iter()
                .map(|set| (set.count(), set.sent_per_shard()))
                .collect(),
            sessions_per_shard_count: sets
                .iter()
                .map(|set| (set.count(), set.live() as u64))
                .collect(),
            recommended_shards: self.recommended_shards(),
            generated: load(&c.generated),
            rate: self.traffic.rate(),
            traffic_running: self.traffic.running.load(Ordering::Relaxed),
            rest_requests: load(&c.rest_requests),
            rest_rate_limited: load(&c.rest_rate_limited),
            truth_records: lock(&self.truth).next_cursor(),
        }
    }
}
