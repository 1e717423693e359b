//! Dead letters: what a consumer group could not handle, kept with the reason.

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, WIRE_VERSION, WireMessage};

/// An event (or an undecodable stream message) a consumer group gave up on, published
/// to the group's dead-letter stream `shardmesh.<cluster>.dlq.<group>` so nothing is
/// dropped silently.
///
/// Exactly one of `event` and `raw` is set: `event` when the handler failed on a
/// decodable envelope, `raw` when the stream message itself could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Wire version, [`WIRE_VERSION`] when written by this build.
    pub v: u16,
    /// Cluster name the event stream belongs to.
    pub cluster: String,
    /// Consumer group that gave up.
    pub group: String,
    /// Partition (event stream index) the message was read from.
    pub partition: u32,
    /// Stream offset of the message (the whole batch, when `event` is one of several).
    pub offset: u64,
    /// Id of the consumer node that gave up.
    pub node: String,
    /// Why: the handler's last error, a panic message, or the decode error.
    pub error: String,
    /// Handler attempts made; 0 when the message could not be decoded.
    pub attempts: u32,
    /// When the consumer gave up, Unix milliseconds.
    pub failed_at_ms: u64,
    /// The envelope the handler failed on.
    pub event: Option<EventEnvelope>,
    /// The undecodable stream message, byte for byte (MessagePack `bin`).
    #[serde(with = "bytes")]
    pub raw: Option<Vec<u8>>,
}

impl WireMessage for DeadLetter {
    const NAME: &'static str = "dead letter";

    fn version(&self) -> u16 {
        self.v
    }
}

impl DeadLetter {
    /// A dead letter at the current wire version, for an envelope the handler failed on.
    #[allow(clippy::too_many_arguments)]
    pub fn for_event(
        cluster: impl Into<String>,
        group: impl Into<String>,
        partition: u32,
        offset: u64,
        node: impl Into<String>,
        error: impl Into<String>,
        attempts: u32,
        failed_at_ms: u64,
        event: EventEnvelope,
    ) -> Self {
        Self {
            v: WIRE_VERSION,
            cluster: cluster.into(),
            group: group.into(),
            partition,
            offset,
            node: node.into(),
            error: error.into(),
            attempts,
            failed_at_ms,
            event: Some(event),
            raw: None,
        }
    }

    /// A dead letter at the current wire version, for a stream message that is not a
    /// valid event batch.
    #[allow(clippy::too_many_arguments)]
    pub fn for_raw(
        cluster: impl Into<String>,
        group: impl Into<String>,
        partition: u32,
        offset: u64,
        node: impl Into<String>,
        error: impl Into<String>,
        failed_at_ms: u64,
        raw: Vec<u8>,
    ) -> Self {
        Self {
            v: WIRE_VERSION,
            cluster: cluster.into(),
            group: group.into(),
            partition,
            offset,
            node: node.into(),
            error: error.into(),
            attempts: 0,
            failed_at_ms,
            event: None,
            raw: Some(raw),
        }
    }
}

/// `Option<Vec<u8>>` as MessagePack `bin` (rmp-serde writes a plain `Vec<u8>` as an
/// array of integers, which other languages would not read as bytes).
mod bytes {
    use std::fmt;

    use serde::de::{self, Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;

    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(
        value: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_bytes(bytes),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        deserializer.deserialize_option(OptionalBytes)
    }

    struct OptionalBytes;

    impl<'de> Visitor<'de> for OptionalBytes {
        type Value = Option<Vec<u8>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("nil or bytes")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_bytes(Bytes).map(Some)
        }

        // rmp-serde hands `bin` straight to the outer visitor, without `visit_some`.
        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
            Ok(Some(bytes.to_vec()))
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Self::Value, E> {
            Ok(Some(bytes))
        }
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Self::Value, E> {
            Ok(bytes)
        }

        // Readers that wrote the bytes as an array of integers.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::to_hex;
    use crate::{Error, decode, encode};

    fn failed_event() -> DeadLetter {
        DeadLetter::for_event(
            "c",
            "bots",
            3,
            42,
            "n1",
            "boom",
            3,
            1_700_000_000_000,
            EventEnvelope {
                shard: 19,
                shard_count: 32,
                epoch: 2,
                session: "s1".into(),
                seq: 7,
                event_type: "TYPING_START".into(),
                guild_id: None,
                received_at_ms: 1_700_000_000_000,
                payload: r#"{"t":"TYPING_START","s":7,"op":0,"d":{}}"#.into(),
            },
        )
    }

    fn undecodable() -> DeadLetter {
        DeadLetter::for_raw(
            "c",
            "bots",
            3,
            43,
            "n1",
            "bad",
            1_700_000_000_000,
            vec![0xc1, 0x00],
        )
    }

    #[test]
    fn dead_letter_bytes_match_the_documented_layout() {
        let bytes = encode(&failed_event()).unwrap();
        assert_eq!(to_hex(&bytes), GOLDEN_EVENT);
        assert_eq!(decode::<DeadLetter>(&bytes).unwrap(), failed_event());

        let bytes = encode(&undecodable()).unwrap();
        assert_eq!(to_hex(&bytes), GOLDEN_RAW);
        assert_eq!(decode::<DeadLetter>(&bytes).unwrap(), undecodable());
    }

    #[test]
    fn raw_bytes_written_as_an_array_are_read_too() {
        #[derive(Serialize)]
        struct AsArray {
            v: u16,
            cluster: &'static str,
            group: &'static str,
            partition: u32,
            offset: u64,
            node: &'static str,
            error: &'static str,
            attempts: u32,
            failed_at_ms: u64,
            event: Option<EventEnvelope>,
            raw: Option<Vec<u8>>,
        }
        let bytes = rmp_serde::to_vec_named(&AsArray {
            v: 1,
            cluster: "c",
            group: "bots",
            partition: 3,
            offset: 43,
            node: "n1",
            error: "bad",
            attempts: 0,
            failed_at_ms: 1_700_000_000_000,
            event: None,
            raw: Some(vec![0xc1, 0x00]),
        })
        .unwrap();
        assert_eq!(decode::<DeadLetter>(&bytes).unwrap(), undecodable());
    }

    #[test]
    fn truncated_dead_letter_is_malformed() {
        let bytes = encode(&failed_event()).unwrap();
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode::<DeadLetter>(&bytes[..cut]),
                Err(Error::Malformed {
                    message: "dead letter",
                    ..
                })
            ));
        }
    }

    const GOLDEN_EVENT: &str = concat!(
        "8ba17601a7636c7573746572a163a567726f7570a4626f7473a9706172746974",
        "696f6e03a66f66667365742aa46e6f6465a26e31a56572726f72a4626f6f6da8",
        "617474656d70747303ac6661696c65645f61745f6d73cf0000018bcfe56800a5",
        "6576656e7489a5736861726413ab73686172645f636f756e7420a565706f6368",
        "02a773657373696f6ea27331a373657107aa6576656e745f74797065ac545950",
        "494e475f5354415254a86775696c645f6964c0ae72656365697665645f61745f",
        "6d73cf0000018bcfe56800a77061796c6f6164d9287b2274223a22545950494e",
        "475f5354415254222c2273223a372c226f70223a302c2264223a7b7d7da37261",
        "77c0"
    );
    const GOLDEN_RAW: &str = concat!(
        "8ba17601a7636c7573746572a163a567726f7570a4626f7473a9706172746974",
        "696f6e03a66f66667365742ba46e6f6465a26e31a56572726f72a3626164a861",
        "7474656d70747300ac6661696c65645f61745f6d73cf0000018bcfe56800a565",
        "76656e74c0a3726177c402c100"
    );
}
