//! What a REST request passes before its handler: the global rate limit (every
//! request) and the bot token (every route but the public ones).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::rate_limit::Admit;
use crate::reply::ApiError;
use crate::state::Shared;

/// Counts the request against the global window: 429 past the limit, rate-limit
/// headers on every served response.
pub(super) async fn rate_limit(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
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

/// Refuses with 401 unless `Authorization` is `Bot <the configured token>`.
pub(super) async fn bot_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("Bot ") && shared.config.token.matches(value));
    if authorized {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}
