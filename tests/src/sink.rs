//! The collecting HTTP sink: the bot endpoint that `shardmesh consumer --sink http://...`
//! posts every event to, served from the test process. It records each POST (the node
//! it came to, the event, the arrival order, the status it answered) and answers 200,
//! or 500 for the events a [`FailRule`] picks, every time they come.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use shardmesh_harness::Id;

/// The body the sink answers a failed event with (the consumer's error text may quote it).
pub const FAILURE_BODY: &str = "the test sink fails this event on purpose";

/// Which events the sink answers with 500: a pure function of the event, so the same
/// event fails on every retry.
pub type FailRule = Arc<dyn Fn(&SinkEvent) -> bool + Send + Sync>;

/// One event as the HTTP sink posts it: the envelope fields and the raw gateway frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkEvent {
    /// `shard`.
    pub shard: u32,
    /// `shard_count`.
    pub shard_count: u32,
    /// `epoch`: the lease epoch of the gateway owner that published it.
    pub epoch: u64,
    /// `session`.
    pub session: String,
    /// `seq`.
    pub seq: u64,
    /// `event_type`.
    pub event_type: String,
    /// `guild_id` (a string, or null).
    pub guild_id: Option<String>,
    /// `received_at_ms`.
    pub received_at_ms: u64,
    /// `partition`: the stream it was read from.
    pub partition: u32,
    /// `offset` in that stream.
    pub offset: u64,
    /// `payload`: the gateway frame as Discord sent it.
    pub payload: Value,
}

impl SinkEvent {
    /// Reads the JSON object the sink posts.
    ///
    /// # Errors
    ///
    /// The first field missing or of the wrong type, by name.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let json: Value =
            serde_json::from_slice(body).map_err(|error| format!("not JSON: {error}"))?;
        let number = |name: &str| {
            json[name]
                .as_u64()
                .ok_or_else(|| format!("`{name}` is not a number in {}", shorten(&json)))
        };
        let small = |name: &str| {
            number(name).and_then(|value| {
                u32::try_from(value).map_err(|_| format!("`{name}` = {value} is not a u32"))
            })
        };
        let text = |name: &str| {
            json[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("`{name}` is not a string in {}", shorten(&json)))
        };
        let guild_id = match &json["guild_id"] {
            Value::Null => None,
            Value::String(id) => Some(id.clone()),
            other => return Err(format!("`guild_id` is neither a string nor null: {other}")),
        };
        if !json["payload"].is_object() {
            return Err(format!("`payload` is not an object in {}", shorten(&json)));
        }
        Ok(Self {
            shard: small("shard")?,
            shard_count: small("shard_count")?,
            epoch: number("epoch")?,
            session: text("session")?,
            seq: number("seq")?,
            event_type: text("event_type")?,
            guild_id,
            received_at_ms: number("received_at_ms")?,
            partition: small("partition")?,
            offset: number("offset")?,
            payload: json["payload"].clone(),
        })
    }

    /// The delivery id `(shard, session, seq)`.
    pub fn id(&self) -> Id {
        (self.shard, self.session.clone(), self.seq)
    }
}

/// Where consumer nodes post their events, read back in arrival order: the test's own
/// [`Sink`], or a bot's endpoint that records what it handled (the Python receiver,
/// [`crate::python_receiver`]). Consumer fleets, [`crate::deliveries::wait_caught_up`]
/// and [`crate::deliveries::GroupReport`] work with either.
pub trait EventSink {
    /// The URL consumer `node` of `group` posts to.
    fn url(&self, group: &str, node: &str) -> String;
    /// The POSTs from arrival index `from` on.
    fn posts_since(&self, from: usize) -> Vec<Post>;
}

/// One POST the sink received.
#[derive(Debug, Clone)]
pub struct Post {
    /// Arrival order over all nodes, from 0.
    pub index: usize,
    /// When it arrived.
    pub at: Instant,
    /// The consumer group, from the path `/sink/<group>/<node>`.
    pub group: String,
    /// The consumer node, from the path.
    pub node: String,
    /// What the sink answered.
    pub status: u16,
    /// The event.
    pub event: SinkEvent,
}

impl Post {
    /// Whether the sink answered 2xx: the handler succeeded.
    pub fn handled(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct Record {
    posts: Vec<Post>,
    /// Bodies that were not a valid event, with the reason; answered 400.
    malformed: Vec<String>,
}

struct SinkState {
    /// A std `Mutex`: never held across an `.await`.
    record: Mutex<Record>,
    fail: Option<FailRule>,
    /// How long the answer to each of a node's POSTs is held back (the handler's work),
    /// by node. A std `Mutex`: never held across an `.await`.
    delays: Mutex<HashMap<String, Duration>>,
}

impl SinkState {
    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sink's HTTP server on 127.0.0.1 and what it recorded. Stops on drop.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("addr", &self.addr)
            .field("posts", &self.count())
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Starts a sink that answers 200 to everything, or 500 where `fail` says so.
    ///
    /// # Panics
    ///
    /// When no local port can be bound.
    pub async fn start(fail: Option<FailRule>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink");
        let addr = listener.local_addr().expect("the sink's address");
        let state = Arc::new(SinkState {
            record: Mutex::new(Record::default()),
            fail,
            delays: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/sink/{group}/{node}", post(receive))
            .with_state(Arc::clone(&state));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        Self {
            addr,
            state,
            shutdown,
        }
    }

    /// The URL consumer `node` of `group` posts to: `http://ADDR/sink/<group>/<node>`.
    pub fn url(&self, group: &str, node: &str) -> String {
        format!("http://{}/sink/{group}/{node}", self.addr)
    }

    /// Holds back the answer to each POST of `node` for `delay` from now on, as a handler
    /// doing work would: the node then has an event in flight most of the time.
    pub fn set_delay(&self, node: &str, delay: Duration) {
        self.state
            .delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.to_owned(), delay);
    }

    /// POSTs received so far.
    pub fn count(&self) -> usize {
        self.state.lock().posts.len()
    }

    /// The POSTs from arrival index `from` on.
    pub fn posts_since(&self, from: usize) -> Vec<Post> {
        let record = self.state.lock();
        record
            .posts
            .get(from..)
            .map(<[Post]>::to_vec)
            .unwrap_or_default()
    }

    /// Every POST so far, in arrival order.
    pub fn posts(&self) -> Vec<Post> {
        self.posts_since(0)
    }

    /// Bodies that were not a valid event, with the reason.
    pub fn malformed(&self) -> Vec<String> {
        self.state.lock().malformed.clone()
    }
}

impl EventSink for Sink {
    fn url(&self, group: &str, node: &str) -> String {
        Sink::url(self, group, node)
    }

    fn posts_since(&self, from: usize) -> Vec<Post> {
        Sink::posts_since(self, from)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn receive(
    State(state): State<Arc<SinkState>>,
    Path((group, node)): Path<(String, String)>,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let event = match SinkEvent::parse(&body) {
        Ok(event) => event,
        Err(reason) => {
            state
                .lock()
                .malformed
                .push(format!("from {group}/{node}: {reason}"));
            return (StatusCode::BAD_REQUEST, "malformed event");
        }
    };
    let fails = state.fail.as_ref().is_some_and(|fail| fail(&event));
    let (status, body) = if fails {
        (StatusCode::INTERNAL_SERVER_ERROR, FAILURE_BODY)
    } else {
        (StatusCode::OK, "ok")
    };
    let delay = state
        .delays
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&node)
        .copied();
    {
        let mut record = state.lock();
        let index = record.posts.len();
        record.posts.push(Post {
            index,
            at: Instant::now(),
            group,
            node,
            status: status.as_u16(),
            event,
        });
    }
    if let Some(delay) = delay {
        // The handler's work, not a wait for anything.
        tokio::time::sleep(delay).await;
    }
    (status, body)
}

/// `value` as JSON, cut to 200 characters.
fn shorten(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_parses_with_a_null_or_string_guild_id() {
        let body = br#"{"shard":3,"shard_count":16,"epoch":2,"session":"s","seq":9,
            "event_type":"MESSAGE_CREATE","guild_id":"81","received_at_ms":5,
            "partition":3,"offset":40,"payload":{"op":0,"s":9,"t":"MESSAGE_CREATE","d":{}}}"#;
        let event = SinkEvent::parse(body).unwrap();
        assert_eq!(event.id(), (3, "s".to_owned(), 9));
        assert_eq!(event.guild_id.as_deref(), Some("81"));
        let null = String::from_utf8_lossy(body).replace(r#""81""#, "null");
        assert_eq!(SinkEvent::parse(null.as_bytes()).unwrap().guild_id, None);
        let missing = String::from_utf8_lossy(body).replace(r#""seq":9,"#, "");
        assert!(
            SinkEvent::parse(missing.as_bytes())
                .unwrap_err()
                .contains("`seq`")
        );
    }
}
