//! Cheap looks into raw gateway frames: op, seq and type without a full parse, the
//! dispatch's guild, and the two READY fields a resume needs.

use std::borrow::Cow;

use serde::Deserialize;
use twilight_model::gateway::event::GatewayEventDeserializer;

/// Gateway opcode of a dispatch.
pub(crate) const OP_DISPATCH: u8 = 0;
/// Gateway opcode of HELLO: during a hand-over it means the close echo never came and
/// the shard reconnected on its own.
pub(crate) const OP_HELLO: u8 = 10;
/// Discord acknowledged a heartbeat: the shard's latency figure changed.
pub(crate) const OP_HEARTBEAT_ACK: u8 = 11;

/// What a frame says about itself, read from its first fields only.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub op: u8,
    pub seq: Option<u64>,
    pub event_type: Option<Cow<'a, str>>,
}

/// Reads op, seq and type; `None` for a frame that is not a gateway payload.
pub(crate) fn header(text: &str) -> Option<Header<'_>> {
    let (op, seq, event_type) = GatewayEventDeserializer::from_json(text)?.into_parts();
    Some(Header {
        op,
        seq,
        event_type,
    })
}

/// The guild a dispatch belongs to: `d.guild_id`, or `d.id` for the dispatches whose
/// object is the guild itself (`GUILD_CREATE`, `GUILD_UPDATE`, `GUILD_DELETE`).
///
/// Walks the frame once without allocating: serde skips every other field. Nested
/// `guild_id`s (a message reference's, say) are not taken for the dispatch's own.
pub(crate) fn guild_id(text: &str, event_type: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Frame<'a> {
        #[serde(borrow, default)]
        d: Option<Data<'a>>,
    }
    #[derive(Deserialize)]
    struct Data<'a> {
        #[serde(borrow, default)]
        guild_id: Option<&'a str>,
        #[serde(borrow, default)]
        id: Option<&'a str>,
    }
    let data = serde_json::from_str::<Frame<'_>>(text).ok()?.d?;
    let is_guild = matches!(event_type, "GUILD_CREATE" | "GUILD_UPDATE" | "GUILD_DELETE");
    let id = if is_guild { data.id } else { data.guild_id };
    id?.parse().ok()
}

/// `d.heartbeat_interval` of a HELLO, in ms.
pub(crate) fn heartbeat_interval(text: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Frame {
        d: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        heartbeat_interval: u64,
    }
    serde_json::from_str::<Frame>(text)
        .ok()
        .map(|frame| frame.d.heartbeat_interval)
}

/// The session a READY started and where to resume it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ready {
    pub session_id: String,
    pub resume_url: String,
}

/// `d.session_id` and `d.resume_gateway_url` of a READY; the rest is skipped.
pub(crate) fn ready(text: &str) -> Option<Ready> {
    #[derive(Deserialize)]
    struct Frame<'a> {
        #[serde(borrow)]
        d: Data<'a>,
    }
    #[derive(Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        session_id: Cow<'a, str>,
        #[serde(borrow)]
        resume_gateway_url: Cow<'a, str>,
    }
    let frame: Frame<'_> = serde_json::from_str(text).ok()?;
    Some(Ready {
        session_id: frame.d.session_id.into_owned(),
        resume_url: frame.d.resume_gateway_url.into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = r#"{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"id":"7","message_reference":{"guild_id":"1"},"guild_id":"81384788765712384","content":"hi \"there\""}}"#;

    #[test]
    fn header_reads_op_seq_and_type() {
        let header = header(MESSAGE).unwrap();
        assert_eq!(header.op, OP_DISPATCH);
        assert_eq!(header.seq, Some(42));
        assert_eq!(header.event_type.as_deref(), Some("MESSAGE_CREATE"));
        let hello = super::header(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#).unwrap();
        assert_eq!((hello.op, hello.seq), (OP_HELLO, None));
        assert_eq!(
            heartbeat_interval(
                r#"{"op":10,"d":{"heartbeat_interval":41250,"_trace":[]},"s":null}"#
            ),
            Some(41_250)
        );
        assert_eq!(heartbeat_interval(MESSAGE), None);
    }

    #[test]
    fn guild_id_is_the_dispatchs_own() {
        assert_eq!(
            guild_id(MESSAGE, "MESSAGE_CREATE"),
            Some(81_384_788_765_712_384)
        );
        assert_eq!(
            guild_id(
                r#"{"t":"TYPING_START","s":1,"op":0,"d":{"guild_id":"5","user_id":"6"}}"#,
                "TYPING_START"
            ),
            Some(5)
        );
        let created = r#"{"t":"GUILD_CREATE","s":2,"op":0,"d":{"id":"7","name":"g"}}"#;
        assert_eq!(guild_id(created, "GUILD_CREATE"), Some(7));
        assert_eq!(guild_id(created, "CHANNEL_CREATE"), None);
    }

    #[test]
    fn missing_or_odd_guild_ids_are_none() {
        for text in [
            r#"{"t":"READY","s":1,"op":0,"d":{"v":10,"guilds":[{"id":"3"}]}}"#,
            r#"{"t":"X","s":1,"op":0,"d":null}"#,
            r#"{"t":"X","s":1,"op":0,"d":[1,2]}"#,
            r#"{"t":"X","s":1,"op":0,"d":{"guild_id":null}}"#,
            r#"{"t":"X","s":1,"op":0,"d":{"guild_id":"abc"}}"#,
            r#"{"t":"X","s":1,"op":0,"d":{"guild_id":"#,
            "not json",
        ] {
            assert_eq!(guild_id(text, "MESSAGE_CREATE"), None, "{text}");
        }
    }

    #[test]
    fn ready_yields_session_and_resume_url() {
        let text = r#"{"t":"READY","s":1,"op":0,"d":{"v":10,"user":{"id":"1"},"session_id":"abc","resume_gateway_url":"ws://127.0.0.1:9","guilds":[]}}"#;
        assert_eq!(
            ready(text),
            Some(Ready {
                session_id: "abc".into(),
                resume_url: "ws://127.0.0.1:9".into(),
            })
        );
        assert_eq!(ready(r#"{"t":"READY","s":1,"op":0,"d":{"v":10}}"#), None);
    }

    #[test]
    fn malformed_frames_have_no_header() {
        assert!(header("").is_none());
        assert!(header("{]").is_none());
        assert!(header(r#"{"t":"X","s":1}"#).is_none());
    }
}
