//! What the demo compares: the simulator's ground truth and what the collector, the
//! consumers' HTTP sink, received — judged by the harness's [`Verdict`], told in one
//! line.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use shardmesh_harness::{Arrival, Id, Truth, Verdict};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One event as the consumers' HTTP sink posts it; the other fields are not needed.
#[derive(Debug, Deserialize)]
struct SinkEvent {
    shard: u32,
    session: String,
    seq: u64,
    event_type: String,
    payload: Value,
}

/// What the verdict reads of one received event: the frame's `op`, `s`, `t` and the
/// simulator's id fields of `d`, not the whole payload (a long demo receives millions).
#[derive(Debug)]
struct Received {
    id: Id,
    event_type: String,
    frame: Value,
}

impl Received {
    fn of(event: SinkEvent) -> Self {
        let payload = &event.payload;
        let d = &payload["d"];
        let frame = json!({
            "op": payload["op"],
            "s": payload["s"],
            "t": payload["t"],
            "d": {"id": d["id"], "user_id": d["user_id"], "user": {"id": d["user"]["id"]}},
        });
        Self {
            id: (event.shard, event.session, event.seq),
            event_type: event.event_type,
            frame,
        }
    }
}

/// Every event the collector was sent, in arrival order.
#[derive(Debug, Default)]
pub struct Deliveries {
    received: Vec<Received>,
    distinct: HashSet<Id>,
    rejected: u64,
}

impl Deliveries {
    /// Distinct events received so far.
    pub fn delivered(&self) -> u64 {
        self.distinct.len() as u64
    }

    fn record(&mut self, received: Received) {
        self.distinct.insert(received.id.clone());
        self.received.push(received);
    }

    /// The verdict against `truth`, and the posts the collector could not read.
    pub fn verdict(&self, truth: &Truth) -> (Verdict, u64) {
        let arrivals = self.received.iter().map(|received| Arrival {
            id: &received.id,
            event_type: &received.event_type,
            payload: &received.frame,
        });
        (Verdict::of(&truth.dispatches, arrivals), self.rejected)
    }
}

/// The collector's shared record; a std mutex, never held across an `.await`.
pub type SharedDeliveries = Arc<Mutex<Deliveries>>;

/// The record, even if a panic poisoned its lock (the data is still whole).
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
        lock(&deliveries).record(Received::of(event));
        StatusCode::NO_CONTENT
    } else {
        lock(&deliveries).rejected += 1;
        StatusCode::BAD_REQUEST
    }
}

/// `N dispatched, N delivered, N lost, N duplicates`, then any other problem.
pub fn verdict_line(verdict: &Verdict, rejected: u64) -> String {
    let lost = verdict.missing.len();
    let mut line = format!(
        "{} dispatched, {} delivered, {lost} lost, {} duplicates",
        verdict.dispatches,
        verdict.dispatches - lost,
        verdict.extra_copies()
    );
    for (count, what) in [
        (verdict.unknown.len(), "never dispatched"),
        (verdict.mislabeled.len(), "with the wrong payload"),
        (verdict.disorder.len(), "out of order"),
        (
            usize::try_from(rejected).unwrap_or(usize::MAX),
            "unreadable",
        ),
    ] {
        if count > 0 {
            let _ = write!(line, ", {count} {what}");
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_leads_with_the_four_counts_the_demo_test_reads() {
        let mut truth = Truth::default();
        let sent = shardmesh_harness::Sent {
            kind: shardmesh_sim::EventKind::Ready,
            id: 0,
        };
        truth.dispatches.insert((0, "s".into(), 1), sent);
        truth.dispatches.insert((0, "s".into(), 2), sent);
        let mut deliveries = Deliveries::default();
        let event = |seq: u64| SinkEvent {
            shard: 0,
            session: "s".into(),
            seq,
            event_type: "READY".into(),
            payload: json!({"op": 0, "s": seq, "t": "READY", "d": {}}),
        };
        deliveries.record(Received::of(event(1)));
        deliveries.record(Received::of(event(1)));
        assert_eq!(deliveries.delivered(), 1);
        deliveries.rejected = 1;
        let (verdict, rejected) = deliveries.verdict(&truth);
        assert_eq!(
            verdict_line(&verdict, rejected),
            "2 dispatched, 1 delivered, 1 lost, 1 duplicates, 1 unreadable"
        );
        assert!(!verdict.passed());
    }
}
