//! The REST subset under `/api/v10`, with rate-limit headers twilight-http reads and a
//! global 429 past [`SimConfig::rest_global_limit`](crate::SimConfig) requests/s.
//!
//! - `GET  /gateway` → `{url}`
//! - `GET  /gateway/bot` → `{url, shards, session_start_limit}` (remaining reflects
//!   identifies spent)
//! - `POST /channels/{id}/messages` → the Message; `MESSAGE_CREATE` goes to the
//!   channel's shard
//! - `POST /webhooks/{id}/{token}[?wait=true]` → the Message with `wait`, else 204

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::rate_limit::Admit;
use crate::state::Shared;
use crate::traffic::{EventKind, write_message};
use crate::world::BOT_USER_ID;

type SharedState = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/gateway", get(gateway))
        .route("/gateway/bot", get(gateway_bot))
        .route("/channels/{channel}/messages", post(create_message))
        .route("/webhooks/{webhook}/{token}", post(execute_webhook))
        .layer(middleware::from_fn_with_state(shared, rate_limit))
}

/// Counts the request against the global window: 429 past the limit, rate-limit
/// headers on every served response.
async fn rate_limit(State(shared): SharedState, request: Request, next: Next) -> Response {
    shared
        .counters
        .rest_requests
        .fetch_add(1, Ordering::Relaxed);
    let (admit, limit) = {
        let mut window = shared
            .rest_window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (window.admit(Instant::now()), window.limit())
    };
    match admit {
        Admit::No { retry_after } => {
            shared
                .counters
                .rest_rate_limited
                .fetch_add(1, Ordering::Relaxed);
            let secs = retry_after.as_secs_f64();
            let body = json!({
                "message": "You are being rate limited.",
                "retry_after": (secs * 1000.0).ceil() / 1000.0,
                "global": true,
            });
            let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            let headers = response.headers_mut();
            insert(headers, "retry-after", &secs.ceil().max(1.0).to_string());
            insert(headers, "x-ratelimit-global", "true");
            insert(headers, "x-ratelimit-scope", "global");
            response
        }
        Admit::Yes {
            remaining,
            reset_after,
        } => {
            let mut response = next.run(request).await;
            let reset = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                + reset_after;
            let headers = response.headers_mut();
            insert(headers, "x-ratelimit-bucket", "shardmesh-sim-global");
            insert(headers, "x-ratelimit-limit", &limit.to_string());
            insert(headers, "x-ratelimit-remaining", &remaining.to_string());
            insert(
                headers,
                "x-ratelimit-reset",
                &format!("{:.3}", reset.as_secs_f64()),
            );
            insert(
                headers,
                "x-ratelimit-reset-after",
                &format!("{:.3}", reset_after.as_secs_f64()),
            );
            insert(headers, "x-ratelimit-scope", "user");
            response
        }
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, Json(json!({"message": message, "code": code}))).into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("Bot ") && shared.config.token.matches(value))
}

async fn gateway(State(shared): SharedState) -> Response {
    Json(json!({"url": shared.gateway_url})).into_response()
}

async fn gateway_bot(State(shared): SharedState, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let config = &shared.config;
    Json(json!({
        "url": shared.gateway_url,
        "shards": config.shards,
        "session_start_limit": {
            "total": config.session_start_total,
            "remaining": shared.session_start_remaining(),
            "reset_after": config.session_start_reset_after_ms,
            "max_concurrency": config.max_concurrency,
        },
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
struct NewMessage {
    #[serde(default)]
    content: String,
}

/// The body of a message-creating request; `None` if it is not valid JSON.
fn parse_body(body: &Bytes) -> Option<NewMessage> {
    if body.is_empty() {
        return Some(NewMessage::default());
    }
    serde_json::from_slice(body).ok()
}

fn invalid_json() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        50_109,
        "The request body contains invalid JSON.",
    )
}

/// Creates a message in guild `guild`'s `channel` and dispatches its `MESSAGE_CREATE`.
fn post_message(shared: &Shared, guild: u32, channel: u64, author: u64, content: &str) -> String {
    let world = &shared.world;
    let id = shared.ids.next();
    let mut message = String::with_capacity(768 + content.len());
    write_message(
        &mut message,
        id,
        channel,
        Some(world.guild_id(guild)),
        author,
        content,
        false,
    );
    let shard = world.shard_of(guild);
    shared.dispatch(shard, EventKind::MessageCreate, id, &message);
    shared.notify_shard(shard);
    message
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn create_message(
    State(shared): SharedState,
    Path(channel): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let Some(guild) = shared.world.guild_of_channel(channel) else {
        return error(StatusCode::NOT_FOUND, 10_003, "Unknown Channel");
    };
    let Some(message) = parse_body(&body) else {
        return invalid_json();
    };
    if message.content.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            50_006,
            "Cannot send an empty message",
        );
    }
    json_response(post_message(
        &shared,
        guild,
        channel,
        BOT_USER_ID,
        &message.content,
    ))
}

#[derive(Deserialize)]
struct WebhookQuery {
    #[serde(default)]
    wait: bool,
}

async fn execute_webhook(
    State(shared): SharedState,
    Path((webhook, token)): Path<(u64, String)>,
    Query(query): Query<WebhookQuery>,
    body: Bytes,
) -> Response {
    let guild = shared.world.guild_of_webhook(webhook);
    let Some(guild) = guild.filter(|&g| crate::sim::webhook_token(g) == token) else {
        return error(StatusCode::NOT_FOUND, 10_015, "Unknown Webhook");
    };
    let Some(message) = parse_body(&body) else {
        return invalid_json();
    };
    if message.content.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            50_006,
            "Cannot send an empty message",
        );
    }
    let channel = shared.world.channel_id(guild, 0);
    let created = post_message(&shared, guild, channel, webhook, &message.content);
    if query.wait {
        json_response(created)
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}
