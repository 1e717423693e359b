//! Protocol corners a well-behaved client never shows, driven with a raw WebSocket
//! client, plus the `/_sim/` control API and REST headers over raw HTTP.

mod common;

use std::time::Duration;

use common::raw::{Socket, close_code, connect, next, next_json, send};
use common::{DEADLINE, start, wait_until};
use flate2::{Decompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shardmesh_sim::{SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn identify(sim: &Simulator, shard: Option<[u32; 2]>) -> Value {
    let mut d = json!({
        "token": sim.config().token.expose(),
        "intents": 513,
        "properties": {"os": "linux", "browser": "raw", "device": "raw"},
    });
    if let Some(shard) = shard {
        d["shard"] = json!(shard);
    }
    json!({"op": 2, "d": d})
}

const V10: &str = "v=10&encoding=json";

#[tokio::test]
async fn hello_then_heartbeat_ack_and_op1_on_demand() {
    let sim = start(SimConfig {
        heartbeat_interval_ms: 30_000,
        ..SimConfig::default()
    })
    .await;
    let mut socket = connect(&sim, V10).await;
    let hello = next_json(&mut socket).await;
    assert_eq!(
        hello,
        json!({"t": null, "s": null, "op": 10, "d": {"heartbeat_interval": 30_000}})
    );
    send(&mut socket, &json!({"op": 1, "d": null})).await;
    assert_eq!(next_json(&mut socket).await["op"], 11);
    send(&mut socket, &identify(&sim, None)).await;
    assert_eq!(next_json(&mut socket).await["t"], "READY");
    assert_eq!(sim.chaos(0, shardmesh_sim::Chaos::RequestHeartbeat), 1);
    loop {
        let frame = next_json(&mut socket).await;
        if frame["op"] == 1 {
            break;
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_heartbeating_is_closed_with_4009() {
    let sim = start(SimConfig {
        heartbeat_interval_ms: 200,
        ..SimConfig::default()
    })
    .await;
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim, None)).await;
    assert_eq!(close_code(&mut socket).await, 4009);
    wait_until("the session to end", || sim.stats().sessions == 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_api_version_is_closed_with_4012() {
    let sim = start(SimConfig::default()).await;
    let mut socket = connect(&sim, "v=9&encoding=json").await;
    assert_eq!(close_code(&mut socket).await, 4012);
    sim.shutdown().await;
}

#[tokio::test]
async fn identify_without_shard_on_a_sharded_bot_is_closed_with_4011() {
    let sim = start(SimConfig {
        shards: 2,
        ..SimConfig::default()
    })
    .await;
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim, None)).await;
    assert_eq!(close_code(&mut socket).await, 4011);
    sim.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_get_discords_close_codes() {
    let sim = start(SimConfig::default()).await;
    let cases: [(Message, u16); 4] = [
        (Message::text(r#"{"op":99,"d":null}"#), 4001),
        (Message::text("not json"), 4002),
        (
            Message::text(format!(r#"{{"op":1,"d":"{}"}}"#, "x".repeat(5_000))),
            4002,
        ),
        (Message::text(r#"{"op":3,"d":{"status":"online"}}"#), 4003),
    ];
    for (message, code) in cases {
        let mut socket = connect(&sim, V10).await;
        socket.send(message).await.unwrap();
        assert_eq!(close_code(&mut socket).await, code);
    }
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim, None)).await;
    send(&mut socket, &identify(&sim, None)).await;
    assert_eq!(close_code(&mut socket).await, 4005);
    sim.shutdown().await;
}

#[tokio::test]
async fn resume_beyond_the_sessions_seq_is_closed_with_4007() {
    let sim = start(SimConfig {
        guilds: 1,
        ..SimConfig::default()
    })
    .await;
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim, None)).await;
    let _hello = next_json(&mut socket).await;
    let ready = next_json(&mut socket).await;
    let session = ready["d"]["session_id"].as_str().unwrap().to_owned();
    drop(socket);
    wait_until("the drop", || sim.stats().connections == 0).await;
    let mut socket = connect(&sim, V10).await;
    let resume = json!({"op": 6, "d": {"token": "sim-token", "session_id": session, "seq": 99}});
    send(&mut socket, &resume).await;
    assert_eq!(close_code(&mut socket).await, 4007);
    sim.shutdown().await;
}

#[tokio::test]
async fn zlib_stream_frames_inflate_with_one_context() {
    let sim = start(SimConfig {
        guilds: 3,
        rate: 500.0,
        ..SimConfig::default()
    })
    .await;
    let mut socket = connect(&sim, &format!("{V10}&compress=zlib-stream")).await;
    let mut inflate = Decompress::new(true);
    let mut read = async |socket: &mut Socket| -> Value {
        let Message::Binary(bytes) = next(socket).await else {
            panic!("expected binary")
        };
        assert!(bytes.ends_with(&[0, 0, 0xff, 0xff]));
        let mut out = Vec::with_capacity(bytes.len() * 20 + 1_024);
        inflate
            .decompress_vec(&bytes, &mut out, FlushDecompress::Sync)
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    };
    assert_eq!(read(&mut socket).await["op"], 10);
    send(&mut socket, &identify(&sim, None)).await;
    assert_eq!(read(&mut socket).await["t"], "READY");
    for seq in 2..40 {
        assert_eq!(read(&mut socket).await["s"], seq);
    }
    sim.shutdown().await;
}

/// One HTTP/1.1 request with `Connection: close`; returns status, headers, body.
async fn http(
    sim: &Simulator,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(sim.addr()).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\nauthorization: Bot sim-token\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status, head.to_lowercase(), body)
}

#[tokio::test]
async fn control_api_serves_stats_log_traffic_and_chaos_with_snowflakes_as_strings() {
    let sim = start(SimConfig {
        guilds: 2,
        ..SimConfig::default()
    })
    .await;
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim, None)).await;
    wait_until("READY burst sent", || sim.stats().dispatches_sent == 3).await;

    let (status, _, stats) = http(&sim, "GET", "/_sim/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["identifies"], 1);
    assert_eq!(stats["dispatches_per_shard"], json!([3]));
    let (_, _, page) = http(&sim, "GET", "/_sim/log?since=1&limit=1", None).await;
    assert_eq!(page["records"][0]["type"], "GUILD_CREATE");
    assert_eq!(page["records"][0]["seq"], 2);
    assert_eq!(page["next"], 2);
    // Every snowflake is a string, as Discord sends them (a JavaScript number cannot
    // hold one): the record's id, and the guilds' ids, channels and webhooks.
    let record_id = &page["records"][0]["id"];
    assert!(record_id.is_string(), "log record id {record_id}");
    let (_, _, guilds) = http(&sim, "GET", "/_sim/guilds", None).await;
    assert_eq!(guilds.as_array().unwrap().len(), 2);
    let known = &sim.guilds()[1];
    let guild = &guilds[1];
    assert_eq!(guild["id"], known.id.to_string(), "{guild}");
    assert_eq!(guild["webhook_id"], known.webhook_id.to_string(), "{guild}");
    let channels: Vec<String> = known.channels.iter().map(u64::to_string).collect();
    assert_eq!(guild["channels"], json!(channels), "{guild}");
    assert!(
        known.id > 1 << 53,
        "guild ids are real snowflakes: {}",
        known.id
    );

    http(
        &sim,
        "POST",
        "/_sim/traffic/rate",
        Some(json!({"rate": 200.0})),
    )
    .await;
    wait_until("traffic", || sim.stats().generated > 10).await;
    http(&sim, "POST", "/_sim/traffic/stop", None).await;
    assert!(!sim.stats().traffic_running);
    let (_, _, reached) = http(
        &sim,
        "POST",
        "/_sim/chaos/0",
        Some(json!({"action": "drop"})),
    )
    .await;
    assert_eq!(reached, json!({"reached": 1}));
    wait_until("the drop", || sim.stats().connections == 0).await;
    let (status, _, _) = http(
        &sim,
        "POST",
        "/_sim/chaos/0",
        Some(json!({"action": "bogus"})),
    )
    .await;
    assert_eq!(status, 422);
    sim.shutdown().await;
}

#[tokio::test]
async fn rest_sends_rate_limit_headers_and_a_global_429() {
    let sim = start(SimConfig {
        rest_global_limit: 2,
        ..SimConfig::default()
    })
    .await;
    let (status, head, body) = http(&sim, "GET", "/api/v10/gateway", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["url"], sim.gateway_url());
    for header in [
        "x-ratelimit-limit: 2",
        "x-ratelimit-remaining: 1",
        "x-ratelimit-scope: user",
        "x-ratelimit-bucket:",
        "x-ratelimit-reset-after:",
        "x-ratelimit-reset:",
    ] {
        assert!(head.contains(header), "{header} missing in {head}");
    }
    http(&sim, "GET", "/api/v10/gateway", None).await;
    let (status, head, body) = http(&sim, "GET", "/api/v10/gateway", None).await;
    assert_eq!(status, 429);
    assert!(
        head.contains("x-ratelimit-global: true") && head.contains("retry-after: 1"),
        "{head}"
    );
    assert_eq!(body["global"], true);
    let retry_after = body["retry_after"].as_f64().unwrap();
    assert!(retry_after > 0.0 && retry_after <= 1.0);
    tokio::time::sleep(Duration::from_secs_f64(retry_after)).await;
    assert_eq!(http(&sim, "GET", "/api/v10/gateway", None).await.0, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_stops_every_task() {
    let sim = start(SimConfig {
        guilds: 2,
        rate: 1_000.0,
        ..SimConfig::default()
    })
    .await;
    let addr = sim.addr();
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim, None)).await;
    wait_until("traffic flowing", || sim.stats().dispatches_sent > 20).await;
    let token = sim.shutdown_token();
    tokio::time::timeout(DEADLINE, sim.shutdown())
        .await
        .expect("every task stops");
    assert!(token.is_cancelled());
    // The connection ends (without a close frame: the simulator went away).
    let end = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                break;
            }
        }
    });
    end.await.expect("the connection ends");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}

#[tokio::test]
async fn a_client_ignoring_op7_is_closed_with_4000_and_keeps_its_session() {
    let sim = start(SimConfig {
        heartbeat_interval_ms: 400,
        ..SimConfig::default()
    })
    .await;
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim, None)).await;
    wait_until("READY sent", || sim.stats().dispatches_sent >= 1).await;
    assert_eq!(sim.chaos(0, shardmesh_sim::Chaos::Reconnect), 1);
    assert_eq!(close_code(&mut socket).await, 4000);
    wait_until("the connection to end", || sim.stats().connections == 0).await;
    assert_eq!(sim.stats().sessions, 1, "the session stays resumable");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_cannot_block_shutdown() {
    let config = SimConfig {
        guilds: 4,
        rate: 20_000.0,
        heartbeat_interval_ms: 600_000,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim, None)).await;
    // Never read again: kernel buffers fill and the simulator's writes block.
    wait_until("writes to stall", || {
        let stats = sim.stats();
        stats.generated > 40_000 && stats.dispatches_sent + 1_000 < stats.generated
    })
    .await;
    tokio::time::timeout(DEADLINE, sim.shutdown())
        .await
        .expect("shutdown completes");
    drop(socket);
}
