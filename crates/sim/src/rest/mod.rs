//! The REST subset under `/api/v10`, with rate-limit headers twilight-http reads and a
//! global 429 past [`SimConfig::rest_global_limit`](crate::SimConfig) requests/s.
//! Errors are Discord's `{message, code[, errors]}`; every route but `GET /gateway`
//! and webhook execution needs the bot token (`Authorization: Bot …`, else 401).
//!
//! - `GET  /gateway` → `{url}`
//! - `GET  /gateway/bot` → `{url, shards, session_start_limit}` (`shards` the
//!   recommended count, `POST /_sim/recommended_shards` changes it; remaining reflects
//!   identifies spent, of every shard count)
//! - `GET  /users/@me` → the bot's User (as in READY)
//! - `GET  /applications/@me`, `GET /oauth2/applications/@me` → the bot's Application
//!   (id = READY's `application.id`, `bot` = the user, a human `owner`, `team: null`)
//! - `POST /channels/{id}/messages` with `{content?, embeds?, tts?}` → the Message;
//!   stored in the channel, `MESSAGE_CREATE` to the channel's shard
//! - `GET  /channels/{id}/messages?limit=&before=&after=` → stored messages, newest
//!   first; `limit` 1..=100, default 50
//! - `POST /channels/{id}/webhooks` with `{name, avatar?}` → the Webhook (with token);
//!   at most 15 per channel (30007)
//! - `GET  /channels/{id}/webhooks` → the channel's webhooks (a guild's built-in
//!   webhook is listed on the guild's first channel, where it posts)
//! - `POST /webhooks/{id}/{token}[?wait=true]` with `{content?, username?,
//!   avatar_url?, embeds?, tts?}` → the Message with `wait`, else 204; authorized by
//!   the webhook's token alone (unknown id 10015, wrong token 401 with 50027)
//!
//! Any other path is Discord's `404: Not Found` with code 0, another method on a known
//! path `405: Method Not Allowed`; no error has an empty or non-JSON body.

mod errors;
mod form;
mod gateway;
mod guard;
mod me;
mod messages;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::reply::ApiError;
use crate::state::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let bot = Router::new()
        .route("/gateway/bot", get(gateway::gateway_bot))
        .route("/users/@me", get(me::current_user))
        .route("/applications/@me", get(me::current_application))
        .route("/oauth2/applications/@me", get(me::current_application))
        .route(
            "/channels/{channel}/messages",
            get(messages::list).post(messages::create),
        )
        .route(
            "/channels/{channel}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            guard::bot_token,
        ));
    Router::new()
        .route("/gateway", get(gateway::gateway))
        .route("/webhooks/{webhook}/{token}", post(webhooks::execute))
        .merge(bot)
        .fallback(|| async { ApiError::not_found() })
        .layer(middleware::from_fn(errors::json_errors))
        .layer(middleware::from_fn_with_state(shared, guard::rate_limit))
}
