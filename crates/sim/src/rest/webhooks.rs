//! Webhooks: create and list them on a channel (bot token), and execute them (their
//! own token).
//!
//! Two kinds exist: the one each guild has from the start ([`GuildInfo`]'s
//! `webhook_id`, posting into the guild's first channel, and listed on that channel),
//! and those created at runtime, kept in `channels.rs`. Both execute the same way.
//! Creating a webhook sends no `WEBHOOKS_UPDATE` (the simulator does not generate
//! that event).
//!
//! [`GuildInfo`]: crate::GuildInfo

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::Deserialize;
use serde_json::{Value, json};

use super::form;
use crate::channels::{Webhook, WebhooksFull};
use crate::messages::{Author, Draft};
use crate::reply::{ApiError, FormErrors, json_body, parse_json};
use crate::state::Shared;
use crate::world::{
    BOT_USER_ID, BOT_USERNAME, GUILD_WEBHOOK_NAME, World, avatar_hash, webhook_token,
};

/// Length of a created webhook's token (Discord's are 68 characters).
const TOKEN_LEN: usize = 68;

/// The fields of Discord's Create Webhook.
#[derive(Deserialize)]
struct NewWebhook {
    name: Option<String>,
    avatar: Option<String>,
}

pub(super) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<u64>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let guild = shared
        .world
        .guild_of_channel(channel)
        .ok_or(ApiError::unknown_channel())?;
    let request: NewWebhook = parse_json(&body)?;
    let mut errors = FormErrors::default();
    let name = request.name.unwrap_or_default();
    form::webhook_name(&mut errors, "name", &name);
    let avatar = form::avatar_data(&mut errors, request.avatar.as_deref());
    errors.into_result()?;
    let token = rand::rng()
        .sample_iter(Alphanumeric)
        .take(TOKEN_LEN)
        .map(char::from)
        .collect();
    let webhook = Webhook {
        id: shared.ids.next(),
        guild_id: shared.world.guild_id(guild),
        channel_id: channel,
        name,
        avatar,
        token,
    };
    let body = webhook_json(&webhook);
    shared
        .channels()
        .add_webhook(webhook)
        .map_err(|WebhooksFull| ApiError::max_webhooks())?;
    Ok(Json(body).into_response())
}

/// The channel's webhooks: the guild's built-in one first on its channel, then those
/// created at runtime, oldest first.
pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<u64>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let world = &shared.world;
    let guild = world
        .guild_of_channel(channel)
        .ok_or(ApiError::unknown_channel())?;
    let built_in = (channel == world.channel_id(guild, 0)).then(|| guild_webhook(world, guild));
    let created = shared.channels().webhooks_of(channel);
    let all = built_in.iter().chain(&created).map(webhook_json).collect();
    Ok(Json(all))
}

#[derive(Deserialize)]
pub(super) struct ExecuteQuery {
    #[serde(default)]
    wait: bool,
}

/// The fields of Discord's Execute Webhook the simulator reads; others are ignored.
#[derive(Deserialize)]
struct Execution {
    content: Option<String>,
    username: Option<String>,
    avatar_url: Option<String>,
    embeds: Option<Value>,
    tts: Option<bool>,
}

/// Posts into the webhook's channel as the webhook. `username` and `avatar_url`
/// override its name and avatar for this message (an empty one counts as absent);
/// `username` follows the webhook-name rules. The avatar shown is
/// [`avatar_hash`]`(avatar_url)`, as Discord shows the hash of the image it fetched.
pub(super) async fn execute(
    State(shared): State<Arc<Shared>>,
    Path((id, token)): Path<(u64, String)>,
    Query(query): Query<ExecuteQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let webhook = find(&shared, id).ok_or(ApiError::unknown_webhook())?;
    if webhook.token != token {
        return Err(ApiError::invalid_webhook_token());
    }
    let guild = shared
        .world
        .guild_of(webhook.guild_id)
        .ok_or(ApiError::unknown_webhook())?;
    let request: Execution = parse_json(&body)?;
    let mut errors = FormErrors::default();
    let embeds = form::embeds(&mut errors, request.embeds);
    let content = request.content.unwrap_or_default();
    form::content(&mut errors, &content, !embeds.is_empty())?;
    let username = match request.username.filter(|name| !name.is_empty()) {
        Some(name) => {
            form::webhook_name(&mut errors, "username", &name);
            name
        }
        None => webhook.name,
    };
    errors.into_result()?;
    let avatar = match request.avatar_url.filter(|url| !url.is_empty()) {
        Some(url) => Some(avatar_hash(&url)),
        None => webhook.avatar,
    };
    let draft = Draft {
        author: Author::Webhook {
            id: webhook.id,
            username,
            avatar,
        },
        content,
        embeds,
        tts: request.tts.unwrap_or(false),
    };
    let message = crate::messages::post(&shared, guild, webhook.channel_id, &draft);
    if query.wait {
        Ok(json_body(&message.json))
    } else {
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

/// The webhook with this id: a guild's built-in one or one created at runtime.
fn find(shared: &Shared, id: u64) -> Option<Webhook> {
    match shared.world.guild_of_webhook(id) {
        Some(guild) => Some(guild_webhook(&shared.world, guild)),
        None => shared.channels().webhook(id).cloned(),
    }
}

/// Guild `guild`'s built-in webhook, described like a created one.
fn guild_webhook(world: &World, guild: u32) -> Webhook {
    Webhook {
        id: world.webhook_id(guild),
        guild_id: world.guild_id(guild),
        channel_id: world.channel_id(guild, 0),
        name: GUILD_WEBHOOK_NAME.to_owned(),
        avatar: None,
        token: webhook_token(guild),
    }
}

/// The Webhook object: an incoming webhook (type 1) owned by the bot, token included
/// as Discord shows it to the application that created it.
fn webhook_json(webhook: &Webhook) -> Value {
    json!({
        "id": webhook.id.to_string(),
        "type": 1,
        "guild_id": webhook.guild_id.to_string(),
        "channel_id": webhook.channel_id.to_string(),
        "name": webhook.name,
        "avatar": webhook.avatar,
        "token": webhook.token,
        "application_id": BOT_USER_ID.to_string(),
        "user": {
            "id": BOT_USER_ID.to_string(),
            "username": BOT_USERNAME,
            "discriminator": "0",
            "global_name": null,
            "avatar": null,
            "public_flags": 0,
            "bot": true,
        },
    })
}
