//! A shard's gateway commands: taken from its command queue, written to Discord one at
//! a time within the connection's rate budget (the last permits kept for voice state
//! updates), and acknowledged only once written.
//!
//! The budget is this feed's own: a sliding log of what the connection sent in the
//! last [`WINDOW_LENGTH`] against Discord's 120, less the heartbeats the HELLO's
//! interval implies, the IDENTIFY or RESUME, and two spare. twilight's own limiter is
//! off: it can hold a command in its channel while its count says permits are free,
//! which would make "written" unknowable, and it assumes Discord's heartbeat interval.
//!
//! twilight gives no signal when a queued command has gone out. A command is handed to
//! it only while the shard is identified and has permits to spare, and the shard is
//! polled at once: twilight writes what is queued before it reads the socket, so a
//! poll that waits for the socket, or returns a frame, means the command is written
//! (or is twilight's pending write, which it finishes before anything else, a close
//! included). A poll that ends in a close leaves the command queued in twilight for
//! the next connection; it settles with the next frame, and a hand-over waits for that
//! before it closes. A command still unsettled when the shard stops otherwise goes back
//! to the queue and may be sent twice: at most one per shard.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use shardmesh_broker::{CommandDelivery, InboxItem, ShardCommands, Ticket};
use shardmesh_proto::{
    CommandEnvelope, CommandOutcome, CommandStatus, GATEWAY_COMMAND_OPS, MAX_COMMAND_BYTES,
    OP_VOICE_STATE_UPDATE,
};

use crate::status::{Counters, ShardCommandCounts};

/// Commands taken from the queue ahead of sending: the broker's prefetch per shard.
pub(crate) const WINDOW: u16 = 32;

/// Permits left unused per connection window, on top of the heartbeats' and the
/// IDENTIFY's.
const HEADROOM: u8 = 2;

/// The last permits of a connection's budget, kept for voice state updates: a bot
/// joining a voice channel does not wait behind a burst of presence updates.
const VOICE_RESERVE: u8 = 10;

/// How many written command ids a shard remembers to drop a redelivered copy.
const REMEMBERED: usize = 1_024;

/// What became of a command that was not sent, for the action log.
pub(crate) struct NotSent {
    pub action: &'static str,
    pub command: String,
    pub reason: String,
}

/// A command taken from the queue: what to send, how to acknowledge it, and where its
/// sender waits for the outcome, if it does.
struct Taken {
    command: CommandEnvelope,
    ticket: Ticket,
    reply_to: Option<String>,
}

/// One shard's commands between its queue and its connection.
pub(crate) struct CommandFeed {
    inbox: Option<ShardCommands>,
    node: String,
    backlog: VecDeque<Taken>,
    /// The command handed to twilight and not yet known to be written.
    fed: Option<Taken>,
    written: HashSet<String>,
    written_order: VecDeque<String>,
    /// When this connection's commands went out in the last [`WINDOW_LENGTH`], oldest
    /// first: a sliding log, so no 60 s span holds more than the budget.
    sent_at: VecDeque<Instant>,
    /// Commands this connection may send per [`WINDOW_LENGTH`].
    budget: u8,
    /// What became of the shard's commands here (`held` is filled in when read).
    counts: ShardCommandCounts,
    /// The counts last handed out by [`CommandFeed::changed_counts`].
    published: ShardCommandCounts,
}

/// Discord's rate window of 60 s, and a second for the time a payload takes to reach
/// Discord: a permit is reused only once Discord surely no longer counts the send that
/// held it.
const WINDOW_LENGTH: Duration = Duration::from_secs(61);

impl CommandFeed {
    /// The feed of a shard on node `node` (named in the outcomes) from `inbox`.
    pub(crate) fn new(inbox: ShardCommands, node: &str) -> Self {
        Self {
            inbox: Some(inbox),
            node: node.to_owned(),
            backlog: VecDeque::new(),
            fed: None,
            written: HashSet::new(),
            written_order: VecDeque::new(),
            sent_at: VecDeque::new(),
            budget: 0,
            counts: ShardCommandCounts::default(),
            published: ShardCommandCounts::default(),
        }
    }

    /// The shard's command counts, if they changed since the last call: the shard task
    /// copies them into its status only then.
    pub(crate) fn changed_counts(&mut self) -> Option<ShardCommandCounts> {
        let held = self.backlog.len() + usize::from(self.fed.is_some());
        let now = ShardCommandCounts {
            held: u32::try_from(held).unwrap_or(u32::MAX),
            ..self.counts
        };
        (now != self.published).then(|| {
            self.published = now;
            now
        })
    }

    /// Whether a command waits to be sent or settled: only then do permits matter.
    pub(crate) fn has_work(&self) -> bool {
        self.fed.is_some() || !self.backlog.is_empty()
    }

    /// Counts a command done with, on the node and for the shard.
    fn count(&mut self, counters: &Counters, status: CommandStatus) {
        let (node, shard) = match status {
            CommandStatus::Sent => (&counters.commands_sent, &mut self.counts.sent),
            CommandStatus::Expired => (&counters.commands_expired, &mut self.counts.expired),
            CommandStatus::Rejected => (&counters.commands_rejected, &mut self.counts.rejected),
        };
        Counters::bump(node);
        *shard += 1;
    }

    /// A new connection (its HELLO asked for heartbeats every `heartbeat_ms`): Discord
    /// counts its budget afresh.
    pub(crate) fn new_connection(&mut self, heartbeat_ms: u64) {
        self.sent_at.clear();
        self.budget = budget(heartbeat_ms);
    }

    /// The command permits this connection has free now.
    pub(crate) fn permits(&mut self) -> u8 {
        let now = Instant::now();
        while self
            .sent_at
            .front()
            .is_some_and(|at| now.duration_since(*at) >= WINDOW_LENGTH)
        {
            self.sent_at.pop_front();
        }
        let free = usize::from(self.budget).saturating_sub(self.sent_at.len());
        u8::try_from(free).unwrap_or(u8::MAX)
    }

    /// Whether the shard task should take the next item from the queue.
    pub(crate) fn wants_more(&self) -> bool {
        self.inbox.is_some() && self.backlog.len() < usize::from(WINDOW)
    }

    /// The next item of the shard's queue; pending forever once the queue is closed.
    ///
    /// Cancel safe.
    pub(crate) async fn next_item(&mut self) -> Option<InboxItem> {
        match &mut self.inbox {
            Some(inbox) => inbox.next().await,
            None => std::future::pending().await,
        }
    }

    /// Takes what the queue delivered.
    pub(crate) fn take(&mut self, item: Option<InboxItem>, counters: &Counters) -> Option<NotSent> {
        let delivery = match item {
            None => {
                // Shutdown: the subscription has ended.
                self.inbox = None;
                return None;
            }
            Some(InboxItem::Restarted) => {
                // Everything unacknowledged comes again, in order.
                self.backlog.clear();
                return None;
            }
            Some(InboxItem::Command(delivery)) => delivery,
        };
        let CommandDelivery {
            command,
            ticket,
            reply_to,
            ..
        } = delivery;
        let command = match command {
            Ok(command) => command,
            Err(error) => {
                self.ack(ticket);
                self.count(counters, CommandStatus::Rejected);
                return Some(NotSent {
                    action: "command_rejected",
                    command: "undecodable".into(),
                    reason: error.to_string(),
                });
            }
        };
        let taken = Taken {
            command,
            ticket,
            reply_to,
        };
        if self.written.contains(&taken.command.id)
            || self
                .backlog
                .iter()
                .any(|queued| queued.command.id == taken.command.id)
        {
            // A copy of one already written or waiting (a confirm the sender lost, or an
            // acknowledgement the broker lost): drop it.
            self.ack(taken.ticket);
            return None;
        }
        if let Some(fed) = &mut self.fed
            && fed.command.id == taken.command.id
        {
            // The fed one came again on a new channel: acknowledge this copy instead.
            *fed = taken;
            return None;
        }
        self.backlog.push_back(taken);
        None
    }

    /// The payload to write now, if a command waits, none is unsettled and the
    /// connection has permits to spare; expired and unsendable commands met on the way
    /// are acknowledged and returned for reporting.
    pub(crate) fn next_to_send(
        &mut self,
        permits: Option<u8>,
        shard_count: u32,
        now_ms: u64,
        counters: &Counters,
        not_sent: &mut Vec<NotSent>,
    ) -> Option<String> {
        let permits = permits?;
        if self.fed.is_some() {
            return None;
        }
        while let Some(taken) = self.pick(permits) {
            let command = &taken.command;
            let (status, action, reason) = if let Some(reason) = refusal(command, shard_count) {
                (CommandStatus::Rejected, "command_rejected", reason)
            } else if command.is_expired(now_ms) {
                let late = now_ms.saturating_sub(command.expires_at_ms.unwrap_or(now_ms));
                let reason = format!("expired {late} ms before it could be sent");
                (CommandStatus::Expired, "command_expired", reason)
            } else {
                let payload = command.payload.clone();
                self.fed = Some(taken);
                return Some(payload);
            };
            self.count(counters, status);
            not_sent.push(NotSent {
                action,
                command: command.id.clone(),
                reason: reason.clone(),
            });
            self.done(taken, status, now_ms, reason);
        }
        None
    }

    /// The fed command was written: acknowledge it and remember its id.
    pub(crate) fn settle(&mut self, counters: &Counters, now_ms: u64) {
        let Some(fed) = self.fed.take() else {
            return;
        };
        let id = fed.command.id.clone();
        self.count(counters, CommandStatus::Sent);
        self.sent_at.push_back(Instant::now());
        tracing::debug!(%id, shard = fed.command.shard, op = fed.command.op, "command sent");
        self.done(fed, CommandStatus::Sent, now_ms, String::new());
        if self.written_order.len() == REMEMBERED
            && let Some(oldest) = self.written_order.pop_front()
        {
            self.written.remove(&oldest);
        }
        self.written.insert(id.clone());
        self.written_order.push_back(id);
    }

    /// Acknowledges a command done with, telling a waiting sender how it ended.
    fn done(&self, taken: Taken, status: CommandStatus, now_ms: u64, reason: String) {
        let Some(inbox) = &self.inbox else {
            return;
        };
        match taken.reply_to {
            Some(reply_to) => {
                let outcome =
                    CommandOutcome::new(&taken.command, status, &self.node, now_ms, reason);
                inbox.ack_with_outcome(taken.ticket, reply_to, &outcome);
            }
            None => inbox.ack(taken.ticket),
        }
    }

    /// Whether a command was handed to twilight and is not known to be written.
    pub(crate) fn unsettled(&self) -> bool {
        self.fed.is_some()
    }

    /// How long to wait before commands that wait only for a permit may go.
    pub(crate) fn permit_wait(&self, permits: Option<u8>) -> Option<Duration> {
        let permits = permits?;
        if self.fed.is_some() || self.backlog.is_empty() || self.choose(permits).is_some() {
            return None;
        }
        // The oldest send in the window frees the next permit.
        let next = self.sent_at.front().map_or(Duration::ZERO, |oldest| {
            (*oldest + WINDOW_LENGTH).saturating_duration_since(Instant::now())
        });
        Some(next.max(Duration::from_millis(1)))
    }

    /// Ends the subscription: what was written is acknowledged, the rest goes back to
    /// the queue in order. The feed takes nothing from the queue afterwards.
    pub(crate) async fn close(&mut self) {
        if let Some(fed) = &self.fed {
            tracing::warn!(
                id = %fed.command.id,
                shard = fed.command.shard,
                "a command handed to the connection may or may not have gone out; it goes back to the queue"
            );
        }
        if let Some(inbox) = self.inbox.take() {
            inbox.close().await;
        }
    }

    /// Takes the command that may go with `permits` left; see [`CommandFeed::choose`].
    fn pick(&mut self, permits: u8) -> Option<Taken> {
        let index = self.choose(permits)?;
        self.backlog.remove(index)
    }

    /// The command that may go with `permits` left: the oldest while the budget is
    /// ample, only the oldest voice state update within the voice reserve. Each kind
    /// stays in order; voice updates overtake others only when the budget runs low.
    fn choose(&self, permits: u8) -> Option<usize> {
        if permits == 0 {
            return None;
        }
        if permits > VOICE_RESERVE {
            return (!self.backlog.is_empty()).then_some(0);
        }
        self.backlog
            .iter()
            .position(|queued| queued.command.op == OP_VOICE_STATE_UPDATE)
    }

    fn ack(&self, ticket: Ticket) {
        if let Some(inbox) = &self.inbox {
            inbox.ack(ticket);
        }
    }
}

/// Commands a connection may send per 60 s when Discord heartbeats every
/// `heartbeat_ms`: Discord's 120, less the heartbeats (one more, for a heartbeat
/// Discord asks for), the IDENTIFY or RESUME, and [`HEADROOM`].
fn budget(heartbeat_ms: u64) -> u8 {
    const LIMIT: u64 = 120;
    // At most floor(window / interval) + 1 of them fall in a window, and Discord may
    // ask for one more.
    let heartbeats = WINDOW_LENGTH.as_secs() * 1_000 / heartbeat_ms.max(1) + 2;
    let budget = LIMIT.saturating_sub(heartbeats + 1 + u64::from(HEADROOM));
    u8::try_from(budget).unwrap_or(0)
}

/// Why a command must not go to Discord, if it must not.
fn refusal(command: &CommandEnvelope, shard_count: u32) -> Option<String> {
    if command.shard_count != shard_count {
        return Some(format!(
            "addressed with shard count {}, the cluster runs {shard_count}",
            command.shard_count
        ));
    }
    if !GATEWAY_COMMAND_OPS.contains(&command.op) {
        return Some(format!(
            "op {} is not a gateway command a bot may send",
            command.op
        ));
    }
    if command.payload.len() > MAX_COMMAND_BYTES {
        return Some(format!(
            "payload of {} bytes is over Discord's {MAX_COMMAND_BYTES}",
            command.payload.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_room_for_heartbeats_and_the_identify() {
        // Discord's 41.25 s: 2 heartbeats at most in 60 s, one more asked for, the
        // IDENTIFY, two spare.
        assert_eq!(budget(41_250), 114);
        // A 1 s heartbeat (the tests' simulator) leaves half the window.
        assert_eq!(budget(1_000), 54);
        assert_eq!(budget(100), 0);
    }
}
