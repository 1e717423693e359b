//! What a channel-mirror bot needs from the simulator: users post in a channel, the
//! bot reads history, creates a webhook and reposts as the user; every message is
//! kept per channel and dispatched like any other.

mod common;

use common::{shard, sim_request, start, wait_until};
use serde_json::{Value, json};
use shardmesh_sim::{BOT_USER_ID, ErrorKind, SimConfig, UserPost, avatar_hash};
use twilight_http::Client;
use twilight_http::error::ErrorType;
use twilight_http::request::{Method, RequestBuilder};
use twilight_http::response::ResponseFuture;
use twilight_http::response::marker::ListBody;
use twilight_model::channel::message::Embed;
use twilight_model::channel::{Message, WebhookType};
use twilight_model::id::Id;

/// A config with room for every request a test makes within the global REST limit.
fn config(shards: u32, guilds: u32) -> SimConfig {
    SimConfig {
        shards,
        guilds,
        rest_global_limit: 1_000,
        ..SimConfig::default()
    }
}

/// The status and JSON body of a refused request.
fn refusal<T: std::fmt::Debug>(result: Result<T, twilight_http::Error>) -> (u16, Value) {
    let error = result.expect_err("the simulator refuses the request");
    match error.kind() {
        ErrorType::Response { body, status, .. } => (
            status.get(),
            serde_json::from_slice(body).expect("error bodies are JSON"),
        ),
        other => panic!("not a refusal from the simulator: {other:?}"),
    }
}

/// A raw request under `/api/v10` with the bot token, for inputs twilight refuses to
/// send; returns the status and JSON body.
async fn raw(client: &Client, method: Method, path: &str, body: &[u8]) -> (u16, Value) {
    let request = RequestBuilder::raw(method, path.to_owned())
        .body(body.to_vec())
        .build()
        .unwrap();
    refusal(client.request::<Value>(request).await)
}

fn embed(title: &str) -> Embed {
    Embed {
        author: None,
        color: Some(0x00ff_aa00),
        description: Some("mirrored".into()),
        fields: Vec::new(),
        flags: None,
        footer: None,
        image: None,
        kind: "rich".into(),
        provider: None,
        thumbnail: None,
        timestamp: None,
        title: Some(title.into()),
        url: None,
        video: None,
    }
}

fn alice() -> UserPost {
    UserPost {
        content: "hello from alice".into(),
        username: "alice".into(),
        avatar: Some("a1b2c3d4e5f60718293a4b5c6d7e8f90".into()),
    }
}

#[tokio::test]
async fn a_webhook_reposts_a_user_message_with_the_users_name_and_avatar() {
    let sim = start(config(1, 2)).await;
    let guild = &sim.guilds()[1];
    let (source, target) = (guild.channels[1], guild.channels[2]);
    let mut gateway = shard(&sim, 0, 1);
    gateway
        .pump_until("READY burst", |c| c.count("GUILD_CREATE") == 2)
        .await;
    let client = common::rest_client(&sim);

    let webhook = client
        .create_webhook(Id::new(target), "mirror")
        .avatar("data:image/png;base64,iVBORw0KGgo=")
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(webhook.kind, WebhookType::Incoming);
    assert_eq!(webhook.channel_id.map(Id::get), Some(target));
    assert_eq!(webhook.guild_id.map(Id::get), Some(guild.id));
    assert_eq!(webhook.name.as_deref(), Some("mirror"));
    assert_eq!(webhook.application_id.map(Id::get), Some(BOT_USER_ID));
    assert_eq!(webhook.user.as_ref().map(|u| u.id.get()), Some(BOT_USER_ID));
    assert!(webhook.avatar.is_some());
    let token = webhook.token.clone().expect("the creator sees the token");
    let listed = client
        .channel_webhooks(Id::new(target))
        .await
        .unwrap()
        .models()
        .await
        .unwrap();
    assert_eq!(listed, std::slice::from_ref(&webhook));

    // A user posts in the source channel; the bot mirrors it as that user.
    let original = sim.post_as_user(source, &alice()).unwrap();
    let author = &original["author"];
    let avatar_url = format!(
        "https://cdn.discordapp.com/avatars/{}/{}.png",
        author["id"].as_str().unwrap(),
        author["avatar"].as_str().unwrap()
    );
    let mirrored = client
        .execute_webhook(webhook.id, &token)
        .content(original["content"].as_str().unwrap())
        .username(author["username"].as_str().unwrap())
        .avatar_url(&avatar_url)
        .embeds(&[embed("from #source")])
        .wait()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(mirrored.content, "hello from alice");
    assert_eq!(mirrored.channel_id.get(), target);
    assert_eq!(mirrored.webhook_id, Some(webhook.id.cast()));
    assert_eq!(mirrored.author.id, webhook.id.cast());
    assert_eq!(mirrored.author.name, "alice");
    assert_eq!(
        mirrored.author.avatar.map(|hash| hash.to_string()),
        Some(avatar_hash(&avatar_url))
    );
    assert_eq!(
        mirrored
            .author
            .avatar
            .map(|hash| hash.to_string())
            .as_deref(),
        author["avatar"].as_str(),
        "a CDN avatar URL shows the original author's avatar"
    );
    assert!(mirrored.author.bot);
    assert!(mirrored.member.is_none(), "webhooks are not members");
    assert_eq!(mirrored.embeds[0].title.as_deref(), Some("from #source"));

    // Without overrides the webhook's own name and avatar show.
    let plain = client
        .execute_webhook(webhook.id, &token)
        .content("plain")
        .wait()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(plain.author.name, "mirror");
    assert_eq!(plain.author.avatar, webhook.avatar);

    gateway
        .pump_until("three MESSAGE_CREATE", |c| c.messages.len() == 3)
        .await;
    let seen = &gateway.messages[1];
    assert_eq!(seen.id, mirrored.id);
    assert_eq!(seen.webhook_id, Some(webhook.id.cast()));
    assert_eq!(seen.author.name, "alice");
    assert_eq!(seen.embeds.len(), 1);

    assert_eq!(sim.messages(source), [original]);
    let kept = sim.messages(target);
    assert_eq!(kept.len(), 2);
    assert!(
        kept.iter()
            .all(|m| m["webhook_id"] == webhook.id.to_string())
    );
    gateway.assert_matches_truth(&sim, 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn channel_history_is_newest_first_and_pages_with_before_and_after() {
    let sim = start(SimConfig {
        rate: 2_000.0,
        ..config(1, 1)
    })
    .await;
    let channel = Id::new(sim.guilds()[0].channels[0]);
    let client = common::rest_client(&sim);
    let mut ids = Vec::new();
    for n in 0..5 {
        let message = client
            .create_message(channel)
            .content(&format!("message {n}"))
            .await
            .unwrap()
            .model()
            .await
            .unwrap();
        ids.push(message.id);
    }
    let with_embed = client
        .create_message(channel)
        .embeds(&[embed("status")])
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(with_embed.embeds[0].title.as_deref(), Some("status"));
    ids.push(with_embed.id);

    let read = async |request: ResponseFuture<ListBody<Message>>| {
        let page = request.await.unwrap().models().await.unwrap();
        page.iter()
            .map(|m| ids.iter().position(|&id| id == m.id).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read(client.channel_messages(channel).into_future()).await,
        [5, 4, 3, 2, 1, 0]
    );
    assert_eq!(
        read(client.channel_messages(channel).limit(2).into_future()).await,
        [5, 4]
    );
    assert_eq!(
        read(
            client
                .channel_messages(channel)
                .before(ids[2])
                .into_future()
        )
        .await,
        [1, 0]
    );
    assert_eq!(
        read(
            client
                .channel_messages(channel)
                .after(ids[1])
                .limit(2)
                .into_future()
        )
        .await,
        [3, 2],
        "after gives the messages right after the id, newest first"
    );
    assert!(
        read(client.channel_messages(channel).after(ids[5]).into_future())
            .await
            .is_empty()
    );
    let page = client
        .channel_messages(channel)
        .limit(1)
        .await
        .unwrap()
        .models()
        .await
        .unwrap();
    assert_eq!(page[0].embeds[0].title.as_deref(), Some("status"));

    for bad in ["0", "101"] {
        let path = format!("channels/{channel}/messages?limit={bad}");
        let (status, body) = raw(&client, Method::Get, &path, &[]).await;
        assert_eq!((status, &body["code"]), (400, &json!(50_035)), "{body}");
        assert!(body["errors"]["limit"]["_errors"].is_array(), "{body}");
    }

    // Generated traffic reaches the gateway but never the history.
    wait_until("traffic", || sim.stats().generated >= 200).await;
    assert_eq!(sim.messages(channel.get()).len(), 6);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_user_post_arrives_as_message_create_from_a_human_member() {
    let sim = start(config(2, 4)).await;
    let guild = sim.guilds().into_iter().find(|g| g.shard == 1).unwrap();
    let channel = guild.channels[3];
    let mut gateway = shard(&sim, 1, 2);
    gateway
        .pump_until("READY burst", |c| c.count("GUILD_CREATE") == 2)
        .await;

    let posted = sim.post_as_user(channel, &alice()).unwrap();
    gateway
        .pump_until("MESSAGE_CREATE", |c| c.messages.len() == 1)
        .await;
    let seen = &gateway.messages[0];
    assert_eq!(seen.id.to_string(), posted["id"]);
    assert_eq!(seen.content, "hello from alice");
    assert_eq!(seen.channel_id.get(), channel);
    assert_eq!(seen.guild_id.map(Id::get), Some(guild.id));
    assert_eq!(seen.author.name, "alice");
    assert_eq!(
        seen.author.avatar.map(|a| a.to_string()).as_deref(),
        alice().avatar.as_deref()
    );
    assert!(!seen.author.bot);
    assert!(seen.member.is_some());
    assert!(seen.webhook_id.is_none());

    let again = sim.post_as_user(channel, &alice()).unwrap();
    assert_eq!(
        again["author"]["id"], posted["author"]["id"],
        "same name, same user"
    );

    // The same through the control API, with a chosen user id.
    let (status, bob) = sim_request(
        &sim,
        "POST",
        &format!("/_sim/channels/{channel}/messages"),
        Some(&json!({"content": "hi from bob", "author": {"username": "bob", "id": "123456789"}})),
    )
    .await;
    assert_eq!(status, 200, "{bob}");
    assert_eq!(bob["author"]["id"], "123456789");
    assert_eq!(bob["author"]["bot"], false);
    let (status, kept) = sim_request(
        &sim,
        "GET",
        &format!("/_sim/channels/{channel}/messages"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let contents: Vec<&str> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["hello from alice", "hello from alice", "hi from bob"],
        "oldest first"
    );
    gateway
        .pump_until("three MESSAGE_CREATE", |c| c.messages.len() == 3)
        .await;
    gateway.assert_matches_truth(&sim, 1).await;
    sim.shutdown().await;
}

/// The status and Discord code of a refusal.
fn code((status, body): (u16, Value)) -> (u16, u64) {
    (status, body["code"].as_u64().expect("a numeric code"))
}

#[tokio::test]
async fn unknown_channels_and_empty_messages_are_refused_like_discord() {
    let sim = start(config(1, 1)).await;
    let guild = &sim.guilds()[0];
    let channel = Id::new(guild.channels[1]);
    let not_a_channel = Id::new(guild.id);
    let client = common::rest_client(&sim);

    // Unknown channel: 404 / 10003 on every channel route and the control API.
    assert_eq!(
        code(refusal(
            client.create_message(not_a_channel).content("x").await
        )),
        (404, 10_003)
    );
    assert_eq!(
        code(refusal(client.channel_messages(not_a_channel).await)),
        (404, 10_003)
    );
    assert_eq!(
        code(refusal(
            client.create_webhook(not_a_channel, "mirror").await
        )),
        (404, 10_003)
    );
    assert_eq!(
        code(refusal(client.channel_webhooks(not_a_channel).await)),
        (404, 10_003)
    );
    let unknown = sim.post_as_user(guild.id, &alice()).unwrap_err();
    assert!(
        matches!(unknown.kind(), ErrorKind::UnknownChannel { channel } if *channel == guild.id)
    );
    let (status, body) = sim_request(
        &sim,
        "POST",
        &format!("/_sim/channels/{not_a_channel}/messages"),
        Some(&json!({"content": "x", "author": {"username": "alice"}})),
    )
    .await;
    assert_eq!(code((status, body)), (404, 10_003));

    // Nothing to show: 400 / 50006; not JSON: 400 / 50109.
    assert_eq!(
        code(refusal(client.create_message(channel).await)),
        (400, 50_006)
    );
    let empty = UserPost {
        content: String::new(),
        ..alice()
    };
    assert!(matches!(
        sim.post_as_user(channel.get(), &empty).unwrap_err().kind(),
        ErrorKind::EmptyMessage
    ));
    let path = format!("channels/{channel}/messages");
    let (status, body) = raw(&client, Method::Post, &path, b"{\"content\":").await;
    assert_eq!(code((status, body)), (400, 50_109));

    // Bot routes need the bot token; none of the refusals stored anything.
    let stranger = Client::builder()
        .proxy(sim.http_proxy(), true)
        .token("not-the-token".into())
        .ratelimiter(None)
        .build();
    assert_eq!(
        code(refusal(stranger.channel_webhooks(channel).await)),
        (401, 0)
    );
    assert!(sim.messages(channel.get()).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn webhook_names_tokens_and_usernames_are_checked_like_discord() {
    let sim = start(config(1, 1)).await;
    let channel = Id::new(sim.guilds()[0].channels[1]);
    let client = common::rest_client(&sim);

    // Names Discord refuses: 400 / 50035 naming the field.
    for name in ["Discord relay", "CLYDE"] {
        let (status, body) = refusal(client.create_webhook(channel, name).await);
        assert_eq!((status, &body["code"]), (400, &json!(50_035)), "{name}");
        assert!(body["errors"]["name"]["_errors"].is_array(), "{body}");
    }
    let too_long = json!({"name": "a".repeat(81)}).to_string();
    let path = format!("channels/{channel}/webhooks");
    let (status, body) = raw(&client, Method::Post, &path, too_long.as_bytes()).await;
    assert_eq!((status, &body["code"]), (400, &json!(50_035)), "{body}");
    assert!(
        client
            .channel_webhooks(channel)
            .await
            .unwrap()
            .models()
            .await
            .unwrap()
            .is_empty(),
        "refused webhooks are not created"
    );

    // Executing: unknown webhook 404 / 10015, wrong token 401 / 50027, empty 50006,
    // a username Discord refuses 50035.
    let webhook = client
        .create_webhook(channel, "mirror")
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    let token = webhook.token.unwrap();
    assert_eq!(
        code(refusal(
            client
                .execute_webhook(Id::new(12_345), &token)
                .content("x")
                .await
        )),
        (404, 10_015)
    );
    assert_eq!(
        code(refusal(
            client
                .execute_webhook(webhook.id, "wrong")
                .content("x")
                .await
        )),
        (401, 50_027)
    );
    assert_eq!(
        code(refusal(client.execute_webhook(webhook.id, &token).await)),
        (400, 50_006)
    );
    let (status, body) = refusal(
        client
            .execute_webhook(webhook.id, &token)
            .content("x")
            .username("discordfan")
            .await,
    );
    assert_eq!((status, &body["code"]), (400, &json!(50_035)));
    assert!(body["errors"]["username"]["_errors"].is_array(), "{body}");
    assert!(sim.messages(channel.get()).is_empty());
    sim.shutdown().await;
}
