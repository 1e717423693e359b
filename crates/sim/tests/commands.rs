//! Gateway commands (ops 3, 4, 8, 31, 43) sent by twilight shards are answered as
//! Discord documents, through the session's dispatch path, and recorded once.

mod common;

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::Value;
use shardmesh_sim::{BOT_USER_ID, EventKind, SimConfig, Simulator};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use twilight_gateway::{ConfigBuilder, Intents, Message, Shard, ShardId};
use twilight_model::gateway::payload::incoming::{
    MemberChunk, VoiceServerUpdate, VoiceStateUpdate,
};
use twilight_model::gateway::payload::outgoing::{
    RequestGuildMembers, UpdatePresence, UpdateVoiceState,
};
use twilight_model::gateway::presence::{Activity, ActivityType, MinimalActivity, Status};
use twilight_model::id::Id;

use common::{DEADLINE, instant_queue, start};

fn config(shards: u32) -> SimConfig {
    SimConfig {
        shards,
        guilds: 2 * shards,
        guild_members: 2_500,
        ..SimConfig::default()
    }
}

/// A shard whose own command rate limiter is off, so the simulator's is the one tested.
fn shard(sim: &Simulator, id: u32, intents: Intents) -> Shard {
    let config = ConfigBuilder::new(sim.config().token.expose().to_owned(), intents)
        .proxy_url(sim.gateway_url().to_owned())
        .queue(instant_queue())
        .ratelimit_messages(false)
        .build();
    Shard::with_config(ShardId::new(id, sim.config().shards), config)
}

/// One dispatch as it came off the wire.
struct Dispatch {
    t: String,
    s: u64,
    d: Value,
}

/// The next dispatch, or the close code if the connection closed first.
async fn next(shard: &mut Shard) -> Result<Dispatch, Option<u16>> {
    loop {
        let message = tokio::time::timeout(DEADLINE, shard.next())
            .await
            .expect("a message within the deadline")
            .expect("the stream goes on")
            .expect("a readable message");
        match message {
            Message::Close(frame) => return Err(frame.map(|f| f.code)),
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["op"] == 0 {
                    return Ok(Dispatch {
                        t: frame["t"].as_str().unwrap().to_owned(),
                        s: frame["s"].as_u64().unwrap(),
                        d: frame["d"].clone(),
                    });
                }
            }
        }
    }
}

async fn dispatch(shard: &mut Shard) -> Dispatch {
    next(shard).await.expect("a dispatch, not a close")
}

/// Reads READY and the shard's `GUILD_CREATE`s.
async fn identified(shard: &mut Shard, guilds: usize) {
    assert_eq!(dispatch(shard).await.t, "READY");
    for _ in 0..guilds {
        assert_eq!(dispatch(shard).await.t, "GUILD_CREATE");
    }
}

fn guild(sim: &Simulator, index: usize) -> u64 {
    sim.guilds()[index].id
}

#[tokio::test]
async fn all_members_come_in_chunks_of_1000_then_the_request_is_rate_limited() {
    let sim = start(config(1)).await;
    let mut shard = shard(&sim, 0, Intents::all());
    identified(&mut shard, 2).await;
    let guild_id = guild(&sim, 1);
    let request = RequestGuildMembers::builder(Id::new(guild_id))
        .nonce("all-1")
        .presences(true)
        .query("", None);
    shard.command(&request);

    let mut seqs = Vec::new();
    let mut sizes = Vec::new();
    for index in 0..3 {
        let chunk = dispatch(&mut shard).await;
        assert_eq!(chunk.t, "GUILD_MEMBERS_CHUNK");
        seqs.push(chunk.s);
        let parsed: MemberChunk = serde_json::from_value(chunk.d.clone()).unwrap();
        assert_eq!(parsed.guild_id.get(), guild_id);
        assert_eq!((parsed.chunk_index, parsed.chunk_count), (index, 3));
        assert_eq!(parsed.nonce.as_deref(), Some("all-1"));
        assert_eq!(parsed.presences.len(), parsed.members.len());
        sizes.push(parsed.members.len());
        if index == 0 {
            assert_eq!(parsed.members[0].user.id.get(), BOT_USER_ID);
            assert!(parsed.members[0].user.bot);
        }
    }
    assert_eq!(sizes, [1_000, 1_000, 500]);
    assert_eq!(seqs, [4, 5, 6], "after READY and two GUILD_CREATEs");

    shard.command(&request);
    let limited = dispatch(&mut shard).await;
    assert_eq!(limited.t, "RATE_LIMITED");
    assert_eq!(limited.s, 7);
    assert_eq!(limited.d["opcode"], 8);
    let retry_after = limited.d["retry_after"].as_f64().unwrap();
    assert!(retry_after > 0.0 && retry_after <= 30.0, "{retry_after}");
    assert_eq!(limited.d["meta"]["guild_id"], guild_id.to_string());
    assert_eq!(limited.d["meta"]["nonce"], "all-1");

    let sent: Vec<(u64, EventKind)> = sim
        .log_since(0, 100)
        .records
        .iter()
        .filter(|r| r.seq > 3)
        .map(|r| (r.seq, r.kind))
        .collect();
    assert_eq!(
        sent,
        [
            (4, EventKind::GuildMembersChunk),
            (5, EventKind::GuildMembersChunk),
            (6, EventKind::GuildMembersChunk),
            (7, EventKind::RateLimited),
        ]
    );
    let ops: Vec<u64> = sim
        .commands_since(0, 100)
        .records
        .iter()
        .map(|r| r.op)
        .collect();
    assert_eq!(ops, [8, 8]);
}

#[tokio::test]
async fn queries_honour_the_limit_and_unknown_user_ids_are_not_found() {
    let sim = start(config(1)).await;
    // Without GUILD_PRESENCES, `presences: true` is ignored.
    let mut shard = shard(&sim, 0, Intents::GUILDS | Intents::GUILD_MEMBERS);
    identified(&mut shard, 2).await;
    let guild_id = guild(&sim, 0);
    let query = RequestGuildMembers::builder(Id::new(guild_id))
        .presences(true)
        .query("MEMBER-2", Some(5));
    shard.command(&query);
    let chunk = dispatch(&mut shard).await;
    let parsed: MemberChunk = serde_json::from_value(chunk.d.clone()).unwrap();
    let names: Vec<&str> = parsed
        .members
        .iter()
        .map(|m| m.user.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "member-2",
            "member-20",
            "member-21",
            "member-22",
            "member-23"
        ]
    );
    assert_eq!((parsed.chunk_index, parsed.chunk_count), (0, 1));
    assert!(chunk.d.get("presences").is_none(), "{}", chunk.d);
    assert!(chunk.d.get("nonce").is_none());

    let unknown = guild_id | 0x3F_FFFF;
    let by_id = RequestGuildMembers::builder(Id::new(guild_id))
        .user_ids(vec![Id::new(BOT_USER_ID), Id::new(unknown)])
        .unwrap();
    shard.command(&by_id);
    let parsed: MemberChunk = serde_json::from_value(dispatch(&mut shard).await.d).unwrap();
    assert_eq!(parsed.members.len(), 1);
    assert_eq!(parsed.members[0].user.id.get(), BOT_USER_ID);
    assert_eq!(parsed.not_found, [Id::new(unknown)]);
}

#[tokio::test]
async fn joining_voice_gives_state_and_server_and_leaving_only_state() {
    let sim = start(config(1)).await;
    let mut shard = shard(&sim, 0, Intents::all());
    identified(&mut shard, 2).await;
    let info = &sim.guilds()[0];
    let (guild_id, channel_id) = (info.id, info.channels[2]);
    shard.command(&UpdateVoiceState::new(
        Id::new(guild_id),
        Some(Id::new(channel_id)),
        true,
        false,
    ));
    let state = dispatch(&mut shard).await;
    assert_eq!(state.t, "VOICE_STATE_UPDATE");
    let parsed: VoiceStateUpdate = serde_json::from_value(state.d).unwrap();
    assert_eq!(parsed.0.user_id.get(), BOT_USER_ID);
    assert_eq!(parsed.0.channel_id.map(Id::get), Some(channel_id));
    assert!(parsed.0.self_deaf && !parsed.0.self_mute);
    let server = dispatch(&mut shard).await;
    assert_eq!(server.t, "VOICE_SERVER_UPDATE");
    let parsed: VoiceServerUpdate = serde_json::from_value(server.d).unwrap();
    assert_eq!(parsed.guild_id.get(), guild_id);
    assert!(parsed.endpoint.is_some() && !parsed.token.is_empty());

    shard.command(&UpdateVoiceState::new(
        Id::new(guild_id),
        None,
        false,
        false,
    ));
    let left = dispatch(&mut shard).await;
    assert_eq!(left.t, "VOICE_STATE_UPDATE");
    assert_eq!(left.d["channel_id"], Value::Null);
    // A marker command: its answer must be the very next dispatch (no server update).
    shard.send(format!(r#"{{"op":31,"d":{{"guild_ids":["{guild_id}"]}}}}"#));
    assert_eq!(dispatch(&mut shard).await.t, "SOUNDBOARD_SOUNDS");
}

#[tokio::test]
async fn soundboard_sounds_come_per_guild_and_channel_info_lists_channels() {
    let sim = start(config(1)).await;
    let mut shard = shard(&sim, 0, Intents::all());
    identified(&mut shard, 2).await;
    let (first, second) = (guild(&sim, 0), guild(&sim, 1));
    shard.send(format!(
        r#"{{"op":31,"d":{{"guild_ids":["{first}","{second}"]}}}}"#
    ));
    for guild_id in [first, second] {
        let sounds = dispatch(&mut shard).await;
        assert_eq!(sounds.t, "SOUNDBOARD_SOUNDS");
        assert_eq!(sounds.d["guild_id"], guild_id.to_string());
        assert_eq!(sounds.d["soundboard_sounds"], serde_json::json!([]));
    }
    shard.send(format!(
        r#"{{"op":43,"d":{{"guild_id":"{second}","fields":["status","voice_start_time"]}}}}"#
    ));
    let info = dispatch(&mut shard).await;
    assert_eq!(info.t, "CHANNEL_INFO");
    assert_eq!(info.d["guild_id"], second.to_string());
    let channels = info.d["channels"].as_array().unwrap();
    let ids: Vec<String> = sim.guilds()[1]
        .channels
        .iter()
        .map(u64::to_string)
        .collect();
    assert_eq!(
        channels
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    assert!(
        channels
            .iter()
            .all(|c| c["status"].is_null() && c.get("voice_start_time").is_some())
    );
}

#[tokio::test]
async fn guilds_of_another_shard_get_no_answer() {
    let sim = start(config(2)).await;
    let mut shard = shard(&sim, 0, Intents::all());
    identified(&mut shard, 2).await;
    let other = sim.guilds().iter().find(|g| g.shard == 1).unwrap().id;
    let own = sim.guilds().iter().find(|g| g.shard == 0).unwrap().id;
    shard.command(&RequestGuildMembers::builder(Id::new(other)).query("", None));
    shard.send(format!(
        r#"{{"op":31,"d":{{"guild_ids":["{other}","{own}"]}}}}"#
    ));
    let next = dispatch(&mut shard).await;
    assert_eq!(next.t, "SOUNDBOARD_SOUNDS");
    assert_eq!(next.d["guild_id"], own.to_string());
    let ops: Vec<u64> = sim
        .commands_since(0, 10)
        .records
        .iter()
        .map(|r| r.op)
        .collect();
    assert_eq!(ops, [8, 31], "ignored commands are recorded too");
}

#[tokio::test]
async fn a_presence_update_is_recorded_exactly_once_and_served_over_http() {
    let sim = start(config(1)).await;
    let mut shard = shard(&sim, 0, Intents::all());
    identified(&mut shard, 2).await;
    let activity = Activity::from(MinimalActivity {
        kind: ActivityType::Playing,
        name: "simulating".into(),
        url: None,
    });
    shard.command(&UpdatePresence::new([activity], false, None, Status::Idle).unwrap());
    // The marker's answer proves the presence update was read before it.
    let own = guild(&sim, 0);
    shard.send(format!(r#"{{"op":31,"d":{{"guild_ids":["{own}"]}}}}"#));
    assert_eq!(dispatch(&mut shard).await.t, "SOUNDBOARD_SOUNDS");

    let page = sim.commands_since(0, 100);
    let presences: Vec<_> = page.records.iter().filter(|r| r.op == 3).collect();
    assert_eq!(presences.len(), 1);
    let record = presences[0];
    assert_eq!(record.payload["status"], "idle");
    assert_eq!(record.payload["activities"][0]["name"], "simulating");
    assert_eq!(record.shard, 0);
    assert_eq!(sim.commands_since(page.next, 100).records.len(), 0);

    let body = http_get(&sim, "/_sim/commands?since=1").await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    assert_eq!(page["records"][0]["op"], 31);
    assert_eq!(page["records"][0]["session"], record.session.to_string());
    assert_eq!(page["next"], 2);
}

#[tokio::test]
async fn more_than_120_messages_in_a_minute_close_with_4008() {
    let sim = start(config(1)).await;
    let mut shard = shard(&sim, 0, Intents::all());
    identified(&mut shard, 2).await;
    let activity = Activity::from(MinimalActivity {
        kind: ActivityType::Playing,
        name: "flooding".into(),
        url: None,
    });
    let presence = UpdatePresence::new([activity], false, None, Status::Online).unwrap();
    for _ in 0..130 {
        shard.command(&presence);
    }
    let closed = loop {
        if let Err(code) = next(&mut shard).await {
            break code;
        }
    };
    assert_eq!(closed, Some(4008));
    // IDENTIFY was the first of the 120 (and a jittered first heartbeat may have
    // been another); the 121st message was refused unrecorded.
    let recorded = sim.commands_since(0, 1_000).records.len();
    assert!((118..=119).contains(&recorded), "{recorded} recorded");
}

/// A plain HTTP/1.1 GET against the simulator; returns the body.
async fn http_get(sim: &Simulator, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

mod raw {
    //! A raw WebSocket client, to drop a connection between two reads.

    use futures_util::{SinkExt as _, StreamExt as _};
    use serde_json::{Value, json};
    use shardmesh_sim::Simulator;
    use tokio_tungstenite::tungstenite::Message;

    use super::DEADLINE;

    pub type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    pub async fn connect(sim: &Simulator) -> Socket {
        let url = format!("{}/?v=10&encoding=json", sim.gateway_url());
        let mut socket = tokio_tungstenite::connect_async(url).await.unwrap().0;
        assert_eq!(next(&mut socket).await["op"], 10, "HELLO first");
        socket
    }

    pub async fn next(socket: &mut Socket) -> Value {
        loop {
            let message = tokio::time::timeout(DEADLINE, socket.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("no transport error");
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    pub async fn send(socket: &mut Socket, payload: Value) {
        socket
            .send(Message::text(payload.to_string()))
            .await
            .unwrap();
    }

    /// Reads until a close frame and returns its code.
    pub async fn close_code(socket: &mut Socket) -> u16 {
        loop {
            let message = tokio::time::timeout(DEADLINE, socket.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("no transport error");
            if let Message::Close(frame) = message {
                return frame.map_or(1005, |f| f.code.into());
            }
        }
    }

    pub fn identify(sim: &Simulator) -> Value {
        json!({"op": 2, "d": {
            "token": sim.config().token.expose(),
            "intents": 1 | (1 << 7),
            "properties": {"os": "linux", "browser": "raw", "device": "raw"},
        }})
    }
}

#[tokio::test]
async fn command_answers_are_replayed_on_resume() {
    let sim = start(config(1)).await;
    let mut socket = raw::connect(&sim).await;
    raw::send(&mut socket, raw::identify(&sim)).await;
    let ready = raw::next(&mut socket).await;
    let session_id = ready["d"]["session_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(raw::next(&mut socket).await["t"], "GUILD_CREATE");
    }
    let info = &sim.guilds()[0];
    let (guild_id, channel_id) = (info.id.to_string(), info.channels[1].to_string());
    raw::send(
        &mut socket,
        serde_json::json!({"op": 4, "d": {"guild_id": guild_id, "channel_id": channel_id, "self_mute": false, "self_deaf": false}}),
    )
    .await;
    raw::send(
        &mut socket,
        serde_json::json!({"op": 31, "d": {"guild_ids": [guild_id]}}),
    )
    .await;
    let mut answered = Vec::new();
    for _ in 0..3 {
        let frame = raw::next(&mut socket).await;
        answered.push((
            frame["s"].as_u64().unwrap(),
            frame["t"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        answered,
        [
            (4, "VOICE_STATE_UPDATE".to_owned()),
            (5, "VOICE_SERVER_UPDATE".to_owned()),
            (6, "SOUNDBOARD_SOUNDS".to_owned()),
        ]
    );
    // Drop the TCP connection without a close frame: the session stays resumable.
    drop(socket);
    common::wait_until("the connection to end", || sim.stats().connections == 0).await;

    let mut socket = raw::connect(&sim).await;
    let resume = serde_json::json!({"op": 6, "d": {
        "token": sim.config().token.expose(),
        "session_id": session_id,
        "seq": 3,
    }});
    raw::send(&mut socket, resume).await;
    let mut replayed = Vec::new();
    for _ in 0..4 {
        let frame = raw::next(&mut socket).await;
        replayed.push((
            frame["s"].as_u64().unwrap(),
            frame["t"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(replayed[..3], answered[..]);
    assert_eq!(replayed[3].1, "RESUMED");

    let replays: Vec<(u64, EventKind)> = sim
        .log_since(0, 100)
        .records
        .iter()
        .filter(|r| r.replay)
        .map(|r| (r.seq, r.kind))
        .collect();
    assert_eq!(
        replays,
        [
            (4, EventKind::VoiceStateUpdate),
            (5, EventKind::VoiceServerUpdate),
            (6, EventKind::SoundboardSounds),
        ]
    );
}

#[tokio::test]
async fn a_malformed_command_is_recorded_then_closed_with_4002() {
    let sim = start(config(1)).await;
    let mut socket = raw::connect(&sim).await;
    raw::send(&mut socket, raw::identify(&sim)).await;
    for _ in 0..3 {
        assert_eq!(raw::next(&mut socket).await["op"], 0);
    }
    let guild_id = sim.guilds()[0].id.to_string();
    // Neither `query` nor `user_ids`: Discord requires one.
    raw::send(
        &mut socket,
        serde_json::json!({"op": 8, "d": {"guild_id": guild_id}}),
    )
    .await;
    assert_eq!(raw::close_code(&mut socket).await, 4002);
    let records = sim.commands_since(0, 10).records;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].payload,
        serde_json::json!({"guild_id": guild_id})
    );
}
