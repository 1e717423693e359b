//! The transport as client libraries other than twilight use it: client payloads in
//! binary frames, staying on the connection after op 9 INVALID SESSION, and
//! `compress=zstd-stream` (raw, and through a twilight shard with its `zstd` feature).

mod common;

use std::time::Duration;

use common::raw::{Socket, close_code, connect, next, next_json, send};
use common::{shard, start, unpaced, wait_until};
use futures_util::SinkExt;
use serde_json::{Value, json};
use shardmesh_sim::{Chaos, SimConfig, Simulator};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use zstd_safe::{DCtx, InBuffer, OutBuffer};

const V10: &str = "v=10&encoding=json";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn identify(sim: &Simulator) -> Value {
    json!({"op": 2, "d": {
        "token": sim.config().token.expose(),
        "intents": 513,
        "properties": {"os": "linux", "browser": "raw", "device": "raw"},
    }})
}

fn resume(sim: &Simulator, session: &str, seq: u64) -> Value {
    json!({"op": 6, "d": {
        "token": sim.config().token.expose(),
        "session_id": session,
        "seq": seq,
    }})
}

/// Reads past HELLO and heartbeat ACKs to the next dispatch or op 9.
async fn next_event(socket: &mut Socket) -> Value {
    loop {
        let frame = next_json(socket).await;
        if frame["op"] == 0 || frame["op"] == 9 {
            return frame;
        }
    }
}

#[tokio::test]
async fn binary_frames_carry_client_payloads() {
    let sim = start(SimConfig {
        guilds: 1,
        ..SimConfig::default()
    })
    .await;
    let mut socket = connect(&sim, V10).await;
    assert_eq!(next_json(&mut socket).await["op"], 10);
    let identify = identify(&sim).to_string();
    socket.send(Message::binary(identify)).await.unwrap();
    assert_eq!(next_json(&mut socket).await["t"], "READY");
    assert_eq!(next_json(&mut socket).await["t"], "GUILD_CREATE");
    socket
        .send(Message::binary(r#"{"op":1,"d":2}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["op"], 11);
    assert_eq!(sim.stats().identifies, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn undecodable_payloads_in_either_frame_type_are_closed_with_4002() {
    let sim = start(SimConfig::default()).await;
    let not_utf8 = vec![b'{', 0xff, 0xfe, b'}'];
    let cases = [
        Message::binary(not_utf8.clone()),
        Message::binary("not json"),
        Message::binary(format!(r#"{{"op":1,"d":"{}"}}"#, "x".repeat(5_000))),
        // A text frame that is not UTF-8 (tungstenite only lets a raw frame do it).
        Message::Frame(Frame::message(not_utf8, OpCode::Data(Data::Text), true)),
        Message::text("not json"),
    ];
    for message in cases {
        let what = format!("{message:?}");
        let mut socket = connect(&sim, V10).await;
        socket.send(message).await.unwrap();
        assert_eq!(close_code(&mut socket).await, 4002, "{what}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn resume_on_the_same_connection_after_resumable_invalid_session() {
    let sim = start(SimConfig {
        guilds: 1,
        ..SimConfig::default()
    })
    .await;
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim)).await;
    let ready = next_event(&mut socket).await;
    assert_eq!(
        (ready["t"].as_str(), ready["s"].as_u64()),
        (Some("READY"), Some(1))
    );
    let session = ready["d"]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(next_event(&mut socket).await["s"], 2);

    assert_eq!(sim.chaos(0, Chaos::InvalidSession { resumable: true }), 1);
    let invalid = next_event(&mut socket).await;
    assert_eq!(
        (invalid["op"].as_u64(), invalid["d"].as_bool()),
        (Some(9), Some(true))
    );
    let stats = sim.stats();
    assert_eq!(
        (stats.sessions, stats.connections),
        (1, 1),
        "still resumable"
    );

    // Resume from seq 1 on the same connection: GUILD_CREATE (seq 2) comes again as
    // a replay, then RESUMED.
    send(&mut socket, &resume(&sim, &session, 1)).await;
    let replayed = next_event(&mut socket).await;
    assert_eq!(
        (replayed["t"].as_str(), replayed["s"].as_u64()),
        (Some("GUILD_CREATE"), Some(2))
    );
    let resumed = next_event(&mut socket).await;
    assert_eq!(
        (resumed["t"].as_str(), resumed["s"].as_u64()),
        (Some("RESUMED"), Some(2))
    );
    let stats = sim.stats();
    assert_eq!(
        (
            stats.sessions,
            stats.connections,
            stats.identifies,
            stats.resumes
        ),
        (1, 1, 1, 1)
    );
    let records = sim.log_since(0, usize::MAX).records;
    let replays: Vec<u64> = records.iter().filter(|r| r.replay).map(|r| r.seq).collect();
    assert_eq!(replays, [2]);
    assert!(
        records
            .iter()
            .all(|r| r.connection == records[0].connection),
        "one connection throughout"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn identify_on_the_same_connection_after_invalid_session() {
    let sim = start(unpaced(SimConfig {
        guilds: 1,
        ..SimConfig::default()
    }))
    .await;
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim)).await;
    let ready = next_event(&mut socket).await;
    let first = ready["d"]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(next_event(&mut socket).await["t"], "GUILD_CREATE");

    assert_eq!(sim.chaos(0, Chaos::InvalidSession { resumable: false }), 1);
    let invalid = next_event(&mut socket).await;
    assert_eq!(
        (invalid["op"].as_u64(), invalid["d"].as_bool()),
        (Some(9), Some(false))
    );
    let stats = sim.stats();
    assert_eq!(
        (stats.sessions, stats.connections),
        (0, 1),
        "the session ended"
    );

    send(&mut socket, &identify(&sim)).await;
    let ready = next_event(&mut socket).await;
    assert_eq!(
        (ready["t"].as_str(), ready["s"].as_u64()),
        (Some("READY"), Some(1))
    );
    assert_ne!(ready["d"]["session_id"].as_str(), Some(first.as_str()));
    assert_eq!(next_event(&mut socket).await["t"], "GUILD_CREATE");
    let stats = sim.stats();
    assert_eq!(
        (stats.sessions, stats.connections, stats.identifies),
        (1, 1, 2)
    );
    // The old session cannot be resumed any more.
    let mut other = connect(&sim, V10).await;
    send(&mut other, &resume(&sim, &first, 2)).await;
    assert_eq!(next_event(&mut other).await["op"], 9);
    sim.shutdown().await;
}

#[tokio::test]
async fn identify_again_on_the_same_connection_after_one_refused_as_too_soon() {
    let interval = Duration::from_millis(300);
    let sim = start(SimConfig {
        guilds: 1,
        identify_interval_ms: 300,
        identify_slack_ms: 0,
        ..SimConfig::default()
    })
    .await;
    let mut first = connect(&sim, V10).await;
    send(&mut first, &identify(&sim)).await;
    assert_eq!(next_event(&mut first).await["t"], "READY");
    // The bucket's identify was granted before READY was read.
    let granted_before = tokio::time::Instant::now();

    let mut second = connect(&sim, V10).await;
    send(&mut second, &identify(&sim)).await;
    let invalid = next_event(&mut second).await;
    assert_eq!(
        (invalid["op"].as_u64(), invalid["d"].as_bool()),
        (Some(9), Some(false))
    );
    let stats = sim.stats();
    assert_eq!(
        (stats.sessions, stats.pacing_violations),
        (1, 1),
        "no session for it"
    );

    // Once the bucket's interval has passed, the same connection identifies.
    tokio::time::sleep_until(granted_before + interval).await;
    send(&mut second, &identify(&sim)).await;
    let ready = next_event(&mut second).await;
    assert_eq!(
        (ready["t"].as_str(), ready["s"].as_u64()),
        (Some("READY"), Some(1))
    );
    let stats = sim.stats();
    assert_eq!(
        (
            stats.sessions,
            stats.connections,
            stats.identifies,
            stats.pacing_violations
        ),
        (2, 2, 2, 1)
    );
    sim.shutdown().await;
}

/// One connection's zstd decoder: one context for every message, as clients keep it.
struct Unzstd {
    context: DCtx<'static>,
    messages: usize,
}

impl Unzstd {
    fn new() -> Self {
        Self {
            context: DCtx::create(),
            messages: 0,
        }
    }

    /// Reads one binary message, checks the magic on the connection's first, and
    /// decodes it (it must decode completely on its own: flushed, not split).
    async fn read(&mut self, socket: &mut Socket) -> Value {
        let Message::Binary(bytes) = next(socket).await else {
            panic!("expected binary")
        };
        assert_eq!(
            bytes.starts_with(&ZSTD_MAGIC),
            self.messages == 0,
            "only the connection's first message opens a zstd frame"
        );
        self.messages += 1;
        let mut input = InBuffer::around(&bytes);
        let mut out = Vec::with_capacity(bytes.len() * 8 + 1_024);
        loop {
            let filled = out.len();
            let mut output = OutBuffer::around_pos(&mut out, filled);
            self.context
                .decompress_stream(&mut output, &mut input)
                .expect("decodes");
            let full = output.pos() == output.capacity();
            if input.pos == input.src.len() && !full {
                break;
            }
            out.reserve(out.capacity());
        }
        serde_json::from_slice(&out).expect("one whole JSON message")
    }
}

#[tokio::test]
async fn zstd_stream_messages_decode_with_one_context_per_connection() {
    let sim = start(SimConfig {
        guilds: 3,
        rate: 500.0,
        ..SimConfig::default()
    })
    .await;
    let zstd = format!("{V10}&compress=zstd-stream");
    let mut socket = connect(&sim, &zstd).await;
    let mut unzstd = Unzstd::new();
    assert_eq!(unzstd.read(&mut socket).await["op"], 10);
    send(&mut socket, &identify(&sim)).await;
    let ready = unzstd.read(&mut socket).await;
    assert_eq!(ready["t"], "READY");
    let session = ready["d"]["session_id"].as_str().unwrap().to_owned();
    for seq in 2..40 {
        assert_eq!(unzstd.read(&mut socket).await["s"], seq);
    }
    drop(socket);
    wait_until("the drop", || sim.stats().connections == 0).await;
    sim.stop_traffic();

    // A resume is a new connection, so a new stream: HELLO opens a new frame.
    let mut socket = connect(&sim, &zstd).await;
    let mut unzstd = Unzstd::new();
    assert_eq!(unzstd.read(&mut socket).await["op"], 10);
    send(&mut socket, &resume(&sim, &session, 39)).await;
    loop {
        let frame = unzstd.read(&mut socket).await;
        if frame["t"] == "RESUMED" {
            break;
        }
        assert_eq!(frame["op"], 0, "only the replay before RESUMED");
    }
    let stats = sim.stats();
    assert_eq!((stats.resumes, stats.zstd_connections), (1, 2));
    sim.shutdown().await;
}

/// twilight-gateway with its `zstd` feature (on for this crate's tests) asks for
/// `compress=zstd-stream` and decodes every binary message with one context.
#[tokio::test]
async fn twilight_on_zstd_stream_gets_ready_guilds_and_resumes() {
    let sim = start(SimConfig {
        guilds: 3,
        rate: 300.0,
        ..SimConfig::default()
    })
    .await;
    let mut client = shard(&sim, 0, 1);
    client
        .pump_until("READY burst", |c| c.count("GUILD_CREATE") == 3)
        .await;
    client
        .pump_until("traffic", |c| c.received.len() >= 40)
        .await;
    assert_eq!(sim.chaos(0, Chaos::Drop), 1);
    client
        .pump_until("RESUMED", |c| c.count("RESUMED") == 1)
        .await;
    let resumed_at = client.received.len();
    client
        .pump_until("traffic after RESUMED", |c| {
            c.received.len() >= resumed_at + 30
        })
        .await;
    assert_eq!(client.count("READY"), 1, "no second session");
    let stats = sim.stats();
    assert_eq!(
        (stats.zstd_connections, stats.zlib_connections),
        (2, 0),
        "both connections asked for zstd-stream"
    );
    client.assert_no_gap_no_repeat();
    client.assert_matches_truth(&sim, 0).await;
    sim.shutdown().await;
}
