//! `GET /gateway` and `GET /gateway/bot`: where to connect and how many sessions may
//! still start.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::Shared;

pub(super) async fn gateway(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"url": shared.gateway_url}))
}

pub(super) async fn gateway_bot(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let config = &shared.config;
    Json(json!({
        "url": shared.gateway_url,
        "shards": shared.recommended_shards(),
        "session_start_limit": {
            "total": config.session_start_total,
            "remaining": shared.session_start_remaining(),
            "reset_after": config.session_start_reset_after_ms,
            "max_concurrency": config.max_concurrency,
        },
    }))
}
