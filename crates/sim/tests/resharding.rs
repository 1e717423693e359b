//! Re-sharding as Discord does it: sessions of two shard counts at once, each guild's
//! events to the matching shard of both, one logical id per event across the copies,
//! the recommended count under the control API, and one budget and pacing for all.
//!
//! Raw WebSocket clients, one reader task each, so the test can watch many sessions
//! at once and close some of them with a code of its choosing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use common::raw::{Socket, close_code, connect, next_json, send};
use common::{sim_request, start, unpaced, wait_until};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shardmesh_sim::{DispatchRecord, EventKind, SimConfig, Simulator};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const V10: &str = "v=10&encoding=json";

fn identify(sim: &Simulator, shard: [u32; 2]) -> Value {
    json!({"op": 2, "d": {
        "token": sim.config().token.expose(),
        "intents": 0x1_FFFF,
        "shard": shard,
        "properties": {"os": "linux", "browser": "raw", "device": "raw"},
    }})
}

/// A session of shard `[id, count]` and what its reader task received.
struct Live {
    shard: [u32; 2],
    sink: SplitSink<Socket, Message>,
    /// Every payload received after HELLO, in order.
    frames: Arc<Mutex<Vec<Value>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Live {
    /// Connects and identifies as `shard`; a task reads everything that arrives.
    async fn start(sim: &Simulator, shard: [u32; 2]) -> Self {
        let mut socket = connect(sim, V10).await;
        assert_eq!(next_json(&mut socket).await["op"], 10, "HELLO first");
        send(&mut socket, &identify(sim, shard)).await;
        let (sink, mut stream) = socket.split();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&frames);
        let reader = tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                let frame: Value = serde_json::from_str(&text).expect("JSON frames");
                into.lock().unwrap().push(frame);
            }
        });
        Self {
            shard,
            sink,
            frames,
            reader,
        }
    }

    fn dispatches(&self) -> Vec<Value> {
        let frames = self.frames.lock().unwrap();
        frames.iter().filter(|f| f["op"] == 0).cloned().collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.dispatches().iter().filter(|f| f["t"] == kind).count()
    }

    /// The session READY started ("" before READY).
    fn session(&self) -> String {
        let ready = self.dispatches().into_iter().find(|f| f["t"] == "READY");
        ready.map_or_else(String::new, |f| {
            f["d"]["session_id"].as_str().unwrap().to_owned()
        })
    }

    /// Whether it received op 9 INVALID SESSION with `d: false`.
    fn invalidated(&self) -> bool {
        let frames = self.frames.lock().unwrap();
        frames.iter().any(|f| f["op"] == 9 && f["d"] == false)
    }
}

/// The guild ids Discord's rule puts on `[shard, count]`.
fn guilds_of(sim: &Simulator, [shard, count]: [u32; 2]) -> BTreeSet<String> {
    sim.guilds()
        .iter()
        .filter(|g| (g.id >> 22) % u64::from(count) == u64::from(shard))
        .map(|g| g.id.to_string())
        .collect()
}

fn is_traffic(kind: EventKind) -> bool {
    EventKind::MIX.iter().any(|(mixed, _)| *mixed == kind)
}

/// Generated-traffic records from `since` on.
fn traffic_since(sim: &Simulator, since: u64) -> Vec<DispatchRecord> {
    let page = sim.log_since(since, usize::MAX);
    assert_eq!(page.dropped, 0);
    page.records
        .into_iter()
        .filter(|r| is_traffic(r.kind))
        .collect()
}

/// The unique id at `kind`'s [`EventKind::id_field`] in a dispatch's `d`.
fn unique_id(kind: EventKind, d: &Value) -> u64 {
    let field = kind.id_field().expect("traffic has an id");
    let at = field.split('.').fold(d, |value, key| &value[key]);
    at.as_str()
        .and_then(|id| id.parse().ok())
        .expect("a snowflake")
}

/// Starts every session of both sets and waits for their READY bursts.
async fn start_sets(sim: &Simulator, counts: &[u32]) -> Vec<Live> {
    let mut lives = Vec::new();
    for &count in counts {
        for id in 0..count {
            lives.push(Live::start(sim, [id, count]).await);
        }
    }
    wait_until("every session's READY and GUILD_CREATEs", || {
        lives.iter().all(|live| {
            live.count("READY") == 1
                && live.count("GUILD_CREATE") == guilds_of(sim, live.shard).len()
        })
    })
    .await;
    lives
}

/// Runs traffic until at least `events` more were generated, then stops it; returns
/// how many were generated meanwhile. Final once this returns: the traffic task
/// generates nothing after a stop, and this test's runtime has one thread.
async fn run_traffic(sim: &Simulator, events: u64) -> u64 {
    let before = sim.stats().generated;
    sim.start_traffic();
    wait_until("traffic to be generated", || {
        sim.stats().generated >= before + events
    })
    .await;
    sim.stop_traffic();
    sim.stats().generated - before
}

/// Traffic records of `live`'s session in the whole log.
fn session_traffic(sim: &Simulator, live: &Live) -> usize {
    let session = live.session();
    traffic_since(sim, 0)
        .iter()
        .filter(|r| r.session.to_string() == session)
        .count()
}

/// Asserts that what each live session received is what the ground truth says it was
/// sent, and that every traffic event it got belongs to a guild of its shard.
fn assert_sessions_match_truth(sim: &Simulator, lives: &[Live], since: u64) {
    let records = traffic_since(sim, since);
    for live in lives {
        let session = live.session();
        let by_seq: BTreeMap<u64, Value> = live
            .dispatches()
            .into_iter()
            .map(|f| (f["s"].as_u64().unwrap(), f))
            .collect();
        let guilds = guilds_of(sim, live.shard);
        for record in records.iter().filter(|r| r.session.to_string() == session) {
            assert_eq!(
                [record.shard, record.shard_count],
                live.shard,
                "the record names the session's set"
            );
            let frame = &by_seq[&record.seq];
            assert_eq!(frame["t"], record.kind.as_str());
            assert_eq!(unique_id(record.kind, &frame["d"]), record.id);
            let guild = frame["d"]["guild_id"].as_str().unwrap();
            assert!(
                guilds.contains(guild),
                "{guild} is not on shard {:?}",
                live.shard
            );
        }
    }
}

/// READY and `GUILD_CREATE` list the guilds of each session's own `[id, count]`, 4 per
/// shard of 8 and 2 per shard of 16 for 32 guilds.
fn assert_bursts_list_their_guilds(sim: &Simulator, lives: &[Live]) {
    for live in lives {
        let dispatches = live.dispatches();
        let ready = &dispatches[0]["d"];
        assert_eq!(ready["shard"], json!(live.shard));
        let listed: BTreeSet<String> = ready["guilds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, guilds_of(sim, live.shard), "{:?}", live.shard);
        let created: BTreeSet<String> = dispatches
            .iter()
            .filter(|f| f["t"] == "GUILD_CREATE")
            .map(|f| f["d"]["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(created, listed);
        let expected = if live.shard[1] == 8 { 4 } else { 2 };
        assert_eq!(
            listed.len(),
            expected,
            "guilds spread evenly over {:?}",
            live.shard
        );
    }
}

/// One logical id per generated event since `since`, with one copy in each set, on
/// the shards Discord's rule names.
fn assert_one_copy_per_set(sim: &Simulator, since: u64, generated: u64) {
    let records = traffic_since(sim, since);
    let mut copies: BTreeMap<u64, Vec<&DispatchRecord>> = BTreeMap::new();
    for record in &records {
        assert!(!record.replay);
        copies.entry(record.logical).or_default().push(record);
    }
    assert_eq!(copies.len() as u64, generated, "one logical id per event");
    for (logical, pair) in &copies {
        let counts: BTreeSet<u32> = pair.iter().map(|r| r.shard_count).collect();
        assert_eq!(counts, BTreeSet::from([8, 16]), "logical {logical}");
        assert_eq!(pair.len(), 2, "logical {logical}: once per set");
        assert_eq!(pair[0].id, pair[1].id, "the copies are the same event");
        assert_eq!(pair[0].kind, pair[1].kind);
        // 16 is a multiple of 8: a guild on shard s of 16 is on s % 8 of 8.
        let (old, new) = if pair[0].shard_count == 8 {
            (pair[0], pair[1])
        } else {
            (pair[1], pair[0])
        };
        assert_eq!(new.shard % 8, old.shard, "logical {logical}");
    }
}

#[tokio::test]
async fn two_sets_get_each_event_once_per_set_and_the_old_set_closed_with_1000_gets_no_more() {
    let sim = start(unpaced(SimConfig {
        shards: 8,
        guilds: 32,
        rate: 500.0,
        ..SimConfig::default()
    }))
    .await;
    sim.stop_traffic();
    let lives = start_sets(&sim, &[8, 16]).await;

    assert_bursts_list_their_guilds(&sim, &lives);

    let since = sim.stats().truth_records;
    let generated = run_traffic(&sim, 300).await;
    wait_until("both copies of every event sent and received", || {
        traffic_since(&sim, since).len() as u64 == 2 * generated
            && lives
                .iter()
                .all(|live| live.count_traffic() == session_traffic(&sim, live))
    })
    .await;

    assert_one_copy_per_set(&sim, since, generated);
    assert_sessions_match_truth(&sim, &lives, since);
    let stats = sim.stats();
    assert_eq!(
        stats.sessions_per_shard_count,
        BTreeMap::from([(8, 8), (16, 16)])
    );
    let per_set = |count| -> u64 { stats.dispatches_per_shard_count[&count].iter().sum() };
    assert_eq!(per_set(8), stats.dispatches_per_shard.iter().sum::<u64>());
    assert_eq!(
        per_set(8) + per_set(16),
        stats.dispatches_sent,
        "every frame written is counted in its set"
    );

    // The hand-over: the old set closes with 1000; only the new set gets events.
    let (mut old, new): (Vec<Live>, Vec<Live>) = lives.into_iter().partition(|l| l.shard[1] == 8);
    let old_sessions: BTreeSet<String> = old.iter().map(Live::session).collect();
    for live in &mut old {
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "re-sharded".into(),
        };
        live.sink.send(Message::Close(Some(normal))).await.unwrap();
    }
    wait_until("the old set's sessions to end", || {
        sim.stats().sessions_per_shard_count[&8] == 0 && sim.stats().sessions == 16
    })
    .await;
    let since = sim.stats().truth_records;
    let generated = run_traffic(&sim, 200).await;
    wait_until("every event sent once, to the new set", || {
        traffic_since(&sim, since).len() as u64 == generated
            && new
                .iter()
                .all(|live| live.count_traffic() == session_traffic(&sim, live))
    })
    .await;
    let records = traffic_since(&sim, since);
    assert!(records.iter().all(|r| r.shard_count == 16));
    assert!(
        records
            .iter()
            .all(|r| !old_sessions.contains(&r.session.to_string())),
        "a session closed with 1000 gets no more dispatches"
    );
    let logical: BTreeSet<u64> = records.iter().map(|r| r.logical).collect();
    assert_eq!(logical.len() as u64, generated);
    assert_sessions_match_truth(&sim, &new, since);
    for live in old.iter().chain(&new) {
        live.reader.abort();
    }
    sim.shutdown().await;
}

impl Live {
    /// Generated-traffic dispatches received.
    fn count_traffic(&self) -> usize {
        let traffic: BTreeSet<&str> = EventKind::MIX.iter().map(|(k, _)| k.as_str()).collect();
        self.dispatches()
            .iter()
            .filter(|f| f["t"].as_str().is_some_and(|t| traffic.contains(t)))
            .count()
    }
}

#[tokio::test]
async fn a_count_below_what_the_guilds_need_is_4011_and_any_count_above_is_accepted() {
    let sim = start(unpaced(SimConfig {
        shards: 4,
        guilds: 40,
        max_guilds_per_shard: 10,
        ..SimConfig::default()
    }))
    .await;
    for (shard, code) in [
        ([0, 2], 4011),
        ([1, 3], 4011),
        ([2, 2], 4010),
        ([0, 0], 4010),
    ] {
        let mut socket = connect(&sim, V10).await;
        send(&mut socket, &identify(&sim, shard)).await;
        assert_eq!(close_code(&mut socket).await, code, "{shard:?}");
    }
    let lives = [
        Live::start(&sim, [3, 4]).await,
        Live::start(&sim, [4, 5]).await,
        Live::start(&sim, [9, 10]).await,
    ];
    wait_until("READY bursts of 4, 5 and 10 shards", || {
        lives.iter().all(|live| {
            live.count("READY") == 1 && live.count("GUILD_CREATE") == 40 / live.shard[1] as usize
        })
    })
    .await;
    let stats = sim.stats();
    assert_eq!(stats.identifies, 3, "refused identifies start no session");
    assert_eq!(
        stats.sessions_per_shard_count,
        BTreeMap::from([(4, 1), (5, 1), (10, 1)])
    );
    for live in &lives {
        live.reader.abort();
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_recommended_count_changes_through_the_control_api() {
    let sim = start(SimConfig {
        shards: 8,
        guilds: 16,
        ..SimConfig::default()
    })
    .await;
    let http = common::rest_client(&sim);
    let recommended = || async {
        let info = http
            .gateway()
            .authed()
            .await
            .unwrap()
            .model()
            .await
            .unwrap();
        info.shards
    };
    assert_eq!(recommended().await, 8, "the configured count by default");
    assert_eq!(
        sim_request(&sim, "GET", "/_sim/recommended_shards", None).await,
        (200, json!({"shards": 8}))
    );
    let (status, body) = sim_request(
        &sim,
        "POST",
        "/_sim/recommended_shards",
        Some(&json!({"shards": 16})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"shards": 16})));
    assert_eq!(recommended().await, 16);
    assert_eq!(sim.recommended_shards(), 16);
    assert_eq!(sim.stats().recommended_shards, 16);

    for bad in [json!({"shards": 0}), json!({"shards": 70_000}), json!({})] {
        let (status, body) =
            sim_request(&sim, "POST", "/_sim/recommended_shards", Some(&bad)).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["code"].is_number(), "Discord's error shape: {body}");
    }
    assert_eq!(recommended().await, 16, "a refused change changes nothing");
    sim.set_recommended_shards(32).unwrap();
    assert_eq!(recommended().await, 32);
    assert!(sim.set_recommended_shards(0).is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn identify_pacing_and_the_session_budget_span_every_shard_count() {
    // Buckets are `shard_id % max_concurrency` whatever the count: shard 0 of 2 and
    // shard 0 of 4 share bucket 0; shard 1 of 4 is in bucket 1.
    let sim = start(SimConfig {
        shards: 2,
        guilds: 8,
        max_concurrency: 2,
        identify_interval_ms: 60_000,
        session_start_total: 10,
        ..SimConfig::default()
    })
    .await;
    let old = Live::start(&sim, [0, 2]).await;
    wait_until("the first READY", || old.count("READY") == 1).await;
    let too_soon = Live::start(&sim, [0, 4]).await;
    wait_until("op 9 for the new set's shard 0", || too_soon.invalidated()).await;
    let other_bucket = Live::start(&sim, [1, 4]).await;
    wait_until("READY for bucket 1", || other_bucket.count("READY") == 1).await;
    let stats = sim.stats();
    assert_eq!(stats.pacing_violations, 1);
    assert_eq!(stats.identifies, 2);
    assert_eq!(
        stats.session_start_remaining, 8,
        "both sets spend one budget"
    );
    assert_eq!(too_soon.count("READY"), 0);
    for live in [&old, &too_soon, &other_bucket] {
        live.reader.abort();
    }
    sim.shutdown().await;

    let sim = start(unpaced(SimConfig {
        shards: 2,
        guilds: 8,
        session_start_total: 2,
        ..SimConfig::default()
    }))
    .await;
    let lives = [
        Live::start(&sim, [0, 2]).await,
        Live::start(&sim, [0, 4]).await,
    ];
    wait_until("two READYs", || lives.iter().all(|l| l.count("READY") == 1)).await;
    let mut socket = connect(&sim, V10).await;
    send(&mut socket, &identify(&sim, [1, 4])).await;
    assert_eq!(
        close_code(&mut socket).await,
        4004,
        "the old set's identifies used up the budget the new set needed"
    );
    assert_eq!(sim.stats().session_start_remaining, 0);
    for live in &lives {
        live.reader.abort();
    }
    sim.shutdown().await;
}
