//! Ground truth: every dispatch frame the simulator wrote to a client, in order.
//!
//! "Sent" means handed to a connection's WebSocket (flushed with its batch). A RESUME
//! replay writes the same `(session, seq, id)` again: it is a new record with
//! `replay: true`. RESUMED is recorded too (kind `RESUMED`, id 0, the seq it carried),
//! so a client's received dispatches equal the records of its connections, one for one.
//!
//! While sessions of several shard counts are live (a bot re-sharding), one generated
//! event is sent once to the matching session of each count, with that session's own
//! seq: every copy is its own record, and they share [`DispatchRecord::logical`], so a
//! test counts each logical event once.
//!
//! A second log keeps every gateway command a client sent (ops 3, 4, 8, 31, 43) as
//! [`CommandRecord`]s, so a test can prove a command arrived exactly once.

use std::collections::VecDeque;

use serde::Serialize;

use crate::traffic::EventKind;

/// One dispatch frame written to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DispatchRecord {
    /// Position in the log; the `since` cursor for later queries is the last one + 1.
    pub cursor: u64,
    /// The shard of the session.
    pub shard: u32,
    /// The shard count the session identified with (`shard: [shard, shard_count]`):
    /// which set of sessions this copy went to.
    pub shard_count: u32,
    /// The session, as its `session_id` string on the wire.
    #[serde(rename = "session", serialize_with = "crate::string_ids::one")]
    pub session: SessionId,
    /// The connection it was written to (numbered from 1 in accept order).
    pub connection: u64,
    /// The frame's `s`.
    pub seq: u64,
    /// The frame's `t`.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The dispatch's unique id (0 for RESUMED); [`EventKind::id_field`] says where it
    /// is in `d`. A snowflake, so a string in JSON, as in the payload.
    #[serde(serialize_with = "crate::string_ids::one")]
    pub id: u64,
    /// The logical event this frame is a copy of, numbered from 1: the same for the
    /// copies of one generated or REST-created event sent to the sessions of different
    /// shard counts, and for RESUME replays of them. An event of one session alone
    /// (READY, each `GUILD_CREATE`, a command's answer) has a logical id of its own;
    /// RESUMED has 0.
    pub logical: u64,
    /// Whether this is a RESUME replay of a dispatch sent before.
    pub replay: bool,
    /// When its batch was written to the connection, Unix microseconds: the start of
    /// an end-to-end latency measurement.
    pub sent_at_us: u64,
}

/// A session's identity; [`SessionId`]'s `Display` is the `session_id` Discord sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(crate) u64);

impl SessionId {
    const MARK: u64 = 0x5348_4152_444d_5348;

    /// Parses a wire `session_id` back; `None` if the simulator never made it.
    pub fn parse(wire: &str) -> Option<Self> {
        if wire.len() != 32 || wire[..16] != format!("{:016x}", Self::MARK) {
            return None;
        }
        u64::from_str_radix(&wire[16..], 16).ok().map(Self)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}{:016x}", Self::MARK, self.0)
    }
}

/// One gateway command a client sent on an authenticated connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommandRecord {
    /// Position in the command log; the `since` cursor for later queries is the last
    /// one + 1.
    pub cursor: u64,
    /// The shard of the session it was sent on.
    pub shard: u32,
    /// The session, as its `session_id` string on the wire.
    #[serde(serialize_with = "crate::string_ids::one")]
    pub session: SessionId,
    /// The connection it arrived on.
    pub connection: u64,
    /// The payload's `op`.
    pub op: u64,
    /// The payload's `d`, as sent (`null` when absent).
    pub payload: serde_json::Value,
    /// When it was read, Unix microseconds.
    pub received_at_us: u64,
}

/// A record a [`TruthLog`] can keep: it carries its own cursor.
pub(crate) trait Logged: Clone {
    fn cursor(&self) -> u64;
    fn set_cursor(&mut self, cursor: u64);
}

impl Logged for DispatchRecord {
    fn cursor(&self) -> u64 {
        self.cursor
    }
    fn set_cursor(&mut self, cursor: u64) {
        self.cursor = cursor;
    }
}

impl Logged for CommandRecord {
    fn cursor(&self) -> u64 {
        self.cursor
    }
    fn set_cursor(&mut self, cursor: u64) {
        self.cursor = cursor;
    }
}

/// Unix microseconds now (0 before 1970, saturating far after).
pub(crate) fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// The records kept, oldest first, bounded by a capacity.
#[derive(Debug)]
pub(crate) struct TruthLog<R = DispatchRecord> {
    records: VecDeque<R>,
    capacity: usize,
    /// Cursor the next record gets.
    next: u64,
}

/// A page of a log: of dispatches by default, of commands as [`CommandPage`].
#[derive(Clone, Debug, Serialize)]
pub struct LogPage<R = DispatchRecord> {
    /// The records from `since` on (at most the limit asked for).
    pub records: Vec<R>,
    /// Pass this as `since` to read on.
    pub next: u64,
    /// Records between `since` and the first one returned that were dropped (capacity).
    pub dropped: u64,
}

/// A page of the command log.
pub type CommandPage = LogPage<CommandRecord>;

impl<R: Logged> TruthLog<R> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::with_capacity(capacity.min(65_536)),
            capacity,
            next: 0,
        }
    }

    /// Appends a record, filling in its cursor.
    pub(crate) fn push(&mut self, mut record: R) {
        record.set_cursor(self.next);
        self.next += 1;
        if self.capacity == 0 {
            return;
        }
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// The cursor the next record will get.
    pub(crate) fn next_cursor(&self) -> u64 {
        self.next
    }

    /// Records with `cursor >= since`, at most `limit`.
    pub(crate) fn since(&self, since: u64, limit: usize) -> LogPage<R> {
        let first = self.next - self.records.len() as u64;
        let start = since.max(first);
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        let records: Vec<R> = self
            .records
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        let next = records
            .last()
            .map_or(start.max(since).min(self.next), |r| r.cursor() + 1);
        LogPage {
            records,
            next,
            dropped: start.saturating_sub(since),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> DispatchRecord {
        DispatchRecord {
            cursor: 0,
            shard: 0,
            shard_count: 1,
            session: SessionId(1),
            connection: 1,
            seq,
            kind: EventKind::MessageCreate,
            id: seq * 10,
            logical: seq,
            replay: false,
            sent_at_us: 0,
        }
    }

    #[test]
    fn pages_follow_the_cursor() {
        let mut log = TruthLog::new(100);
        for seq in 1..=10 {
            log.push(record(seq));
        }
        let page = log.since(0, 4);
        assert_eq!(
            page.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(page.next, 4);
        let page = log.since(page.next, 100);
        assert_eq!(page.records.len(), 6);
        assert_eq!(page.next, 10);
        let page = log.since(10, 100);
        assert!(page.records.is_empty());
        assert_eq!(page.next, 10);
    }

    #[test]
    fn capacity_drops_the_oldest_and_says_so() {
        let mut log = TruthLog::new(3);
        for seq in 1..=5 {
            log.push(record(seq));
        }
        let page = log.since(0, 100);
        assert_eq!(
            page.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(page.dropped, 2);
        assert_eq!(page.next, 5);
    }

    #[test]
    fn session_ids_round_trip() {
        let id = SessionId(0xabc);
        let wire = id.to_string();
        assert_eq!(wire.len(), 32);
        assert_eq!(SessionId::parse(&wire), Some(id));
        assert_eq!(SessionId::parse("0123"), None);
        assert_eq!(SessionId::parse(&wire.replace('5', "6")), None);
    }

    #[test]
    fn command_records_page_like_dispatches() {
        let mut log = TruthLog::<CommandRecord>::new(10);
        for op in [3, 8, 31] {
            log.push(CommandRecord {
                cursor: 99,
                shard: 0,
                session: SessionId(2),
                connection: 1,
                op,
                payload: serde_json::json!({"guild_id": "1"}),
                received_at_us: 0,
            });
        }
        let page = log.since(1, 10);
        assert_eq!(
            page.records.iter().map(|r| r.op).collect::<Vec<_>>(),
            [8, 31]
        );
        assert_eq!(page.records[0].cursor, 1);
        let json = serde_json::to_value(&page.records[0]).unwrap();
        assert_eq!(json["session"], SessionId(2).to_string());
        assert_eq!(json["payload"]["guild_id"], "1");
    }

    #[test]
    fn records_serialize_with_wire_names_and_the_id_as_a_string() {
        let snowflake = 1_234_567_890_123_456_789; // above 2^53, as every snowflake
        let json = serde_json::to_value(DispatchRecord {
            id: snowflake,
            ..record(3)
        })
        .unwrap();
        assert_eq!(json["type"], "MESSAGE_CREATE");
        assert_eq!(json["session"], SessionId(1).to_string());
        assert_eq!(json["seq"], 3);
        assert_eq!(json["id"], "1234567890123456789");
        assert_eq!(json["shard_count"], 1);
        assert_eq!(json["logical"], 3);
    }
}
