//! `POST` and `GET /channels/{id}/messages`: the bot posts into a channel and reads
//! back the channel's stored messages.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::form;
use crate::channels::Anchor;
use crate::messages::{Author, Draft};
use crate::reply::{ApiError, FormErrors, json_array, json_body, parse_json};
use crate::state::Shared;

/// The fields of Discord's Create Message the simulator reads; others are ignored.
#[derive(Deserialize)]
struct NewMessage {
    content: Option<String>,
    embeds: Option<Value>,
    tts: Option<bool>,
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
    let request: NewMessage = parse_json(&body)?;
    let mut errors = FormErrors::default();
    let embeds = form::embeds(&mut errors, request.embeds);
    let content = request.content.unwrap_or_default();
    form::content(&mut errors, &content, !embeds.is_empty())?;
    errors.into_result()?;
    let draft = Draft {
        author: Author::Bot,
        content,
        embeds,
        tts: request.tts.unwrap_or(false),
    };
    let message = crate::messages::post(&shared, guild, channel, &draft);
    Ok(json_body(&message.json))
}

/// Discord's Get Channel Messages query, read as strings so bad values get Discord's
/// errors rather than the framework's.
#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<String>,
    before: Option<String>,
    after: Option<String>,
    around: Option<String>,
}

/// The channel's stored messages, newest first. `around` is refused (the simulator
/// does not implement it) and so is passing both `before` and `after`, which
/// Discord documents as mutually exclusive.
pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<u64>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    if shared.world.guild_of_channel(channel).is_none() {
        return Err(ApiError::unknown_channel());
    }
    let mut errors = FormErrors::default();
    let limit = form::limit(&mut errors, query.limit.as_deref());
    let before = form::snowflake(&mut errors, "before", query.before.as_deref());
    let after = form::snowflake(&mut errors, "after", query.after.as_deref());
    if query.around.is_some() {
        errors.add(
            "around",
            "BASE_TYPE_INVALID",
            "The simulator does not support around.",
        );
    }
    if before.is_some() && after.is_some() {
        errors.add(
            "",
            "BASE_TYPE_INVALID",
            "before, after and around are mutually exclusive.",
        );
    }
    errors.into_result()?;
    let anchor = match (before, after) {
        (Some(id), _) => Anchor::Before(id),
        (None, Some(id)) => Anchor::After(id),
        (None, None) => Anchor::Latest,
    };
    let page = shared.channels().page(channel, anchor, limit);
    Ok(json_array(&page))
}
