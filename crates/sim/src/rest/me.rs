//! The bot's view of itself: `GET /users/@me` (its User object) and `GET
//! /applications/@me` = `GET /oauth2/applications/@me` (its Application object).
//!
//! Both are fixed for a run, so they are literals: the user is the one READY carries,
//! the application has READY's `application.id` (the bot's user id, as for every bot
//! made since 2016) and flags.

use crate::reply::json_body;
use crate::world::{APPLICATION_FLAGS, APPLICATION_OWNER_ID, BOT_USER_ID, BOT_USER_JSON};
use axum::response::Response;

pub(super) async fn current_user() -> Response {
    json_body(BOT_USER_JSON)
}

pub(super) async fn current_application() -> Response {
    json_body(&application_json())
}

/// The Application object with every documented key. Discord omits keys it has no
/// value for only where the documentation marks them optional *and* the application
/// has not set them (`guild_id`, `primary_sku_id`, `slug`, `cover_image`,
/// `terms_of_service_url`, `privacy_policy_url`, `custom_install_url`, `tags`); the
/// rest it sends, `null` where unset. The owner is a human user, since `team` is null.
fn application_json() -> String {
    format!(
        concat!(
            r#"{{"id":"{id}","name":"shardmesh-sim","icon":null,"description":"","#,
            r#""summary":"","type":null,"rpc_origins":[],"bot_public":true,"#,
            r#""bot_require_code_grant":false,"bot":{bot},"#,
            r#""verify_key":"5f8d3c0a9b1e4d7f2a6c8e0b3d5f7a9c1e3b5d7f9a2c4e6b8d0f1a3c5e7b9d1f","#,
            r#""flags":{flags},"hook":true,"is_monetized":false,"is_verified":false,"#,
            r#""is_discoverable":false,"storefront_available":false,"#,
            r#""approximate_guild_count":0,"approximate_user_install_count":0,"#,
            r#""approximate_user_authorization_count":0,"redirect_uris":[],"#,
            r#""interactions_endpoint_url":null,"role_connections_verification_url":null,"#,
            r#""event_webhooks_url":null,"event_webhooks_status":1,"event_webhooks_types":[],"#,
            r#""install_params":{{"scopes":["bot","applications.commands"],"permissions":"0"}},"#,
            r#""integration_types_config":{{"0":{{"oauth2_install_params":{{"scopes":["bot","applications.commands"],"permissions":"0"}}}},"1":{{}}}},"#,
            r#""owner":{{"id":"{owner}","username":"shardmesh-owner","discriminator":"0","#,
            r#""global_name":null,"avatar":null,"bot":false,"public_flags":0,"flags":0,"banner":null,"#,
            r#""accent_color":null,"avatar_decoration_data":null,"collectibles":null,"#,
            r#""primary_guild":null}},"team":null}}"#
        ),
        id = BOT_USER_ID,
        bot = BOT_USER_JSON,
        flags = APPLICATION_FLAGS,
        owner = APPLICATION_OWNER_ID,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_is_the_bots() {
        let app: serde_json::Value = serde_json::from_str(&application_json()).unwrap();
        assert_eq!(app["id"], BOT_USER_ID.to_string());
        assert_eq!(app["bot"]["id"], BOT_USER_ID.to_string());
        assert_eq!(app["owner"]["id"], APPLICATION_OWNER_ID.to_string());
        assert!(app["team"].is_null());
    }
}
