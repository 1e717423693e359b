//! What the demo compares: the simulator's ground truth (every dispatch it wrote) and
//! what the collector, the consumers' HTTP sink, received.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use shardmesh_sim::{EventKind, SessionId, Simulator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A dispatch's identity in the simulator: its session and seq. A RESUME replay
/// carries the same pair again, so each pair counts once.
type DispatchKey = (SessionId, u64);

/// One dispatch the simulator wrote (the first time).
#[derive(Debug, Clone, Copy)]
struct Dispatched {
    kind: EventKind,
    /// The unique id in the payload (0 for READY).
    id: u64,
}

/// The ground truth read so far from [`Simulator::log_since`].
#[derive(Debug, Default)]
pub struct Truth {
    cursor: u64,
    dispatches: HashMap<DispatchKey, Dispatched>,
    /// Records written again by a RESUME replay.
    pub replays: u64,
    /// Records the simulator's log dropped before they were read (capacity).
    pub dropped: u64,
}

impl Truth {
    /// Reads every record written since the last call.
    pub fn update(&mut self, sim: &Simulator) {
        loop {
            let page = sim.log_since(self.cursor, 50_000);
            self.dropped += page.dropped;
            if page.records.is_empty() {
                self.cursor = page.next.max(self.cursor);
                return;
            }
            for record in &page.records {
                // RESUMED is the end of a replay, not an event: gateways never publish it.
                if record.kind == EventKind::Resumed {
                    continue;
                }
                if record.replay {
                    self.replays += 1;
                }
                self.dispatches
                    .entry((record.session, record.seq))
                    .or_insert(Dispatched {
                        kind: record.kind,
                        id: record.id,
                    });
            }
            self.cursor = page.next;
        }
    }

    /// Distinct dispatches written so far.
    pub fn dispatched(&self) -> u64 {
        self.dispatches.len() as u64
    }
}

/// One event as the consumers' HTTP sink posts it; the other fields are not needed.
#[derive(Debug, Deserialize)]
struct SinkEvent {
    shard: u32,
    session: String,
    seq: u64,
    payload: Frame,
}

#[derive(Debug, Deserialize)]
struct Frame {
    #[serde(default)]
    d: serde_json::Value,
}

/// The simulator's id fields of one payload (which one counts depends on the kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PayloadIds {
    id: Option<u64>,
    user_id: Option<u64>,
    user_dot_id: Option<u64>,
}

impl PayloadIds {
    fn of(d: &serde_json::Value) -> Self {
        let snowflake = |value: Option<&serde_json::Value>| {
            value
                .and_then(serde_json::Value::as_str)
                .and_then(|text| text.parse().ok())
        };
        Self {
            id: snowflake(d.get("id")),
            user_id: snowflake(d.get("user_id")),
            user_dot_id: snowflake(d.get("user").and_then(|user| user.get("id"))),
        }
    }

    fn matches(self, dispatched: Dispatched) -> bool {
        match dispatched.kind.id_field() {
            None => true,
            Some("user_id") => self.user_id == Some(dispatched.id),
            Some("user.id") => self.user_dot_id == Some(dispatched.id),
            Some(_) => self.id == Some(dispatched.id),
        }
    }
}

#[derive(Debug)]
struct Received {
    ids: PayloadIds,
    times: u64,
}

/// Every event the collector was sent, by `(session, seq)`.
#[derive(Debug, Default)]
pub struct Deliveries {
    received: HashMap<(String, u64), Received>,
    /// The newest `(session, seq)` per shard, to notice events out of order.
    newest: HashMap<u32, (String, u64)>,
    out_of_order: u64,
    rejected: u64,
}

impl Deliveries {
    fn record(&mut self, event: &SinkEvent) {
        let key = (event.session.clone(), event.seq);
        if let Some(entry) = self.received.get_mut(&key) {
            entry.times += 1;
            return;
        }
        if let Some((session, seq)) = self.newest.get(&event.shard)
            && *session == event.session
            && *seq > event.seq
        {
            self.out_of_order += 1;
        }
        self.newest.insert(event.shard, key.clone());
        self.received.insert(
            key,
            Received {
                ids: PayloadIds::of(&event.payload.d),
                times: 1,
            },
        );
    }

    /// Distinct events received so far.
    pub fn delivered(&self) -> u64 {
        self.received.len() as u64
    }
}

/// The collector's shared record; a std mutex, never held across an `.await`.
pub type SharedDeliveries = Arc<Mutex<Deliveries>>;

pub fn lock(deliveries: &SharedDeliveries) -> MutexGuard<'_, Deliveries> {
    deliveries.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves `POST /events` on a free loopback port until `stop`; returns its URL.
pub async fn serve_collector(
    deliveries: SharedDeliveries,
    stop: CancellationToken,
) -> anyhow::Result<String> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/events", post(collect))
        .with_state(deliveries);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the demo's collector failed");
        }
    });
    Ok(format!("http://{addr}/events"))
}

async fn collect(State(deliveries): State<SharedDeliveries>, body: Bytes) -> StatusCode {
    if let Ok(event) = serde_json::from_slice::<SinkEvent>(&body) {
        lock(&deliveries).record(&event);
        StatusCode::NO_CONTENT
    } else {
        lock(&deliveries).rejected += 1;
        StatusCode::BAD_REQUEST
    }
}

/// Ground truth against deliveries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub dispatched: u64,
    /// Distinct dispatches delivered.
    pub delivered: u64,
    /// Dispatched, never delivered.
    pub lost: u64,
    /// Deliveries of a dispatch beyond its first.
    pub duplicates: u64,
    /// Delivered events the simulator never dispatched.
    pub unknown: u64,
    /// Delivered events whose payload id is not the one dispatched at that seq.
    pub mismatched: u64,
    /// Events delivered before an earlier seq of their session.
    pub out_of_order: u64,
    /// Posts the collector could not read.
    pub rejected: u64,
    /// Dispatches the simulator replayed on RESUME (each counted once above).
    pub replays: u64,
}

impl Verdict {
    pub fn of(truth: &Truth, deliveries: &Deliveries) -> Self {
        let mut verdict = Self {
            dispatched: truth.dispatched(),
            out_of_order: deliveries.out_of_order,
            rejected: deliveries.rejected,
            replays: truth.replays,
            ..Self::default()
        };
        for ((session, seq), received) in &deliveries.received {
            let dispatched = SessionId::parse(session)
                .and_then(|session| truth.dispatches.get(&(session, *seq)));
            let Some(dispatched) = dispatched else {
                verdict.unknown += received.times;
                continue;
            };
            verdict.delivered += 1;
            verdict.duplicates += received.times - 1;
            if !received.ids.matches(*dispatched) {
                verdict.mismatched += 1;
            }
        }
        verdict.lost = verdict.dispatched - verdict.delivered;
        verdict
    }

    /// Nothing lost, nothing twice, nothing foreign.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.unknown == 0
            && self.mismatched == 0
            && self.out_of_order == 0
            && self.rejected == 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} dispatched, {} delivered, {} lost, {} duplicates",
            self.dispatched, self.delivered, self.lost, self.duplicates
        )?;
        for (count, what) in [
            (self.unknown, "never dispatched"),
            (self.mismatched, "with the wrong payload"),
            (self.out_of_order, "out of order"),
            (self.rejected, "unreadable"),
        ] {
            if count > 0 {
                write!(f, ", {count} {what}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(n: u64) -> SessionId {
        SessionId::parse(&wire(n)).unwrap()
    }

    fn wire(n: u64) -> String {
        format!("{:016x}{n:016x}", 0x5348_4152_444d_5348_u64)
    }

    fn truth(dispatches: &[(u64, u64, EventKind, u64)]) -> Truth {
        let mut truth = Truth::default();
        for &(s, seq, kind, id) in dispatches {
            truth
                .dispatches
                .insert((session(s), seq), Dispatched { kind, id });
        }
        truth
    }

    fn event(s: u64, seq: u64, d: &str) -> SinkEvent {
        serde_json::from_str(&format!(
            r#"{{"shard":0,"session":"{}","seq":{seq},"payload":{{"op":0,"d":{d}}}}}"#,
            wire(s)
        ))
        .unwrap()
    }

    #[test]
    fn every_dispatch_once_passes() {
        let truth = truth(&[
            (1, 1, EventKind::Ready, 0),
            (1, 2, EventKind::MessageCreate, 77),
            (1, 3, EventKind::TypingStart, 78),
        ]);
        let mut deliveries = Deliveries::default();
        deliveries.record(&event(1, 1, "{}"));
        deliveries.record(&event(1, 2, r#"{"id":"77"}"#));
        deliveries.record(&event(1, 3, r#"{"user_id":"78"}"#));
        let verdict = Verdict::of(&truth, &deliveries);
        assert!(verdict.passed(), "{verdict}");
        assert_eq!(
            verdict.to_string(),
            "3 dispatched, 3 delivered, 0 lost, 0 duplicates"
        );
    }

    #[test]
    fn losses_repeats_and_strangers_are_counted() {
        let truth = truth(&[
            (1, 1, EventKind::MessageCreate, 10),
            (1, 2, EventKind::MessageCreate, 11),
            (1, 3, EventKind::PresenceUpdate, 12),
        ]);
        let mut deliveries = Deliveries::default();
        deliveries.record(&event(1, 1, r#"{"id":"10"}"#));
        deliveries.record(&event(1, 1, r#"{"id":"10"}"#));
        deliveries.record(&event(1, 3, r#"{"user":{"id":"99"}}"#));
        deliveries.record(&event(2, 1, r#"{"id":"10"}"#));
        let verdict = Verdict::of(&truth, &deliveries);
        assert_eq!(
            (
                verdict.delivered,
                verdict.lost,
                verdict.duplicates,
                verdict.unknown,
                verdict.mismatched
            ),
            (2, 1, 1, 1, 1)
        );
        assert!(!verdict.passed());
        assert_eq!(
            verdict.to_string(),
            "3 dispatched, 2 delivered, 1 lost, 1 duplicates, 1 never dispatched, 1 with the wrong payload"
        );
    }

    #[test]
    fn an_earlier_seq_after_a_later_one_is_out_of_order() {
        let mut deliveries = Deliveries::default();
        deliveries.record(&event(1, 5, "{}"));
        deliveries.record(&event(1, 4, "{}"));
        deliveries.record(&event(2, 1, "{}"));
        assert_eq!(deliveries.out_of_order, 1);
    }
}
