//! What the handler receives: one event with where it came from.

use std::sync::Arc;

use serde::de::DeserializeSeed;
use shardmesh_proto::{EventEnvelope, EventId};
use twilight_model::gateway::event::{Event, GatewayEvent, GatewayEventDeserializer};

use crate::Error;

/// One event for the handler: the envelope the gateway published, the partition and
/// stream offset it was read from, and the raw payload, decoded on demand.
///
/// Cheap to clone (the envelope is shared), so a handler can move it into a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    envelope: Arc<EventEnvelope>,
    partition: u32,
    offset: u64,
}

impl Delivery {
    /// A delivery of `envelope`, read from `partition` at stream `offset`.
    pub fn new(envelope: EventEnvelope, partition: u32, offset: u64) -> Self {
        Self {
            envelope: Arc::new(envelope),
            partition,
            offset,
        }
    }

    /// The stable identity `(shard, session, seq)`: the same if this event is ever
    /// delivered again (after a consumer crash), so a handler can be made idempotent.
    pub fn id(&self) -> EventId {
        self.envelope.id()
    }

    /// The shard that received the event.
    pub fn shard(&self) -> u32 {
        self.envelope.shard
    }

    /// The cluster's shard count.
    pub fn shard_count(&self) -> u32 {
        self.envelope.shard_count
    }

    /// Lease epoch of the gateway owner that published it.
    pub fn epoch(&self) -> u64 {
        self.envelope.epoch
    }

    /// Discord session id.
    pub fn session(&self) -> &str {
        &self.envelope.session
    }

    /// Discord sequence number within the session.
    pub fn seq(&self) -> u64 {
        self.envelope.seq
    }

    /// Dispatch name, e.g. `MESSAGE_CREATE`.
    pub fn event_type(&self) -> &str {
        &self.envelope.event_type
    }

    /// The guild the event belongs to, if it has one.
    pub fn guild_id(&self) -> Option<u64> {
        self.envelope.guild_id
    }

    /// When the gateway node read the frame, Unix milliseconds.
    pub fn received_at_ms(&self) -> u64 {
        self.envelope.received_at_ms
    }

    /// The partition (event stream) it was read from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Its message's stream offset (shared by every event of one batch).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The whole gateway frame exactly as Discord sent it:
    /// `{"t":…,"s":…,"op":0,"d":…}`.
    pub fn payload(&self) -> &str {
        &self.envelope.payload
    }

    /// The envelope as published.
    pub fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }

    /// Parses the payload into twilight-model's typed [`Event`]. Parsing costs time,
    /// so it happens only when asked for.
    ///
    /// # Errors
    ///
    /// [`Error::Event`] if the payload is not a dispatch twilight-model can parse.
    pub fn event(&self) -> Result<Event, Error> {
        let payload = self.payload();
        let fail = |reason: String| Error::Event {
            event_type: self.envelope.event_type.clone(),
            reason,
        };
        let seed = GatewayEventDeserializer::from_json(payload)
            .ok_or_else(|| fail("not a gateway frame (no `op`)".into()))?;
        let mut json = serde_json::Deserializer::from_str(payload);
        match seed.deserialize(&mut json) {
            Ok(GatewayEvent::Dispatch(_, event)) => Ok(Event::from(event)),
            Ok(other) => Err(fail(format!("not a dispatch (op {})", opcode(&other)))),
            Err(error) => Err(fail(error.to_string())),
        }
    }
}

fn opcode(event: &GatewayEvent) -> u8 {
    match event {
        GatewayEvent::Dispatch(..) => 0,
        GatewayEvent::Heartbeat => 1,
        GatewayEvent::Reconnect => 7,
        GatewayEvent::InvalidateSession(_) => 9,
        GatewayEvent::Hello(_) => 10,
        GatewayEvent::HeartbeatAck => 11,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(event_type: &str, payload: &str) -> Delivery {
        Delivery::new(
            EventEnvelope {
                shard: 1,
                shard_count: 2,
                epoch: 3,
                session: "s".into(),
                seq: 4,
                event_type: event_type.into(),
                guild_id: Some(5),
                received_at_ms: 6,
                payload: payload.into(),
            },
            7,
            8,
        )
    }

    #[test]
    fn message_create_decodes_into_twilight_event() {
        let payload = r#"{"t":"MESSAGE_CREATE","s":4,"op":0,"d":{"id":"10","type":0,"channel_id":"11","guild_id":"5","author":{"id":"12","username":"u","discriminator":"0","global_name":null,"avatar":null},"content":"!ping","timestamp":"2024-01-01T00:00:00.000000+00:00","edited_timestamp":null,"tts":false,"mention_everyone":false,"mentions":[],"mention_roles":[],"attachments":[],"embeds":[],"pinned":false,"flags":0}}"#;
        let delivery = delivery("MESSAGE_CREATE", payload);
        let Event::MessageCreate(message) = delivery.event().unwrap() else {
            panic!("not a message");
        };
        assert_eq!(message.content, "!ping");
        assert_eq!(message.guild_id.map(twilight_model::id::Id::get), Some(5));
        assert_eq!(
            delivery.id(),
            EventId {
                shard: 1,
                session: "s".into(),
                seq: 4
            }
        );
        assert_eq!((delivery.partition(), delivery.offset()), (7, 8));
    }

    #[test]
    fn corrupt_payload_is_an_error_naming_the_event_type() {
        let error = delivery(
            "MESSAGE_CREATE",
            r#"{"t":"MESSAGE_CREATE","s":4,"op":0,"d":{}}"#,
        )
        .event()
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot decode MESSAGE_CREATE dispatch: "),
            "{error}"
        );
        assert!(delivery("X", "not json").event().is_err());
        assert!(delivery("X", r#"{"op":11,"d":null}"#).event().is_err());
    }
}
