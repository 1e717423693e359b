//! Event envelopes and the batches published to the event streams.

use serde::{Deserialize, Serialize};

use crate::{WIRE_VERSION, WireMessage};

/// One Discord dispatch as a gateway node received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// The shard that received the dispatch.
    pub shard: u32,
    /// The shard count the cluster runs with; with `shard`, what Discord calls `[id, count]`.
    pub shard_count: u32,
    /// Lease epoch of the publishing owner: lets consumers drop events from a stale owner.
    pub epoch: u64,
    /// Discord session id the dispatch belongs to.
    pub session: String,
    /// Discord sequence number within `session`.
    pub seq: u64,
    /// Dispatch name (`t`), e.g. `MESSAGE_CREATE`.
    pub event_type: String,
    /// `d.guild_id` when the dispatch has one, so consumers can route without parsing.
    pub guild_id: Option<u64>,
    /// When the gateway node read the frame, Unix milliseconds (for latency figures).
    pub received_at_ms: u64,
    /// The whole gateway frame exactly as Discord sent it (`{"t":..,"s":..,"op":0,"d":..}`).
    pub payload: String,
}

impl EventEnvelope {
    /// The stable identity of this dispatch, the same on every redelivery.
    pub fn id(&self) -> EventId {
        EventId {
            shard: self.shard,
            session: self.session.clone(),
            seq: self.seq,
        }
    }
}

/// Identifies one dispatch across redeliveries: `(shard, session, seq)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    /// Shard that received the dispatch.
    pub shard: u32,
    /// Discord session id.
    pub session: String,
    /// Sequence number within the session.
    pub seq: u64,
}

/// A stream message: 1..N envelopes of one partition, in the order they were received.
///
/// Batching lets a publisher pay the broker's per-message cost once for many events
/// without a format change; a batch of one is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    /// Wire version, [`WIRE_VERSION`] when written by this build.
    pub v: u16,
    /// Partition (stream index) the batch was published to.
    pub partition: u32,
    /// Id of the publishing gateway node.
    pub node: String,
    /// The envelopes, in receive order.
    pub events: Vec<EventEnvelope>,
}

impl EventBatch {
    /// A batch at the current wire version.
    pub fn new(partition: u32, node: impl Into<String>, events: Vec<EventEnvelope>) -> Self {
        Self {
            v: WIRE_VERSION,
            partition,
            node: node.into(),
            events,
        }
    }
}

impl WireMessage for EventBatch {
    const NAME: &'static str = "event batch";

    fn version(&self) -> u16 {
        self.v
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Error, decode, encode};

    fn sample() -> EventBatch {
        EventBatch::new(
            3,
            "0190f1a2-0000-7000-8000-000000000001",
            vec![EventEnvelope {
                shard: 19,
                shard_count: 32,
                epoch: 2,
                session: "s1".into(),
                seq: 7,
                event_type: "TYPING_START".into(),
                guild_id: Some(1),
                received_at_ms: 1_700_000_000_000,
                payload: r#"{"t":"TYPING_START","s":7,"op":0,"d":{}}"#.into(),
            }],
        )
    }

    #[test]
    fn batch_bytes_match_the_documented_layout() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(to_hex(&bytes), GOLDEN_BATCH);
        assert_eq!(decode::<EventBatch>(&bytes).unwrap(), sample());
    }

    #[test]
    fn newer_version_is_refused_with_its_number() {
        let mut batch = sample();
        batch.v = 2;
        let error = decode::<EventBatch>(&encode(&batch).unwrap()).unwrap_err();
        assert!(matches!(
            error,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ));
    }

    #[test]
    fn newer_version_with_another_layout_is_refused_as_newer() {
        #[derive(Serialize)]
        struct Future {
            v: u16,
            frames: Vec<u8>,
        }
        let bytes = rmp_serde::to_vec_named(&Future {
            v: 5,
            frames: vec![1],
        })
        .unwrap();
        let error = decode::<EventBatch>(&bytes).unwrap_err();
        assert!(matches!(error, Error::UnsupportedVersion { found: 5, .. }));
    }

    #[test]
    fn garbage_and_truncation_are_malformed_not_panics() {
        let bytes = encode(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode::<EventBatch>(&bytes[..cut]),
                Err(Error::Malformed {
                    message: "event batch",
                    ..
                })
            ));
        }
        for garbage in [&b"\xc1"[..], b"hello", b"\x92\x01\x02", &[0xff; 64]] {
            assert!(decode::<EventBatch>(garbage).is_err());
        }
    }

    #[test]
    fn unknown_fields_are_skipped() {
        #[derive(Serialize)]
        struct WithExtra {
            v: u16,
            partition: u32,
            node: String,
            events: Vec<EventEnvelope>,
            compression: &'static str,
        }
        let sample = sample();
        let bytes = rmp_serde::to_vec_named(&WithExtra {
            v: 1,
            partition: sample.partition,
            node: sample.node.clone(),
            events: sample.events.clone(),
            compression: "none",
        })
        .unwrap();
        assert_eq!(decode::<EventBatch>(&bytes).unwrap(), sample);
    }

    pub(crate) fn to_hex(bytes: &[u8]) -> String {
        use std::fmt::Write;
        bytes.iter().fold(String::new(), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
    }

    const GOLDEN_BATCH: &str = concat!(
        "84a17601a9706172746974696f6e03a46e6f6465d92430313930663161322d30",
        "3030302d373030302d383030302d303030303030303030303031a66576656e74",
        "739189a5736861726413ab73686172645f636f756e7420a565706f636802a773",
        "657373696f6ea27331a373657107aa6576656e745f74797065ac545950494e47",
        "5f5354415254a86775696c645f696401ae72656365697665645f61745f6d73cf",
        "0000018bcfe56800a77061796c6f6164d9287b2274223a22545950494e475f53",
        "54415254222c2273223a372c226f70223a302c2264223a7b7d7d"
    );
}
