//! The dashboard's control actions: `POST /api/actions/drain {"node": "..."}` and
//! `POST /api/actions/restart-shard {"shard": 3}`, each with `Authorization: Bearer
//! <token>`. They do what `ctl drain` and `ctl restart-shard` do, through the same
//! functions, with the actor `dashboard@<host>` in the action log.
//!
//! The token is checked before the body is read, so a caller without it learns nothing
//! but that it needs one. A restart from the dashboard always RESUMEs: forcing a new
//! IDENTIFY spends the daily budget and is left to `ctl restart-shard --new-session
//! --yes`, where it takes a deliberate flag.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{App, auth, error_response};

/// `POST /api/actions/drain`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    /// The node to drain.
    node: String,
    /// Whether it exits once drained (else it stays up as draining).
    #[serde(default)]
    exit: bool,
}

/// `POST /api/actions/restart-shard`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartRequest {
    /// The shard to reconnect.
    shard: u32,
}

/// `POST /api/actions/drain`.
pub(super) async fn drain(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: DrainRequest = match authorized(&app, &headers, &body, r#"{"node": "<node id>"}"#)
    {
        Ok(request) => request,
        Err(refused) => return *refused,
    };
    let known = match app.state().await {
        Ok(state) => state.nodes.iter().any(|node| node.id == request.node),
        Err(error) => return error_response(StatusCode::SERVICE_UNAVAILABLE, error),
    };
    if !known {
        return error_response(
            StatusCode::NOT_FOUND,
            format!(
                "no node {} in the registry (ended, or never started)",
                request.node
            ),
        );
    }
    let args = format!("node {} (exit: {})", request.node, request.exit);
    let outcome = crate::ops::drain(&app.settings, &request.node, request.exit, &app.actor).await;
    answer(&app, "drain", &args, outcome)
}

/// `POST /api/actions/restart-shard`.
pub(super) async fn restart_shard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: RestartRequest =
        match authorized(&app, &headers, &body, r#"{"shard": <shard id>}"#) {
            Ok(request) => request,
            Err(refused) => return *refused,
        };
    let count = match app.state().await {
        Ok(state) => state.spec.map(|spec| spec.shard_count),
        Err(error) => return error_response(StatusCode::SERVICE_UNAVAILABLE, error),
    };
    match count {
        Some(count) if request.shard < count => {}
        Some(count) => {
            return error_response(
                StatusCode::NOT_FOUND,
                format!(
                    "no shard {}: the cluster has shards 0..{count}",
                    request.shard
                ),
            );
        }
        None => {
            return error_response(
                StatusCode::CONFLICT,
                "no shard count recorded yet: no gateway node has started",
            );
        }
    }
    let args = format!("shard {}", request.shard);
    let outcome = crate::ops::restart_shard(&app.settings, request.shard, false, &app.actor).await;
    answer(&app, "restart-shard", &args, outcome)
}

fn refuse(refusal: &auth::Refusal) -> Response {
    let mut response = error_response(refusal.status, refusal.message);
    if refusal.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// The request's body as `T` once its bearer is the admin token; else the 401 or 403,
/// or a 400 that shows the expected `shape`.
fn authorized<T: serde::de::DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: &[u8],
    shape: &str,
) -> Result<T, Box<Response>> {
    auth::authorize(app.token.as_ref(), headers).map_err(|refusal| Box::new(refuse(&refusal)))?;
    serde_json::from_slice(body).map_err(|error| {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON like {shape}: {error}"),
        ))
    })
}

/// 200 with the action's own summary, or 502 with why it failed (the nodes refused,
/// did not answer, or the broker is down: the action log says what was done).
fn answer(app: &App, action: &str, args: &str, outcome: anyhow::Result<String>) -> Response {
    match outcome {
        Ok(message) => {
            tracing::info!(actor = %app.actor, action, args, %message, "control action done");
            axum::Json(serde_json::json!({ "ok": true, "message": message })).into_response()
        }
        Err(error) => {
            let message = format!("{error:#}");
            tracing::warn!(actor = %app.actor, action, args, %message, "control action failed");
            error_response(StatusCode::BAD_GATEWAY, message)
        }
    }
}
