//! `/_sim/`: ground truth, stats, traffic and chaos over HTTP (JSON), for processes
//! other than the one running the simulator.
//!
//! - `GET  /_sim/stats` → [`Stats`](crate::Stats)
//! - `GET  /_sim/log?since=N&limit=M` → [`LogPage`](crate::LogPage) (limit default
//!   10,000, at most 100,000)
//! - `GET  /_sim/guilds` → [`GuildInfo`](crate::GuildInfo) list
//! - `POST /_sim/traffic/start`, `/_sim/traffic/stop`, `/_sim/traffic/rate` with
//!   `{"rate": 1000.0}`
//! - `POST /_sim/chaos/{shard}` with a [`Chaos`](crate::Chaos) such as
//!   `{"action":"drop"}`, `{"action":"invalid_session","resumable":true}` or
//!   `{"action":"close","code":4000}` → `{"reached": sessions}`

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::{Chaos, Shared, Stats};
use crate::truth::LogPage;

type SharedState = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/stats", get(stats))
        .route("/log", get(log))
        .route("/guilds", get(guilds))
        .route("/traffic/start", post(traffic_start))
        .route("/traffic/stop", post(traffic_stop))
        .route("/traffic/rate", post(traffic_rate))
        .route("/chaos/{shard}", post(chaos))
}

async fn stats(State(shared): SharedState) -> Json<Stats> {
    Json(shared.stats())
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

async fn log(State(shared): SharedState, Query(query): Query<LogQuery>) -> Json<LogPage> {
    let limit = query.limit.unwrap_or(10_000).min(100_000);
    Json(shared.log_since(query.since, limit))
}

async fn guilds(State(shared): SharedState) -> Json<Vec<crate::GuildInfo>> {
    Json(crate::sim::guilds(&shared))
}

async fn traffic_start(State(shared): SharedState) -> Json<Value> {
    shared.traffic.set_running(true);
    Json(json!({"running": true}))
}

async fn traffic_stop(State(shared): SharedState) -> Json<Value> {
    shared.traffic.set_running(false);
    Json(json!({"running": false}))
}

#[derive(Deserialize)]
struct Rate {
    rate: f64,
}

async fn traffic_rate(State(shared): SharedState, Json(rate): Json<Rate>) -> Json<Value> {
    shared.traffic.set_rate(rate.rate.max(0.0));
    Json(json!({"rate": shared.traffic.rate()}))
}

async fn chaos(
    State(shared): SharedState,
    Path(shard): Path<u32>,
    Json(chaos): Json<Chaos>,
) -> Json<Value> {
    Json(json!({"reached": shared.chaos(shard, chaos)}))
}
