//! How queued envelopes become stream messages: one batch per shard session, in
//! receive order, within an event and a byte limit.

use std::collections::HashMap;

use shardmesh_proto::EventEnvelope;

/// An envelope on its way to the publisher, with the source its confirms count for.
#[derive(Debug)]
pub(crate) struct Pending {
    pub source: u32,
    pub envelope: EventEnvelope,
}

/// Envelopes of one publisher source (one shard session) bound for one message.
#[derive(Debug)]
pub(crate) struct Batch {
    pub source: u32,
    /// In receive order; never empty.
    pub events: Vec<EventEnvelope>,
    /// Their payloads' bytes.
    pub bytes: usize,
}

/// Splits `pending` (in queue order) into batches of one source each, listed in the
/// order of each batch's first envelope: a source's envelopes keep their order within
/// and across its batches, and a shard's old session comes before its new one. A batch
/// holds at most `max_events` envelopes and `max_bytes` payload bytes, except that an
/// envelope larger than `max_bytes` goes alone.
pub(crate) fn batches(
    pending: impl IntoIterator<Item = Pending>,
    max_events: usize,
    max_bytes: usize,
) -> Vec<Batch> {
    let mut batches: Vec<Batch> = Vec::new();
    // The batch still taking envelopes of each source, as an index into `batches`.
    let mut open: HashMap<u32, usize> = HashMap::new();
    for Pending { source, envelope } in pending {
        let bytes = envelope.payload.len();
        let index = match open.get(&source) {
            Some(&index)
                if batches[index].events.len() < max_events
                    && batches[index].bytes + bytes <= max_bytes =>
            {
                index
            }
            _ => {
                batches.push(Batch {
                    source,
                    events: Vec::new(),
                    bytes: 0,
                });
                open.insert(source, batches.len() - 1);
                batches.len() - 1
            }
        };
        let batch = &mut batches[index];
        batch.bytes += bytes;
        batch.events.push(envelope);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(source: u32, shard: u32, seq: u64, payload_bytes: usize) -> Pending {
        Pending {
            source,
            envelope: EventEnvelope {
                shard,
                shard_count: 4,
                epoch: 1,
                session: format!("session-{source}"),
                seq,
                event_type: "MESSAGE_CREATE".into(),
                guild_id: None,
                received_at_ms: 0,
                payload: "x".repeat(payload_bytes),
            },
        }
    }

    fn shape(batches: &[Batch]) -> Vec<(u32, Vec<u64>)> {
        batches
            .iter()
            .map(|batch| (batch.source, batch.events.iter().map(|e| e.seq).collect()))
            .collect()
    }

    #[test]
    fn interleaved_sources_become_one_batch_each_in_receive_order() {
        let queued = [
            pending(7, 0, 1, 10),
            pending(8, 1, 1, 10),
            pending(7, 0, 2, 10),
            pending(8, 1, 2, 10),
            pending(7, 0, 3, 10),
        ];
        let batches = batches(queued, 64, 1_024);
        assert_eq!(shape(&batches), [(7, vec![1, 2, 3]), (8, vec![1, 2])]);
        assert_eq!(batches[0].bytes, 30);
    }

    #[test]
    fn a_full_batch_is_followed_by_the_next_of_its_source() {
        let queued = (1..=5).map(|seq| pending(1, 0, seq, 10));
        assert_eq!(
            shape(&batches(queued, 2, 1_024)),
            [(1, vec![1, 2]), (1, vec![3, 4]), (1, vec![5])]
        );
        let queued = (1..=4).map(|seq| pending(1, 0, seq, 400));
        assert_eq!(
            shape(&batches(queued, 64, 1_000)),
            [(1, vec![1, 2]), (1, vec![3, 4])]
        );
    }

    #[test]
    fn an_oversized_event_goes_alone() {
        let queued = [
            pending(1, 0, 1, 10),
            pending(1, 0, 2, 5_000),
            pending(1, 0, 3, 10),
        ];
        assert_eq!(
            shape(&batches(queued, 64, 1_000)),
            [(1, vec![1]), (1, vec![2]), (1, vec![3])]
        );
    }

    #[test]
    fn a_new_session_of_a_shard_follows_its_old_one() {
        // Source 2 is shard 0's new session, after source 1's last events.
        let queued = [
            pending(1, 0, 41, 10),
            pending(3, 1, 9, 10),
            pending(1, 0, 42, 10),
            pending(2, 0, 1, 10),
            pending(3, 1, 10, 10),
            pending(2, 0, 2, 10),
        ];
        assert_eq!(
            shape(&batches(queued, 64, 1_024)),
            [(1, vec![41, 42]), (3, vec![9, 10]), (2, vec![1, 2])]
        );
    }
}
