//! One gateway WebSocket connection: HELLO, heartbeats, IDENTIFY / RESUME, writing the
//! session's frames, chaos commands, and the close codes Discord uses.
//!
//! One task per connection selects over the client's messages, the session's "frames
//! appended" signal, chaos commands, the heartbeat deadline and shutdown.
//!
//! What a client library may rely on, beyond the happy path:
//! - Client payloads are JSON in text or binary WebSocket frames (twilight 0.14 and
//!   hikari send binary). Invalid UTF-8 or JSON in either, or a payload over 4096
//!   bytes, is closed with 4002.
//! - Outbound messages go through the connection's [`Encoder`]: text frames, or one
//!   binary message per gateway message continuing the connection's zlib or zstd
//!   stream.
//! - After op 9 INVALID SESSION the connection is unauthenticated again and takes a
//!   RESUME (after `d: true`; the session stays resumable, detached from this
//!   connection) or an IDENTIFY exactly as a new connection would. Discord's pages
//!   disagree on whether a client must reconnect first (the opcodes table says so, the
//!   Gateway page's resuming section does not; discord-api-docs#5296) and libraries
//!   do both, so both work here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{FutureExt, SinkExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::commands;
use crate::compress::{Encoder, Transport};
use crate::config::{PRIVILEGED_INTENTS, VALID_INTENTS};
use crate::frames::{self, op};
use crate::pacing::Verdict;
use crate::session::{Buffered, Command, Gap, Link, Session};
use crate::state::{Shared, close_ends_session};
use crate::traffic::EventKind;

/// Largest payload a client may send (Discord closes with 4002 past it).
const MAX_CLIENT_PAYLOAD: usize = 4_096;
/// Client sends allowed per [`SEND_WINDOW`] before close 4008.
const MAX_CLIENT_SENDS: usize = 120;
const SEND_WINDOW: Duration = Duration::from_secs(60);
/// The largest shard count a session may identify with.
const MAX_SHARD_COUNT: u32 = 65_535;

#[derive(Deserialize)]
struct Inbound<'a> {
    op: u64,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Identify {
    token: String,
    intents: u64,
    shard: Option<[u32; 2]>,
    /// Members above which a guild counts as `large` (Discord: 50..=250, default 50).
    large_threshold: Option<u32>,
}

#[derive(Deserialize)]
struct Resume {
    token: String,
    session_id: String,
    seq: Option<u64>,
}

/// The live part of a connection: its session and how far it has written.
struct Live {
    session: Arc<Session>,
    /// The next seq to write.
    next: u64,
    /// Frames up to this seq belong to a RESUME replay; RESUMED follows them.
    replay_to: u64,
    /// Whether RESUMED is still owed once the replay is written.
    owes_resumed: bool,
}

/// How a connection ends, and what happens to its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Hang up; the session stays resumable.
    Keep,
    /// Hang up and end the session.
    EndSession,
}

/// Runs one upgraded connection to its end.
pub(crate) async fn run(shared: Arc<Shared>, socket: WebSocket, transport: Transport) {
    let id = shared.next_connection();
    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
    let compressed = match transport {
        Transport::Plain => None,
        Transport::ZlibStream => Some(&shared.counters.zlib_connections),
        Transport::ZstdStream => Some(&shared.counters.zstd_connections),
    };
    if let Some(counter) = compressed {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let mut connection = Connection {
        shared: Arc::clone(&shared),
        id,
        socket,
        encoder: Encoder::new(transport),
        live: None,
        batch: Vec::new(),
        sends: VecDeque::with_capacity(MAX_CLIENT_SENDS + 1),
        write_timeout: heartbeat_timeout(&shared),
        reconnect_requested: false,
    };
    let end = connection.serve().await;
    if let Some(live) = &connection.live {
        match end {
            End::Keep => live.session.detach(id, Instant::now()),
            End::EndSession => {
                tracing::debug!(shard = live.session.shard, session = %live.session.id, "session ended by close");
                shared.end_session(&live.session);
            }
        }
    }
    shared.counters.connections.fetch_sub(1, Ordering::Relaxed);
}

struct Connection {
    shared: Arc<Shared>,
    id: u64,
    socket: WebSocket,
    /// The connection's compression stream: one per connection, so a resume on a new
    /// connection starts a fresh one, as the client's decoder does.
    encoder: Encoder,
    live: Option<Live>,
    /// Reused between writes so draining allocates nothing per frame.
    batch: Vec<Buffered>,
    /// When the client's payloads of the last [`SEND_WINDOW`] arrived, oldest first: a
    /// sliding window, so no 60 s span anywhere holds more than the limit.
    sends: VecDeque<Instant>,
    /// A write that cannot finish this fast means a client that stopped reading: hang
    /// up rather than block the task (and shutdown) forever.
    write_timeout: Duration,
    /// op 7 was sent: the client must close by the deadline or be closed with 4000.
    reconnect_requested: bool,
}

/// How long a client may stay silent (no heartbeat) or stop reading: 1.5 intervals.
fn heartbeat_timeout(shared: &Shared) -> Duration {
    let interval = shared.config.heartbeat_interval();
    interval + interval / 2
}

/// Runs a socket write, giving up on shutdown or after `timeout`.
///
/// A write that completes on its first poll (the common case: room in the socket
/// buffer) arms no timer.
async fn guarded(
    cancel: &tokio_util::sync::CancellationToken,
    timeout: Duration,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), End> {
    tokio::pin!(write);
    if let Some(result) = write.as_mut().now_or_never() {
        return result.map_err(|_| End::Keep);
    }
    tokio::select! {
        result = write => result.map_err(|_| End::Keep),
        () = cancel.cancelled() => Err(End::Keep),
        () = tokio::time::sleep(timeout) => Err(End::Keep),
    }
}

impl Connection {
    async fn serve(&mut self) -> End {
        let interval = self.shared.config.heartbeat_interval();
        let hello = frames::hello(self.shared.config.heartbeat_interval_ms);
        if self.send_text(hello).await.is_err() {
            return End::Keep;
        }
        let (commands_tx, mut commands) = mpsc::channel(8);
        let timeout = heartbeat_timeout(&self.shared);
        // Discord closes a connection that ignores op 7 a few seconds later.
        let reconnect_grace = interval.min(Duration::from_secs(5));
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let cancel = self.shared.cancel.clone();
        loop {
            let session = self.live.as_ref().map(|live| Arc::clone(&live.session));
            tokio::select! {
                () = cancel.cancelled() => return End::Keep,
                Some(command) = commands.recv() => {
                    if let Some(end) = self.command(command).await {
                        return end;
                    }
                    if command == Command::Reconnect && !self.reconnect_requested {
                        self.reconnect_requested = true;
                        let by = tokio::time::Instant::now() + reconnect_grace;
                        if by < deadline.deadline() {
                            deadline.as_mut().reset(by);
                        }
                    }
                }
                () = wait_frames(session.as_deref()) => {
                    if let Err(end) = self.write_frames().await {
                        return end;
                    }
                }
                message = self.socket.recv() => {
                    let message = match message {
                        None => return End::Keep,
                        Some(Ok(message)) => message,
                        // A text frame that is not UTF-8 or a message past the size
                        // limit: what Discord calls a decode error. On a broken socket
                        // the close fails at once and the connection just ends.
                        Some(Err(_)) => return self.close(4002, "decode error").await,
                    };
                    match self.inbound(message, &commands_tx).await {
                        Ok(true) if !self.reconnect_requested => {
                            deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                        }
                        Ok(_) => {}
                        Err(end) => return end,
                    }
                }
                () = &mut deadline => {
                    if self.reconnect_requested {
                        tracing::debug!(connection = self.id, "op 7 ignored: closing with 4000");
                        return self.close(4000, "reconnect").await;
                    }
                    tracing::debug!(connection = self.id, "no heartbeat: closing with 4009");
                    return self.close(4009, "session timed out").await;
                }
            }
        }
    }

    /// Handles a chaos command; `Some` ends the connection.
    async fn command(&mut self, command: Command) -> Option<End> {
        let sent = match command {
            Command::Drop => return Some(End::Keep),
            Command::Close(code) => {
                let end = self.close(code, "closed by the simulator").await;
                return Some(if close_ends_session(code) {
                    End::EndSession
                } else {
                    end
                });
            }
            Command::Reconnect => self.send_text(frames::RECONNECT).await,
            Command::RequestHeartbeat => self.send_text(frames::HEARTBEAT_REQUEST).await,
            Command::InvalidSession(resumable) => {
                self.shared
                    .counters
                    .invalid_sessions
                    .fetch_add(1, Ordering::Relaxed);
                // Either way the connection is unauthenticated again: it writes
                // nothing more of the session and takes a RESUME or IDENTIFY. A
                // resumable session waits, detached, as after a dropped connection;
                // a non-resumable one already ended.
                if let Some(live) = self.live.take()
                    && resumable
                {
                    live.session.detach(self.id, Instant::now());
                }
                self.send_text(frames::invalid_session(resumable)).await
            }
        };
        sent.err()
    }

    /// Handles one client message; `Ok(true)` when it was a heartbeat.
    async fn inbound(
        &mut self,
        message: Message,
        commands: &mpsc::Sender<Command>,
    ) -> Result<bool, End> {
        // Discord takes the same JSON in either frame type.
        let payload: Bytes = match message {
            Message::Text(text) => text.into(),
            Message::Binary(bytes) => bytes,
            Message::Close(frame) => {
                // Sends the close echo tungstenite queued on reading the close.
                let flush = self.socket.flush();
                let _ = guarded(&self.shared.cancel, self.write_timeout, flush).await;
                let code = frame.map_or(1005, |f| f.code);
                return Err(if matches!(code, 1000 | 1001) {
                    End::EndSession
                } else {
                    End::Keep
                });
            }
            Message::Ping(_) | Message::Pong(_) => return Ok(false),
        };
        let now = Instant::now();
        while self
            .sends
            .front()
            .is_some_and(|at| now.duration_since(*at) >= SEND_WINDOW)
        {
            self.sends.pop_front();
        }
        self.sends.push_back(now);
        if self.sends.len() > MAX_CLIENT_SENDS {
            self.shared
                .counters
                .rate_limit_closes
                .fetch_add(1, Ordering::Relaxed);
            return Err(self.close(4008, "rate limited").await);
        }
        if payload.len() > MAX_CLIENT_PAYLOAD {
            return Err(self.close(4002, "payload too large").await);
        }
        let inbound = std::str::from_utf8(&payload)
            .ok()
            .and_then(|text| serde_json::from_str::<Inbound<'_>>(text).ok());
        let Some(inbound) = inbound else {
            return Err(self.close(4002, "decode error").await);
        };
        let d = inbound.d.map_or("null", RawValue::get);
        match inbound.op {
            op::HEARTBEAT => {
                self.send_text(frames::HEARTBEAT_ACK).await?;
                return Ok(true);
            }
            op::IDENTIFY | op::RESUME if self.live.is_some() => {
                return Err(self.close(4005, "already authenticated").await);
            }
            op::IDENTIFY => match serde_json::from_str::<Identify>(d) {
                Ok(identify) => self.identify(identify, commands).await?,
                Err(_) => return Err(self.close(4002, "decode error").await),
            },
            op::RESUME => match serde_json::from_str::<Resume>(d) {
                Ok(resume) => self.resume(resume, commands).await?,
                Err(_) => return Err(self.close(4002, "decode error").await),
            },
            op::PRESENCE_UPDATE
            | op::VOICE_STATE_UPDATE
            | op::REQUEST_GUILD_MEMBERS
            | op::REQUEST_SOUNDBOARD_SOUNDS
            | commands::REQUEST_CHANNEL_INFO => {
                let Some(live) = &self.live else {
                    return Err(self.close(4003, "not authenticated").await);
                };
                if commands::answer(&self.shared, &live.session, self.id, inbound.op, d).is_err() {
                    return Err(self.close(4002, "decode error").await);
                }
            }
            _ => return Err(self.close(4001, "unknown opcode").await),
        }
        Ok(false)
    }

    async fn identify(
        &mut self,
        identify: Identify,
        commands: &mpsc::Sender<Command>,
    ) -> Result<(), End> {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        if !config.token.matches(&identify.token) {
            return Err(self.close(4004, "authentication failed").await);
        }
        if identify.intents & !VALID_INTENTS != 0 {
            return Err(self.close(4013, "invalid intent(s)").await);
        }
        if identify.intents & PRIVILEGED_INTENTS & !config.privileged_intents != 0 {
            return Err(self.close(4014, "disallowed intent(s)").await);
        }
        let [shard, count] = match identify.shard {
            // Beyond 65,535 (the configured count's limit too) a count is refused as
            // invalid rather than allocated for.
            Some([id, count]) if id >= count || count > MAX_SHARD_COUNT => {
                return Err(self.close(4010, "invalid shard").await);
            }
            Some(pair) if accepts_count(config, pair[1]) => pair,
            // Without `shard` a bot means `[0, 1]`; a bot configured sharded that
            // forgets it is told so even when one shard would hold its guilds.
            None if config.shards == 1 => [0, 1],
            Some(_) | None => return Err(self.close(4011, "sharding required").await),
        };
        match shared.pace_identify(shard) {
            Verdict::Granted => {}
            Verdict::TooSoon => {
                tracing::info!(shard, connection = self.id, "identify pacing violation");
                shared
                    .counters
                    .invalid_sessions
                    .fetch_add(1, Ordering::Relaxed);
                return self.send_text(frames::invalid_session(false)).await;
            }
            Verdict::BudgetExhausted => {
                return Err(self.close(4004, "session start limit reached").await);
            }
        }
        let session = shared.start_session([shard, count], identify.intents);
        let link = Link {
            connection: self.id,
            commands: commands.clone(),
        };
        let window = config.resume_window();
        session
            .attach(link, 0, Instant::now(), window)
            .expect("a new session accepts its first connection");
        let world = &shared.world;
        let wire_id = session.id.to_string();
        let ready = frames::ready_d(world, [shard, count], &wire_id, &shared.gateway_url);
        session.push(EventKind::Ready, 0, &ready);
        let members = frames::GuildMembers {
            count: config.guild_members,
            large_threshold: identify.large_threshold.unwrap_or(50).clamp(50, 250),
        };
        for guild in world.guilds_of_shard_in(shard, count) {
            let d = frames::guild_create_d(world, guild, members);
            session.push(EventKind::GuildCreate, world.guild_id(guild), &d);
        }
        tracing::debug!(shard, count, session = %session.id, connection = self.id, "identified");
        session.notify.notify_one();
        self.live = Some(Live {
            session,
            next: 1,
            replay_to: 0,
            owes_resumed: false,
        });
        Ok(())
    }

    async fn resume(
        &mut self,
        resume: Resume,
        commands: &mpsc::Sender<Command>,
    ) -> Result<(), End> {
        let shared = Arc::clone(&self.shared);
        if !shared.config.token.matches(&resume.token) {
            return Err(self.close(4004, "authentication failed").await);
        }
        let after = resume.seq.unwrap_or(0);
        let Some(session) = shared.find_session(&resume.session_id) else {
            shared
                .counters
                .invalid_sessions
                .fetch_add(1, Ordering::Relaxed);
            return self.send_text(frames::invalid_session(false)).await;
        };
        let link = Link {
            connection: self.id,
            commands: commands.clone(),
        };
        match session.attach(link, after, Instant::now(), shared.config.resume_window()) {
            Ok((replay_to, previous)) => {
                if let Some(previous) = previous {
                    let _ = previous.commands.try_send(Command::Drop);
                }
                shared.counters.resumes.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(shard = session.shard, session = %session.id, after, replay_to, "resumed");
                session.notify.notify_one();
                self.live = Some(Live {
                    session,
                    next: after + 1,
                    replay_to,
                    owes_resumed: true,
                });
                Ok(())
            }
            Err(Gap::Future) => Err(self.close(4007, "invalid seq").await),
            Err(Gap::Ended | Gap::Evicted) => {
                shared.end_session(&session);
                shared
                    .counters
                    .invalid_sessions
                    .fetch_add(1, Ordering::Relaxed);
                self.send_text(frames::invalid_session(false)).await
            }
        }
    }

    /// Writes every buffered frame not written yet (then RESUMED if owed), one flush.
    ///
    /// A connection that fell further behind than the replay buffer cannot catch up:
    /// it is closed with 4009 and its session ends (as a resume could not fill the
    /// gap either).
    async fn write_frames(&mut self) -> Result<(), End> {
        let Some(session) = self.live.as_ref().map(|live| Arc::clone(&live.session)) else {
            return Ok(());
        };
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        let next = self.live.as_ref().map_or(1, |live| live.next);
        if let Err(gap) = session.take_from(next, &mut batch) {
            self.batch = batch;
            return Err(match gap {
                Gap::Ended => End::Keep,
                Gap::Evicted | Gap::Future => {
                    tracing::info!(
                        connection = self.id,
                        shard = session.shard,
                        "connection fell behind its session"
                    );
                    self.close(4009, "session timed out").await;
                    End::EndSession
                }
            });
        }
        let Some(live) = &mut self.live else {
            return Ok(());
        };
        if let Some(last) = batch.last() {
            live.next = last.seq + 1;
        }
        if live.owes_resumed && live.next > live.replay_to {
            // RESUMED goes right after the replay, before anything newer.
            live.owes_resumed = false;
            let seq = live.replay_to;
            let at = batch.partition_point(|b| b.seq <= seq);
            let frame = frames::dispatch(EventKind::Resumed, seq, frames::RESUMED_D);
            batch.insert(
                at,
                Buffered {
                    seq,
                    kind: EventKind::Resumed,
                    id: 0,
                    logical: 0,
                    frame: Utf8Bytes::from(frame),
                },
            );
        }
        let replay_to = live.replay_to;
        let result = self.feed_all(&batch).await;
        if result.is_ok() && !batch.is_empty() {
            self.shared
                .record_sent(self.id, &session, &batch, replay_to);
        }
        // Keep the buffer for the next batch unless a burst made it large.
        batch.clear();
        if batch.capacity() <= 256 {
            self.batch = batch;
        }
        result
    }

    async fn feed_all(&mut self, batch: &[Buffered]) -> Result<(), End> {
        let (socket, encoder) = (&mut self.socket, &mut self.encoder);
        let mut bytes = 0;
        let write = async {
            for buffered in batch {
                let message = encoder.encode(&buffered.frame);
                bytes += wire_len(&message);
                socket.feed(message).await?;
            }
            socket.flush().await
        };
        let result = guarded(&self.shared.cancel, self.write_timeout, write).await;
        self.count_bytes(bytes);
        result
    }

    async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), End> {
        let message = self.encoder.encode(&text.into());
        let bytes = wire_len(&message);
        let write = self.socket.send(message);
        let result = guarded(&self.shared.cancel, self.write_timeout, write).await;
        self.count_bytes(bytes);
        result
    }

    fn count_bytes(&self, bytes: usize) {
        self.shared
            .counters
            .bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Sends a close frame; the caller hangs up. Fatal and new-session codes end the
    /// session.
    async fn close(&mut self, code: u16, reason: &'static str) -> End {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let write = self.socket.send(Message::Close(Some(frame)));
        let _ = guarded(&self.shared.cancel, self.write_timeout, write).await;
        if close_ends_session(code) {
            End::EndSession
        } else {
            End::Keep
        }
    }
}

/// Whether a session may identify with `count` shards: Discord's rule (at most
/// `max_guilds_per_shard` guilds on any shard), and a READY burst (READY and a
/// `GUILD_CREATE` per guild of the shard) that fits the replay buffer, which is also
/// the outbound queue: a count too small for it would only fail later as a client
/// too slow to read.
fn accepts_count(config: &crate::SimConfig, count: u32) -> bool {
    let per_shard = config.guilds.div_ceil(count.max(1)) as usize;
    count >= config.min_shards() && per_shard + 2 <= config.replay_capacity
}

/// Resolves when `session` has new frames; never without a session.
async fn wait_frames(session: Option<&Session>) {
    match session {
        Some(session) => session.notify.notified().await,
        None => std::future::pending().await,
    }
}

/// Payload bytes of a data message as it goes on the wire (after compression).
fn wire_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        _ => 0,
    }
}
