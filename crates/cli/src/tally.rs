//! The tally: what the consumers' HTTP sink delivered, judged against the simulator's
//! ground truth by the harness's [`Verdict`] and told in one line. The demo keeps one
//! for its run; `shardmesh sim --tally ADDR` serves one beside the simulator, so a mesh
//! in containers can be judged the same way (`GET /verdict`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use shardmesh_harness::{Arrival, Id, Truth, Verdict};
use shardmesh_sim::Simulator;
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
    serve(listener, collector(deliveries), stop);
    Ok(format!("http://{addr}/events"))
}

/// The tally `shardmesh sim --tally` serves: the collector, and `GET /verdict` judging
/// what it received against the simulator's record, read again for every verdict.
#[derive(Debug, Clone)]
pub struct SimTally {
    sim: Arc<Simulator>,
    deliveries: SharedDeliveries,
    truth: Arc<Mutex<Truth>>,
}

impl SimTally {
    /// A tally of what `sim` sent.
    pub fn new(sim: Arc<Simulator>) -> Self {
        Self {
            sim,
            deliveries: SharedDeliveries::default(),
            truth: Arc::default(),
        }
    }

    /// Binds `addr` and serves `POST /events` and `GET /verdict` until `stop`.
    pub async fn serve(&self, addr: SocketAddr, stop: CancellationToken) -> anyhow::Result<()> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("--tally {addr}: cannot listen"))?;
        let app = collector(Arc::clone(&self.deliveries)).merge(
            Router::new()
                .route("/verdict", get(verdict_json))
                .with_state(self.clone()),
        );
        serve(listener, app, stop);
        Ok(())
    }

    /// The verdict on what arrived so far. The record is read after the deliveries are
    /// taken, so everything delivered is in it (a dispatch is recorded before it is sent).
    pub fn judge(&self) -> Judged {
        let deliveries = lock(&self.deliveries);
        let mut truth = self.truth.lock().unwrap_or_else(PoisonError::into_inner);
        truth.update(&self.sim);
        let (verdict, rejected) = deliveries.verdict(&truth);
        Judged {
            verdict,
            rejected,
            overflowed: truth.dropped,
        }
    }
}

/// A verdict with what the tally could not judge.
#[derive(Debug)]
pub struct Judged {
    verdict: Verdict,
    rejected: u64,
    overflowed: u64,
}

impl Judged {
    /// The verdict line; when the simulator's record overflowed, it says so first.
    pub fn line(&self) -> String {
        let line = verdict_line(&self.verdict, self.rejected);
        if self.overflowed == 0 {
            line
        } else {
            format!(
                "not judged: the simulator's record dropped {} entries (raise sim.truth_capacity); {line}",
                self.overflowed
            )
        }
    }
}

/// `GET /verdict`: the counts as JSON. While traffic flows, `lost` counts what has not
/// arrived yet; once it stops and the consumers catch up, the counts are final.
async fn verdict_json(State(tally): State<SimTally>) -> Json<Value> {
    let judged = tally.judge();
    let verdict = &judged.verdict;
    let lost = verdict.missing.len();
    Json(json!({
        "dispatched": verdict.dispatches,
        "delivered": verdict.dispatches - lost,
        "lost": lost,
        "duplicates": verdict.extra_copies(),
        "never_dispatched": verdict.unknown.len(),
        "wrong_payload": verdict.mislabeled.len(),
        "out_of_order": verdict.disorder.len(),
        "unreadable": judged.rejected,
        "record_overflowed": judged.overflowed,
        "passed": verdict.passed() && judged.rejected == 0 && judged.overflowed == 0,
        "line": judged.line(),
    }))
}

/// `POST /events`, recording into `deliveries`.
fn collector(deliveries: SharedDeliveries) -> Router {
    Router::new()
        .route("/events", post(collect))
        .with_state(deliveries)
}

fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the tally's HTTP server failed");
        }
    });
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
