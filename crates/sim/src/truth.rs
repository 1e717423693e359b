//! Ground truth: every dispatch frame the simulator wrote to a client, in order.
//!
//! "Sent" means handed to a connection's WebSocket (flushed with its batch). A RESUME
//! replay writes the same `(session, seq, id)` again: it is a new record with
//! `replay: true`. RESUMED is recorded too (kind `RESUMED`, id 0, the seq it carried),
//! so a client's received dispatches equal the records of its connections, one for one.

use std::collections::VecDeque;

use serde::{Serialize, Serializer};

use crate::traffic::EventKind;

/// One dispatch frame written to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DispatchRecord {
    /// Position in the log; the `since` cursor for later queries is the last one + 1.
    pub cursor: u64,
    /// The shard of the session.
    pub shard: u32,
    /// The session, as its `session_id` string on the wire.
    #[serde(rename = "session", serialize_with = "serialize_session")]
    pub session: SessionId,
    /// The connection it was written to (numbered from 1 in accept order).
    pub connection: u64,
    /// The frame's `s`.
    pub seq: u64,
    /// The frame's `t`.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The dispatch's unique id (0 for RESUMED); [`EventKind::id_field`] says where it
    /// is in `d`.
    pub id: u64,
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

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` passes a reference
fn serialize_session<S: Serializer>(session: &SessionId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(session)
}

/// The records kept, oldest first, bounded by a capacity.
#[derive(Debug)]
pub(crate) struct TruthLog {
    records: VecDeque<DispatchRecord>,
    capacity: usize,
    /// Cursor the next record gets.
    next: u64,
}

/// A page of the log.
#[derive(Clone, Debug, Serialize)]
pub struct LogPage {
    /// The records from `since` on (at most the limit asked for).
    pub records: Vec<DispatchRecord>,
    /// Pass this as `since` to read on.
    pub next: u64,
    /// Records between `since` and the first one returned that were dropped (capacity).
    pub dropped: u64,
}

impl TruthLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::with_capacity(capacity.min(65_536)),
            capacity,
            next: 0,
        }
    }

    /// Appends a record, filling in its cursor.
    pub(crate) fn push(&mut self, mut record: DispatchRecord) {
        record.cursor = self.next;
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
    pub(crate) fn since(&self, since: u64, limit: usize) -> LogPage {
        let first = self.next - self.records.len() as u64;
        let start = since.max(first);
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        let records: Vec<DispatchRecord> = self
            .records
            .iter()
            .skip(skip)
            .take(limit)
            .copied()
            .collect();
        let next = records
            .last()
            .map_or(start.max(since).min(self.next), |r| r.cursor + 1);
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
            session: SessionId(1),
            connection: 1,
            seq,
            kind: EventKind::MessageCreate,
            id: seq * 10,
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
    fn records_serialize_with_wire_names() {
        let json = serde_json::to_value(record(3)).unwrap();
        assert_eq!(json["type"], "MESSAGE_CREATE");
        assert_eq!(json["session"], SessionId(1).to_string());
        assert_eq!(json["seq"], 3);
    }
}
