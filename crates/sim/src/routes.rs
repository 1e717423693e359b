//! The one HTTP router: the gateway at `/`, REST under `/api/v10`, control under
//! `/_sim`.
//!
//! The gateway URL takes Discord's query: `v=10` (else close 4012), `encoding=json`
//! (else close 4002) and optionally `compress=zlib-stream` or `compress=zstd-stream`
//! (see [`crate::compress`]). Discord does not document what it does with any other
//! `compress` value; the simulator ignores it and sends plain text frames, as it does
//! without `compress`.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use crate::compress::Transport;
use crate::state::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(gateway))
        .nest("/api/v10", crate::rest::router(Arc::clone(&shared)))
        .nest("/_sim", crate::control::router())
        .with_state(shared)
}

#[derive(Deserialize)]
struct GatewayQuery {
    v: Option<u8>,
    encoding: Option<String>,
    compress: Option<String>,
}

/// Upgrades to a gateway connection. A bad `v` is closed with 4012 and a non-JSON
/// encoding with 4002, as Discord does; `compress=zlib-stream` and
/// `compress=zstd-stream` are honoured and any other compression is ignored (plain
/// text frames).
async fn gateway(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<GatewayQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let refusal = match (query.v, query.encoding.as_deref()) {
        (Some(10), None | Some("json")) => None,
        (Some(10), Some(_)) => Some((4002, "decode error")),
        _ => Some((4012, "invalid api version")),
    };
    let transport = Transport::from_query(query.compress.as_deref());
    upgrade
        // Clients send at most 4 KiB (Discord's limit); small buffers keep a
        // connection cheap. Larger client messages still arrive and get 4002.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(64 * 1024)
        .on_upgrade(move |mut socket| {
            let tracker = shared.tracker.clone();
            tracker.track_future(async move {
                if let Some((code, reason)) = refusal {
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                crate::connection::run(shared, socket, transport).await;
            })
        })
}
