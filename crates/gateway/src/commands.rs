//! A shard's gateway commands: taken from its command queue, written to Discord one at
//! a time within the connection's rate budget (the last permits kept for voice state
//! updates), and
//! acknowledged only once written.
//!
//! twilight gives no signal when a queued command has gone out, so a command counts as
//! written when the shard, polled while identified and with a permit free, either
//! spent a permit on it or returned a frame (twilight writes what is queued before it
//! reads). A hand-over waits for that before it closes; a command still unsettled when
//! the shard stops otherwise goes back to the queue and may be sent twice: at most one
//! per shard.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use shardmesh_broker::{CommandDelivery, InboxItem, ShardCommands, Ticket};
use shardmesh_proto::{
    CommandEnvelope, GATEWAY_COMMAND_OPS, MAX_COMMAND_BYTES, OP_VOICE_STATE_UPDATE,
};

use crate::status::Counters;

/// Commands taken from the queue ahead of sending: the broker's prefetch per shard.
pub(crate) const WINDOW: u16 = 32;

/// Permits left unused per connection on top of twilight's heartbeat reserve.
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

/// The command handed to twilight and not yet known to be written.
struct Fed {
    command: CommandEnvelope,
    ticket: Ticket,
    permits_before: u8,
}

/// One shard's commands between its queue and its connection.
pub(crate) struct CommandFeed {
    inbox: Option<ShardCommands>,
    backlog: VecDeque<(CommandEnvelope, Ticket)>,
    fed: Option<Fed>,
    written: HashSet<String>,
    written_order: VecDeque<String>,
}

impl CommandFeed {
    pub(crate) fn new(inbox: ShardCommands) -> Self {
        Self {
            inbox: Some(inbox),
            ..Self::closed()
        }
    }

    /// A feed with no queue behind it: what a stopped shard keeps.
    pub(crate) fn closed() -> Self {
        Self {
            inbox: None,
            backlog: VecDeque::new(),
            fed: None,
            written: HashSet::new(),
            written_order: VecDeque::new(),
        }
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
            command, ticket, ..
        } = delivery;
        let command = match command {
            Ok(command) => command,
            Err(error) => {
                self.ack(ticket);
                Counters::bump(&counters.commands_rejected);
                return Some(NotSent {
                    action: "command_rejected",
                    command: "undecodable".into(),
                    reason: error.to_string(),
                });
            }
        };
        if self.written.contains(&command.id) {
            // A copy of one already written (a confirm the sender lost, or an
            // acknowledgement the broker lost): drop it.
            self.ack(ticket);
            return None;
        }
        if let Some(fed) = &mut self.fed
            && fed.command.id == command.id
        {
            // The fed one came again on a new channel: acknowledge this copy instead.
            fed.ticket = ticket;
            return None;
        }
        self.backlog.push_back((command, ticket));
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
        while let Some((command, ticket)) = self.pick(permits) {
            if let Some(reason) = refusal(&command, shard_count) {
                self.ack(ticket);
                Counters::bump(&counters.commands_rejected);
                not_sent.push(NotSent {
                    action: "command_rejected",
                    command: command.id,
                    reason,
                });
                continue;
            }
            if command.is_expired(now_ms) {
                self.ack(ticket);
                Counters::bump(&counters.commands_expired);
                not_sent.push(NotSent {
                    action: "command_expired",
                    reason: format!(
                        "expired {} ms before it could be sent",
                        now_ms.saturating_sub(command.expires_at_ms.unwrap_or(now_ms))
                    ),
                    command: command.id,
                });
                continue;
            }
            let payload = command.payload.clone();
            self.fed = Some(Fed {
                command,
                ticket,
                permits_before: permits,
            });
            return Some(payload);
        }
        None
    }

    /// Whether the shard spent a permit since the fed command was handed to it.
    pub(crate) fn spent_permit(&self, permits: Option<u8>) -> bool {
        matches!((&self.fed, permits), (Some(fed), Some(now)) if now < fed.permits_before)
    }

    /// The fed command was written: acknowledge it and remember its id.
    pub(crate) fn settle(&mut self, counters: &Counters) {
        let Some(fed) = self.fed.take() else {
            return;
        };
        self.ack(fed.ticket);
        Counters::bump(&counters.commands_sent);
        tracing::debug!(id = %fed.command.id, shard = fed.command.shard, op = fed.command.op, "command sent");
        if self.written_order.len() == REMEMBERED
            && let Some(oldest) = self.written_order.pop_front()
        {
            self.written.remove(&oldest);
        }
        self.written.insert(fed.command.id.clone());
        self.written_order.push_back(fed.command.id);
    }

    /// Whether a command was handed to twilight and is not known to be written.
    pub(crate) fn unsettled(&self) -> bool {
        self.fed.is_some()
    }

    /// How long to wait before commands that wait only for a permit may go.
    pub(crate) fn permit_wait(
        &self,
        permits: Option<u8>,
        next_permit: Duration,
    ) -> Option<Duration> {
        let permits = permits?;
        (self.fed.is_none() && !self.backlog.is_empty() && self.choose(permits).is_none())
            .then(|| next_permit.max(Duration::from_millis(5)))
    }

    /// Ends the subscription: what was written is acknowledged, the rest goes back to
    /// the queue in order.
    pub(crate) async fn close(mut self) {
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
    fn pick(&mut self, permits: u8) -> Option<(CommandEnvelope, Ticket)> {
        let index = self.choose(permits)?;
        self.backlog.remove(index)
    }

    /// The command that may go with `permits` left: the oldest while the budget is
    /// ample, only the oldest voice state update within the voice reserve, nothing
    /// within the headroom. Each kind stays in order; voice updates overtake others
    /// only when the budget runs low.
    fn choose(&self, permits: u8) -> Option<usize> {
        if permits <= HEADROOM {
            return None;
        }
        if permits > HEADROOM + VOICE_RESERVE {
            return (!self.backlog.is_empty()).then_some(0);
        }
        self.backlog
            .iter()
            .position(|(command, _)| command.op == OP_VOICE_STATE_UPDATE)
    }

    fn ack(&self, ticket: Ticket) {
        if let Some(inbox) = &self.inbox {
            inbox.ack(ticket);
        }
    }
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
