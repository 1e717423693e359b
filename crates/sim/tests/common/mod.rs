//! Helpers shared by the simulator's integration tests: start a simulator, drive real
//! twilight shards against it, record what they received, compare with ground truth.

#![allow(dead_code, clippy::missing_panics_doc)]

pub mod raw;

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use shardmesh_sim::{SimConfig, Simulator};
use twilight_gateway::queue::{InMemoryQueue, Queue};
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, Message, Shard, ShardId,
};
use twilight_model::gateway::event::GatewayEvent;
use twilight_model::gateway::payload::incoming::GuildCreate;

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// A config without identify pacing (tests that re-identify on purpose).
pub fn unpaced(config: SimConfig) -> SimConfig {
    SimConfig {
        identify_interval_ms: 0,
        identify_slack_ms: 0,
        ..config
    }
}

/// Polls `done` every 10 ms until it holds; fails the test after [`DEADLINE`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A twilight REST client for the simulator's API, without twilight's rate limiter (the
/// tests watch the simulator's own limits).
pub fn rest_client(sim: &Simulator) -> twilight_http::Client {
    twilight_http::Client::builder()
        .proxy(sim.http_proxy(), true)
        .token(sim.config().token.expose().to_owned())
        .ratelimiter(None)
        .build()
}

/// A queue that grants at once (pacing is the simulator's business in most tests).
pub fn instant_queue() -> InMemoryQueue {
    InMemoryQueue::new(0, 1_000, Duration::from_secs(86_400), 1_000)
}

pub fn shard(sim: &Simulator, id: u32, total: u32) -> Client<InMemoryQueue> {
    shard_with(sim, id, total, Intents::all(), instant_queue())
}

pub fn shard_with<Q: Queue>(
    sim: &Simulator,
    id: u32,
    total: u32,
    intents: Intents,
    queue: Q,
) -> Client<Q> {
    let config = ConfigBuilder::new(sim.config().token.expose().to_owned(), intents)
        .proxy_url(sim.gateway_url().to_owned())
        .queue(queue)
        .build();
    Client {
        shard: Shard::with_config(ShardId::new(id, total), config),
        received: Vec::new(),
        closes: Vec::new(),
        session: String::new(),
        invalid_sessions: Vec::new(),
        reconnects: 0,
        earlier: Vec::new(),
        messages: Vec::new(),
    }
}

/// One dispatch as a client saw it, or as the ground truth says it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub session: String,
    pub seq: u64,
    pub kind: String,
    pub id: u64,
}

/// A twilight shard and everything it received.
pub struct Client<Q> {
    pub shard: Shard<Q>,
    pub received: Vec<Seen>,
    pub closes: Vec<Option<u16>>,
    /// The session of the last READY.
    pub session: String,
    pub invalid_sessions: Vec<bool>,
    pub reconnects: usize,
    /// What an earlier client of the same shard received (a hand-over's old owner):
    /// the ground truth shows it first.
    pub earlier: Vec<Seen>,
    /// Every `MESSAGE_CREATE` received, as twilight parsed it.
    pub messages: Vec<twilight_model::channel::Message>,
}

/// The unique id the simulator put in a dispatch (0 for READY and RESUMED).
pub fn unique_id(event: &Event) -> u64 {
    match event {
        Event::MessageCreate(m) => m.id.get(),
        Event::MessageUpdate(m) => m.id.get(),
        Event::MessageDelete(m) => m.id.get(),
        Event::TypingStart(t) => t.user_id.get(),
        Event::PresenceUpdate(p) => p.user.id().get(),
        Event::MemberAdd(m) => m.member.user.id.get(),
        Event::InteractionCreate(i) => i.id.get(),
        Event::GuildCreate(g) => match &**g {
            GuildCreate::Available(guild) => guild.id.get(),
            GuildCreate::Unavailable(guild) => guild.id.get(),
        },
        Event::Ready(_) | Event::Resumed => 0,
        other => panic!("unexpected event {:?}", other.kind()),
    }
}

impl<Q: Queue + Unpin> Client<Q> {
    /// Reads the shard until `done` holds (checked after every message); every text
    /// message must parse with twilight-model.
    pub async fn pump_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let end = tokio::time::Instant::now() + DEADLINE;
        while !done(self) {
            let next = tokio::time::timeout_at(end, self.shard.next()).await;
            let Ok(next) = next else {
                panic!(
                    "timed out waiting for {what}; received {}",
                    self.received.len()
                );
            };
            match next {
                None => panic!("shard stream ended while waiting for {what}"),
                Some(Err(error)) => panic!("receive error while waiting for {what}: {error}"),
                Some(Ok(message)) => self.process(message),
            }
        }
    }

    /// Reads until the shard's stream ends (after a fatal close).
    pub async fn pump_to_end(&mut self) {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(end, self.shard.next()).await {
                Err(elapsed) => panic!("shard did not stop: {elapsed}"),
                Ok(None) => return,
                Ok(Some(Err(_))) => {}
                Ok(Some(Ok(message))) => self.process(message),
            }
        }
    }

    fn process(&mut self, message: Message) {
        let text = match message {
            Message::Close(frame) => {
                self.closes.push(frame.map(|f: CloseFrame<'_>| f.code));
                return;
            }
            Message::Text(text) => text,
        };
        let parsed = twilight_gateway::parse(text.clone(), EventTypeFlags::all())
            .unwrap_or_else(|e| panic!("twilight cannot parse {text}: {e:?}"));
        match parsed {
            Some(GatewayEvent::Dispatch(seq, event)) => {
                let event = Event::from(event);
                if let Event::Ready(ready) = &event {
                    self.session.clone_from(&ready.session_id);
                }
                if let Event::MessageCreate(message) = &event {
                    self.messages.push(message.message.clone());
                }
                self.received.push(Seen {
                    session: self.session.clone(),
                    seq,
                    kind: event.kind().name().unwrap_or("?").to_owned(),
                    id: unique_id(&event),
                });
            }
            Some(GatewayEvent::InvalidateSession(resumable)) => {
                self.invalid_sessions.push(resumable);
            }
            Some(GatewayEvent::Reconnect) => self.reconnects += 1,
            Some(_) => {}
            None => panic!("twilight skipped {text}"),
        }
    }

    pub fn count(&self, kind: &str) -> usize {
        self.received.iter().filter(|s| s.kind == kind).count()
    }

    /// Asserts that within each session the dispatches (RESUMED aside) carry seqs
    /// 1, 2, 3, ... with no gap and no repeat.
    pub fn assert_no_gap_no_repeat(&self) {
        let mut sessions: Vec<&str> = self.received.iter().map(|s| s.session.as_str()).collect();
        sessions.dedup();
        for session in sessions {
            let seqs: Vec<u64> = self
                .received
                .iter()
                .filter(|s| s.session == session && s.kind != "RESUMED")
                .map(|s| s.seq)
                .collect();
            let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
            assert_eq!(seqs, expected, "session {session}");
        }
    }
}

/// Sends one HTTP/1.1 request to the simulator (for `/_sim` routes, which twilight
/// has no requests for) and returns the status and the JSON body (`Null` if empty).
pub async fn sim_request(
    sim: &Simulator,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let body = body.map(ToString::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(sim.http_proxy()).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let response = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("the simulator answers in time")
        .expect("the simulator answers");
    let text = String::from_utf8(response).expect("the response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    (status, body)
}

/// What the ground truth says was sent to `shard`, in order.
pub fn truth(sim: &Simulator, shard: u32) -> Vec<Seen> {
    sim.log_since(0, usize::MAX)
        .records
        .iter()
        .filter(|r| r.shard == shard)
        .map(|r| Seen {
            session: r.session.to_string(),
            seq: r.seq,
            kind: r.kind.as_str().to_owned(),
            id: r.id,
        })
        .collect()
}

impl<Q: Queue + Unpin> Client<Q> {
    /// Stops traffic, reads until the shard has everything the ground truth shows
    /// for `shard` and nothing more arrives for a moment, then asserts the two are the
    /// same, one for one, in order.
    pub async fn assert_matches_truth(&mut self, sim: &Simulator, shard: u32) {
        sim.stop_traffic();
        let total = |c: &Self| c.earlier.len() + c.received.len();
        loop {
            self.pump_until("everything sent", |c| total(c) >= truth(sim, shard).len())
                .await;
            // Quiescence: a batch generated just before the stop may still be in flight.
            let quiet = tokio::time::timeout(Duration::from_millis(200), self.shard.next()).await;
            match quiet {
                Err(_) if total(self) == truth(sim, shard).len() => break,
                Err(_) => {}
                Ok(Some(Ok(message))) => self.process(message),
                Ok(other) => panic!("shard stream failed: {:?}", other.map(Result::err)),
            }
        }
        let mut seen = self.earlier.clone();
        seen.extend(self.received.iter().cloned());
        assert_eq!(
            truth(sim, shard),
            seen,
            "ground truth differs from what shard {shard} received"
        );
    }
}
