//! One owned shard's task: a twilight shard read as raw frames, every dispatch queued
//! for publishing, READY and RESUMED tracked, and a hand-over that closes with RESUME
//! and reads to the close echo.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt as _, StreamExt as _};
use shardmesh_mesh::LeaseGuard;
use shardmesh_proto::EventEnvelope;
use shardmesh_store::{Action, ClusterSpec, LeaseState, Store};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use twilight_gateway::error::{ReceiveMessageError, ReceiveMessageErrorType};
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Intents, Message, Session, Shard, ShardId, ShardState,
};

use crate::batching::Pending;
use crate::commands::CommandFeed;
use crate::frame::{self, OP_DISPATCH, OP_HEARTBEAT_ACK, OP_HELLO};
use crate::publish::PublishHandle;
use crate::status::{Counters, ShardPhase, ShardView};
use crate::{GatewayConfig, StoreQueue};

/// What every shard task of a node shares.
pub(crate) struct Context<S> {
    pub config: GatewayConfig,
    pub spec: ClusterSpec,
    pub node: String,
    pub store: Arc<S>,
    pub publish: PublishHandle,
    /// Stops every shard at once, without a hand-over.
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub counters: Counters,
    /// Where the shards' command queues are consumed.
    pub inbox: Arc<shardmesh_broker::CommandInbox>,
}

/// Why the holder stops a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Close with RESUME, read to the close echo, publish what came.
    HandOver,
    /// The lease is gone: stop at once.
    Lost,
}

/// An operator's request to reconnect a running shard in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reconnect {
    /// Close with RESUME: the new connection resumes the session, nothing is lost.
    Resume,
    /// Close with 1000: Discord ends the session, and the new connection IDENTIFYs.
    NewSession,
}

/// Why a shard stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    HandOver,
    Lost,
    Lapsed,
    Shutdown,
    Fatal,
    Ended,
    PublisherGone,
}

/// What woke a shard task up.
enum Woken {
    Reconnect(Reconnect),
    Shard(Option<Result<Message, ReceiveMessageError>>),
    Command(Option<shardmesh_broker::InboxItem>),
    /// A command permit is free again.
    Permit,
}

/// What reading one frame led to.
enum Step {
    Go,
    /// A HELLO: the connection was re-made (during a hand-over, the end of it).
    Hello,
    Exit(Exit),
}

/// Builds the twilight shard for `id`, resuming the session `saved` carries if any.
pub(crate) fn build<S: Store>(
    id: u32,
    context: &Context<S>,
    saved: &LeaseState,
) -> Shard<StoreQueue<S>> {
    let config = &context.config;
    let queue = StoreQueue::new(Arc::clone(&context.store), context.spec.max_concurrency);
    let mut builder = ConfigBuilder::new(
        config.token.expose().to_owned(),
        Intents::from_bits_retain(config.intents),
    )
    .queue(queue)
    // The shard's command feed keeps the rate budget (see `commands`).
    .ratelimit_messages(false);
    if let Some(url) = &config.gateway_url {
        builder = builder.proxy_url(url.clone());
    }
    if let LeaseState::Shard(session) = saved
        && !session.session_id.is_empty()
    {
        // With a session the shard sends RESUME after HELLO, never IDENTIFY.
        builder = builder.session(Session::new(session.seq, session.session_id.clone()));
        if !session.resume_url.is_empty() {
            builder = builder.resume_url(session.resume_url.clone());
        }
    }
    Shard::with_config(ShardId::new(id, context.spec.shard_count), builder.build())
}

/// The task of one owned shard.
pub(crate) struct ShardRunner<S: Store> {
    pub id: u32,
    pub shard: Shard<StoreQueue<S>>,
    pub guard: LeaseGuard,
    pub stop: watch::Receiver<Option<Stop>>,
    pub context: Arc<Context<S>>,
    pub view: Arc<Mutex<ShardView>>,
    /// Whether a session was known (from the lease or an earlier READY): a READY then
    /// means it was lost.
    pub had_session: bool,
    /// The shard's gateway commands on their way to Discord.
    pub commands: CommandFeed,
    /// Operators' reconnect requests (`shardmesh ctl restart-shard`).
    pub reconnect: mpsc::UnboundedReceiver<Reconnect>,
}

impl<S: Store> ShardRunner<S> {
    /// Reads the shard until told to stop, its lease lapses or Discord closes it for
    /// good; a hand-over then drains it. The shard is dropped on return, never polled
    /// again.
    pub(crate) async fn run(mut self) {
        let exit = self.read().await;
        tracing::debug!(shard = self.id, ?exit, "shard stopped reading");
        match exit {
            Exit::HandOver => {
                self.settle_commands().await;
                self.drain().await;
            }
            Exit::Lapsed => tracing::warn!(
                shard = self.id,
                epoch = self.guard.epoch(),
                "lease lapsed, shard stopped (self-fence)"
            ),
            Exit::PublisherGone => tracing::error!(
                shard = self.id,
                "publisher stopped, shard stopped; its session resumes from the last confirmed seq"
            ),
            Exit::Lost | Exit::Shutdown | Exit::Fatal | Exit::Ended => {}
        }
        {
            let mut view = self.view();
            if view.phase != ShardPhase::FatallyClosed {
                view.phase = ShardPhase::Stopped;
            }
        }
        self.commands.close().await;
    }

    async fn read(&mut self) -> Exit {
        loop {
            if let Some(exit) = self.send_command().await {
                return exit;
            }
            if let Some(counts) = self.commands.changed_counts() {
                self.view().commands = counts;
            }
            let permits = self.permits();
            let permit_wait = self.commands.permit_wait(permits);
            let active = self.shard.state() == ShardState::Active;
            let next = tokio::select! {
                biased;
                () = self.guard.lapsed() => return Exit::Lapsed,
                () = self.context.shutdown.cancelled() => return Exit::Shutdown,
                stop = self.stop.wait_for(Option::is_some) => {
                    let stop = stop.map(|stop| *stop);
                    return if matches!(stop, Ok(Some(Stop::HandOver))) {
                        Exit::HandOver
                    } else {
                        Exit::Lost
                    };
                }
                Some(reconnect) = self.reconnect.recv() => Woken::Reconnect(reconnect),
                item = self.commands.next_item(), if self.commands.wants_more() => Woken::Command(item),
                () = tokio::time::sleep(permit_wait.unwrap_or_default()), if permit_wait.is_some() => Woken::Permit,
                next = self.shard.next() => Woken::Shard(next),
            };
            let next = match next {
                Woken::Shard(next) => next,
                Woken::Command(item) => {
                    if let Some(not_sent) = self.commands.take(item, &self.context.counters) {
                        self.report(&not_sent);
                    }
                    continue;
                }
                Woken::Permit => continue,
                Woken::Reconnect(reconnect) => {
                    self.reconnect_now(reconnect).await;
                    continue;
                }
            };
            if let Some(exit) = self.on_next(next, active).await {
                return exit;
            }
        }
    }

    /// Handles what the shard returned; `active` says whether it was identified when
    /// polled, so a frame proves that a command queued before was written.
    async fn on_next(
        &mut self,
        next: Option<Result<Message, ReceiveMessageError>>,
        active: bool,
    ) -> Option<Exit> {
        match next {
            None => Some(Exit::Ended),
            Some(Err(error)) => {
                self.receive_error(&error);
                None
            }
            Some(Ok(Message::Close(frame))) => self.on_close(frame.as_ref()),
            Some(Ok(Message::Text(text))) => {
                if active {
                    self.commands.settle(&self.context.counters, unix_ms());
                }
                match self.on_text(text).await {
                    Step::Go | Step::Hello => None,
                    Step::Exit(exit) => Some(exit),
                }
            }
        }
    }

    /// The connection's free command permits, `None` while it is not identified (or
    /// no command waits, when they do not matter).
    fn permits(&mut self) -> Option<u8> {
        (self.commands.has_work() && self.shard.state() == ShardState::Active)
            .then(|| self.commands.permits())
    }

    /// Hands the commands that may go now to twilight, one at a time, polling the shard
    /// after each so that it is written before anything else happens to the connection.
    async fn send_command(&mut self) -> Option<Exit> {
        // As many as may go now: nothing else wakes the task for the next one.
        loop {
            let mut not_sent = Vec::new();
            let permits = self.permits();
            let payload = self.commands.next_to_send(
                permits,
                self.context.spec.shard_count,
                unix_ms(),
                &self.context.counters,
                &mut not_sent,
            );
            for entry in &not_sent {
                self.report(entry);
            }
            let payload = payload?;
            self.shard.send(payload);
            if let Some(next) = self.shard.next().now_or_never() {
                // A frame (twilight writes what is queued before it reads), or a close
                // that leaves the command queued in twilight for the next connection.
                if let Some(exit) = self.on_next(next, true).await {
                    return Some(exit);
                }
            } else {
                // Pending on the socket: the command went out, or is twilight's pending
                // write, which it finishes before it sends anything else (a close
                // included).
                self.commands.settle(&self.context.counters, unix_ms());
            }
            if self.commands.unsettled() {
                return None;
            }
        }
    }

    /// Before a hand-over closes the connection: reads until the command handed to
    /// twilight is known to be written, so the next owner does not send it again.
    async fn settle_commands(&mut self) {
        if !self.commands.unsettled() {
            return;
        }
        let deadline = Instant::now() + self.context.config.close_timeout();
        while self.commands.unsettled() {
            let active = self.shard.state() == ShardState::Active;
            let next = tokio::select! {
                biased;
                () = self.guard.lapsed() => return,
                () = self.context.shutdown.cancelled() => return,
                next = tokio::time::timeout_at(deadline, self.shard.next()) => next,
            };
            let Ok(next) = next else {
                tracing::warn!(
                    shard = self.id,
                    "a queued command was not written before the hand-over"
                );
                return;
            };
            if self.on_next(next, active).await.is_some() {
                return;
            }
        }
    }

    /// Closes the connection for twilight to open a new one on the next poll: with
    /// RESUME it resumes the session; with 1000 Discord ends it and the shard
    /// IDENTIFYs, which is then no lost session but the one asked for.
    async fn reconnect_now(&mut self, reconnect: Reconnect) {
        // A command handed to twilight must be written first, or the next connection
        // could not tell whether to send it again.
        self.settle_commands().await;
        let frame = match reconnect {
            Reconnect::Resume => {
                self.view().phase = ShardPhase::Resuming;
                CloseFrame::RESUME
            }
            Reconnect::NewSession => {
                {
                    let mut view = self.view();
                    view.session_id.clear();
                    view.resume_url.clear();
                    view.phase = ShardPhase::Connecting;
                }
                self.had_session = false;
                CloseFrame::NORMAL
            }
        };
        tracing::info!(shard = self.id, ?reconnect, "reconnecting on request");
        self.shard.close(frame);
    }

    fn report(&self, not_sent: &crate::commands::NotSent) {
        tracing::warn!(
            shard = self.id,
            command = %not_sent.command,
            reason = %not_sent.reason,
            "{}",
            not_sent.action
        );
        self.record(
            not_sent.action,
            format!("shard/{} command {}", self.id, not_sent.command),
            not_sent.reason.clone(),
        );
    }

    /// Closes with RESUME (Discord keeps the session) and reads until the close echo, a
    /// HELLO (the peer dropped without an echo and twilight reconnected) or the close
    /// timeout; everything read is queued for publishing.
    async fn drain(&mut self) {
        let state = self.shard.state();
        if !matches!(
            state,
            ShardState::Active | ShardState::Resuming | ShardState::Identifying
        ) {
            // Not connected: there is nothing to close, and polling would reconnect.
            tracing::debug!(shard = self.id, ?state, "handing over a disconnected shard");
            return;
        }
        self.view().phase = ShardPhase::Draining;
        self.shard.close(CloseFrame::RESUME);
        let deadline = Instant::now() + self.context.config.close_timeout();
        loop {
            let next = tokio::select! {
                biased;
                () = self.guard.lapsed() => {
                    tracing::warn!(shard = self.id, "lease lapsed during hand-over");
                    return;
                }
                () = self.context.shutdown.cancelled() => return,
                next = tokio::time::timeout_at(deadline, self.shard.next()) => next,
            };
            match next {
                Err(_) => {
                    tracing::warn!(
                        shard = self.id,
                        "no close echo in time, handing over what was received"
                    );
                    return;
                }
                Ok(None | Some(Ok(Message::Close(_)))) => return,
                Ok(Some(Err(error))) => self.receive_error(&error),
                Ok(Some(Ok(Message::Text(text)))) => match self.on_text(text).await {
                    Step::Go => {}
                    Step::Hello | Step::Exit(_) => return,
                },
            }
        }
    }

    async fn on_text(&mut self, text: String) -> Step {
        let Some(header) = frame::header(&text) else {
            self.malformed(&text, "no opcode");
            return Step::Go;
        };
        match header.op {
            OP_DISPATCH => {}
            OP_HELLO => {
                // A new connection: its command budget starts afresh.
                let heartbeat_ms = frame::heartbeat_interval(&text).unwrap_or(41_250);
                self.commands.new_connection(heartbeat_ms);
                return Step::Hello;
            }
            OP_HEARTBEAT_ACK => {
                self.view().latency = self.shard.latency().average();
                return Step::Go;
            }
            _ => return Step::Go,
        }
        let (Some(seq), Some(event_type)) = (header.seq, header.event_type) else {
            self.malformed(&text, "dispatch without seq or type");
            return Step::Go;
        };
        match event_type.as_ref() {
            // Not a session event: it carries the replay's last seq and is never
            // replayed itself, so it is not published.
            "RESUMED" => {
                Counters::bump(&self.context.counters.sessions_resumed);
                {
                    let mut view = self.view();
                    view.phase = ShardPhase::Active;
                    view.resumed_at = Some(std::time::Instant::now());
                    view.active_since_ms = Some(unix_ms());
                }
                tracing::info!(shard = self.id, seq, "session resumed");
                return Step::Go;
            }
            "READY" => self.on_ready(&text),
            _ => {}
        }
        let event_type = event_type.into_owned();
        let guild_id = frame::guild_id(&text, &event_type);
        let (session, source) = {
            let view = self.view();
            (view.session_id.clone(), view.source)
        };
        let envelope = EventEnvelope {
            shard: self.id,
            shard_count: self.context.spec.shard_count,
            epoch: self.guard.epoch(),
            session,
            seq,
            event_type,
            guild_id,
            received_at_ms: unix_ms(),
            payload: text,
        };
        self.queue(Pending { source, envelope }, seq).await
    }

    /// Hands an envelope to the publisher, waiting while its queue is full: the shard
    /// is not read meanwhile, which is the back-pressure to Discord.
    async fn queue(&mut self, pending: Pending, seq: u64) -> Step {
        let received_at_ms = pending.envelope.received_at_ms;
        let sent = tokio::select! {
            biased;
            () = self.guard.lapsed() => return Step::Exit(Exit::Lapsed),
            () = self.context.shutdown.cancelled() => return Step::Exit(Exit::Shutdown),
            // A hand-over lets the frame through; a lost lease does not wait for room.
            _ = self.stop.wait_for(|stop| *stop == Some(Stop::Lost)) => {
                return Step::Exit(Exit::Lost);
            }
            sent = self.context.publish.send(pending) => sent,
        };
        if sent.is_err() {
            return Step::Exit(Exit::PublisherGone);
        }
        {
            let mut view = self.view();
            view.queued_seq = Some(seq);
            view.last_event_at_ms = Some(received_at_ms);
        }
        Counters::bump(&self.context.counters.events_queued);
        Step::Go
    }

    /// A new session: track it under a fresh publisher source, and record a lost one.
    fn on_ready(&mut self, text: &str) {
        let ready = frame::ready(text).unwrap_or_else(|| {
            tracing::error!(
                shard = self.id,
                "READY without session_id or resume_gateway_url"
            );
            frame::Ready {
                session_id: self
                    .shard
                    .session()
                    .map(|session| session.id().to_owned())
                    .unwrap_or_default(),
                resume_url: self.shard.resume_url().unwrap_or_default().to_owned(),
            }
        });
        Counters::bump(&self.context.counters.sessions_started);
        let publish = &self.context.publish;
        let source = publish.new_source();
        let old_session = {
            let mut view = self.view();
            publish.watermarks().forget(view.source);
            view.resume_url = ready.resume_url;
            view.source = source;
            view.base_seq = 0;
            view.queued_seq = None;
            view.phase = ShardPhase::Active;
            view.active_since_ms = Some(unix_ms());
            std::mem::replace(&mut view.session_id, ready.session_id.clone())
        };
        if !std::mem::replace(&mut self.had_session, true) {
            tracing::info!(shard = self.id, session = %ready.session_id, "session started");
            return;
        }
        Counters::bump(&self.context.counters.sessions_lost);
        tracing::warn!(
            shard = self.id,
            old_session = %old_session,
            session = %ready.session_id,
            "READY where a RESUME was expected: session lost, events after its last saved seq are gone"
        );
        self.record(
            "session_lost",
            format!("shard/{} session {old_session}", self.id),
            format!("new session {}", ready.session_id),
        );
    }

    /// Returns the exit if the close ends the shard: Discord closed it for good.
    fn on_close(&mut self, frame: Option<&CloseFrame<'static>>) -> Option<Exit> {
        let code = frame.map(|frame| frame.code);
        let reason = frame.map(|frame| frame.reason.to_string());
        if self.shard.state() != ShardState::FatallyClosed {
            tracing::info!(
                shard = self.id,
                ?code,
                ?reason,
                "gateway connection closed, reconnecting"
            );
            let mut view = self.view();
            view.phase = if view.session_id.is_empty() {
                ShardPhase::Connecting
            } else {
                ShardPhase::Resuming
            };
            return None;
        }
        Counters::bump(&self.context.counters.fatal_closes);
        self.view().phase = ShardPhase::FatallyClosed;
        tracing::error!(
            shard = self.id,
            ?code,
            ?reason,
            "Discord closed the shard for good (token or intents?); it will not reconnect"
        );
        self.record(
            "shard_fatal",
            format!("shard/{}", self.id),
            format!(
                "close code {}: {}",
                code.map_or_else(|| "none".to_owned(), |code| code.to_string()),
                reason.unwrap_or_default()
            ),
        );
        Some(Exit::Fatal)
    }

    fn receive_error(&self, error: &ReceiveMessageError) {
        if let ReceiveMessageErrorType::Deserializing { event } = error.kind() {
            self.malformed(event, "twilight could not read it");
        } else {
            tracing::warn!(shard = self.id, %error, "gateway receive error, the shard retries");
        }
    }

    fn malformed(&self, text: &str, why: &str) {
        Counters::bump(&self.context.counters.malformed_frames);
        let end = (0..=text.len().min(200))
            .rev()
            .find(|&end| text.is_char_boundary(end))
            .unwrap_or(0);
        tracing::warn!(
            shard = self.id,
            why,
            frame = &text[..end],
            "malformed frame skipped"
        );
    }

    /// Appends to the action log without holding up the shard.
    fn record(&self, action: &str, args: String, result: String) {
        let entry = Action {
            actor: self.context.node.clone(),
            action: action.to_owned(),
            args,
            result,
            at: SystemTime::now(),
        };
        let store = Arc::clone(&self.context.store);
        self.context.tracker.spawn(async move {
            if let Err(error) = store.log_action(&entry).await {
                tracing::warn!(%error, action = entry.action, "action log entry not written");
            }
        });
    }

    fn view(&self) -> MutexGuard<'_, ShardView> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
