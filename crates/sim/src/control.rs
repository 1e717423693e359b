//! `/_sim/`: ground truth, stats, traffic and chaos over HTTP (JSON), for processes
//! other than the one running the simulator. Snowflakes (guild, channel, webhook,
//! message and dispatch ids) are JSON strings, as Discord sends them: JavaScript
//! numbers cannot hold them.
//!
//! - `GET  /_sim/stats` → [`Stats`](crate::Stats)
//! - `GET  /_sim/log?since=N&limit=M` → [`LogPage`](crate::LogPage) (limit default
//!   10,000, at most 100,000)
//! - `GET  /_sim/commands?since=N&limit=M` → [`CommandPage`](crate::CommandPage):
//!   every gateway command received (limit default 10,000, at most 100,000)
//! - `GET  /_sim/guilds` → [`GuildInfo`](crate::GuildInfo) list
//! - `POST /_sim/traffic/start`, `/_sim/traffic/stop`, `/_sim/traffic/rate` with
//!   `{"rate": 1000.0}`
//! - `POST /_sim/chaos/{shard}` with a [`Chaos`](crate::Chaos) such as
//!   `{"action":"drop"}`, `{"action":"invalid_session","resumable":true}` or
//!   `{"action":"close","code":4000}` → `{"reached": sessions}`: the shard's sessions
//!   of every shard count, or of one with `?shards=N`
//! - `GET  /_sim/recommended_shards`, `POST /_sim/recommended_shards` with
//!   `{"shards": 16}` → `{"shards": N}`: the count `GET /gateway/bot` recommends
//!   (1..=65,535, else 400 with Discord's error shape)
//! - `POST /_sim/channels/{id}/messages` with `{"content": "hi", "author":
//!   {"username": "alice", "avatar": null, "id": "…"}}` (`avatar` and `id` optional)
//!   → the Message: a human user posts, as
//!   [`Simulator::post_as_user`](crate::Simulator::post_as_user) with a
//!   [`UserPost`](crate::UserPost); errors are Discord's `{message, code}` (10003,
//!   50006, 50035, 50109)
//! - `GET  /_sim/channels/{id}/messages` → every message the channel keeps, oldest
//!   first (generated traffic is never kept)

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;
use crate::messages::UserPost;
use crate::reply::{ApiError, json_array, json_body, parse_json};
use crate::state::{Chaos, Shared, Stats};
use crate::truth::LogPage;

type SharedState = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/stats", get(stats))
        .route("/log", get(log))
        .route("/commands", get(commands))
        .route("/guilds", get(guilds))
        .route("/traffic/start", post(traffic_start))
        .route("/traffic/stop", post(traffic_stop))
        .route("/traffic/rate", post(traffic_rate))
        .route("/chaos/{shard}", post(chaos))
        .route(
            "/recommended_shards",
            get(recommended_shards).post(set_recommended_shards),
        )
        .route(
            "/channels/{channel}/messages",
            get(channel_messages).post(post_message),
        )
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

impl LogQuery {
    /// The page size asked for: 10,000 by default, at most 100,000.
    fn limit(&self) -> usize {
        self.limit.unwrap_or(10_000).min(100_000)
    }
}

async fn log(State(shared): SharedState, Query(query): Query<LogQuery>) -> Json<LogPage> {
    Json(shared.log_since(query.since, query.limit()))
}

async fn commands(
    State(shared): SharedState,
    Query(query): Query<LogQuery>,
) -> Json<crate::truth::CommandPage> {
    Json(shared.commands.since(query.since, query.limit()))
}

async fn guilds(State(shared): SharedState) -> Json<Vec<crate::GuildInfo>> {
    Json(shared.world.guild_infos())
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

/// Which shard set a chaos action is for: every set without `shards`.
#[derive(Deserialize)]
struct ChaosQuery {
    shards: Option<u32>,
}

async fn chaos(
    State(shared): SharedState,
    Path(shard): Path<u32>,
    Query(query): Query<ChaosQuery>,
    Json(chaos): Json<Chaos>,
) -> Json<Value> {
    Json(json!({"reached": shared.chaos(shard, query.shards, chaos)}))
}

#[derive(Deserialize)]
struct Recommended {
    shards: u32,
}

async fn recommended_shards(State(shared): SharedState) -> Json<Value> {
    Json(json!({"shards": shared.recommended_shards()}))
}

async fn set_recommended_shards(
    State(shared): SharedState,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: Recommended = parse_json(&body)?;
    if !(1..=65_535).contains(&request.shards) {
        return Err(Error::invalid_post("shards", "must be 1..=65535").into());
    }
    shared.set_recommended_shards(request.shards);
    Ok(Json(json!({"shards": shared.recommended_shards()})))
}

/// A user post as the control API takes it: Discord's message shape, trimmed.
#[derive(Deserialize)]
struct ControlPost {
    #[serde(default)]
    content: String,
    author: ControlAuthor,
}

#[derive(Deserialize)]
struct ControlAuthor {
    username: String,
    avatar: Option<String>,
    id: Option<Snowflake>,
}

/// An id as Discord writes it (a string) or as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Snowflake {
    Number(u64),
    Text(String),
}

async fn post_message(
    State(shared): SharedState,
    Path(channel): Path<u64>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ControlPost = parse_json(&body)?;
    let id = match request.author.id {
        None => None,
        Some(Snowflake::Number(id)) => Some(id),
        Some(Snowflake::Text(text)) => Some(
            text.parse()
                .map_err(|_| Error::invalid_post("author.id", "must be a snowflake"))?,
        ),
    };
    let post = UserPost {
        content: request.content,
        username: request.author.username,
        avatar: request.author.avatar,
    };
    let message = crate::messages::post_as_user(&shared, channel, &post, id)?;
    Ok(json_body(&message.json))
}

async fn channel_messages(
    State(shared): SharedState,
    Path(channel): Path<u64>,
) -> Result<Response, ApiError> {
    if shared.world.guild_of_channel(channel).is_none() {
        return Err(ApiError::unknown_channel());
    }
    Ok(json_array(&shared.channels().all(channel)))
}
