//! The JSON object a sink hands over per event: the envelope's fields, where it sat in
//! the stream, and the gateway frame itself as a JSON object (not a string).

use crate::Delivery;
use anyhow::Context as _;
use serde::Serialize;
use serde_json::value::RawValue;

#[derive(Serialize)]
struct EventJson<'a> {
    shard: u32,
    shard_count: u32,
    epoch: u64,
    session: &'a str,
    seq: u64,
    event_type: &'a str,
    /// A string, as Discord writes snowflakes: JavaScript numbers cannot hold them.
    guild_id: Option<String>,
    received_at_ms: u64,
    partition: u32,
    offset: u64,
    payload: &'a RawValue,
}

/// `{"shard":..,"shard_count":..,"epoch":..,"session":..,"seq":..,"event_type":..,
/// "guild_id":..,"received_at_ms":..,"partition":..,"offset":..,"payload":{..}}`.
pub fn event_json(delivery: &Delivery) -> anyhow::Result<String> {
    // Borrowed, so the frame is copied once, into the output.
    let payload: &RawValue = serde_json::from_str(delivery.payload()).with_context(|| {
        format!(
            "the gateway frame of shard {} seq {} is not JSON",
            delivery.shard(),
            delivery.seq()
        )
    })?;
    let json = EventJson {
        shard: delivery.shard(),
        shard_count: delivery.shard_count(),
        epoch: delivery.epoch(),
        session: delivery.session(),
        seq: delivery.seq(),
        event_type: delivery.event_type(),
        guild_id: delivery.guild_id().map(|id| id.to_string()),
        received_at_ms: delivery.received_at_ms(),
        partition: delivery.partition(),
        offset: delivery.offset(),
        payload,
    };
    Ok(serde_json::to_string(&json)?)
}

#[cfg(test)]
mod tests {
    use shardmesh_proto::EventEnvelope;

    use super::*;

    fn delivery(payload: &str) -> Delivery {
        Delivery::new(
            EventEnvelope {
                shard: 3,
                shard_count: 16,
                epoch: 7,
                session: "abc".into(),
                seq: 42,
                event_type: "MESSAGE_CREATE".into(),
                guild_id: Some(81_384_788_765_712_384),
                received_at_ms: 1_700_000_000_000,
                payload: payload.into(),
            },
            2,
            900,
        )
    }

    #[test]
    fn the_frame_is_embedded_as_an_object_and_snowflakes_are_strings() {
        let frame = r#"{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"content":"!ping"}}"#;
        let json: serde_json::Value =
            serde_json::from_str(&event_json(&delivery(frame)).unwrap()).unwrap();
        assert_eq!(json["shard"], 3);
        assert_eq!(json["seq"], 42);
        assert_eq!(json["session"], "abc");
        assert_eq!(json["guild_id"], "81384788765712384");
        assert_eq!(json["partition"], 2);
        assert_eq!(json["offset"], 900);
        assert_eq!(json["payload"]["d"]["content"], "!ping");
    }

    #[test]
    fn a_frame_that_is_not_json_is_an_error_naming_the_event() {
        let error = event_json(&delivery("{not json")).unwrap_err();
        assert!(error.to_string().contains("shard 3 seq 42"), "{error}");
    }
}
