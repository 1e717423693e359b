//! twilight-http against the simulator's REST subset.

mod common;

use common::{shard, start};
use shardmesh_sim::{BOT_USER_ID, SimConfig};
use twilight_http::Client;
use twilight_model::id::Id;

fn http(sim: &shardmesh_sim::Simulator, ratelimited: bool) -> Client {
    if ratelimited {
        Client::builder()
            .proxy(sim.http_proxy(), true)
            .token(sim.config().token.expose().to_owned())
            .build()
    } else {
        common::rest_client(sim)
    }
}

#[tokio::test]
async fn gateway_bot_reports_shards_and_the_session_start_budget() {
    let sim = start(SimConfig {
        shards: 3,
        guilds: 3,
        max_concurrency: 2,
        ..SimConfig::default()
    })
    .await;
    let client = http(&sim, false);
    let info = client
        .gateway()
        .authed()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(info.shards, 3);
    assert_eq!(info.url, sim.gateway_url());
    assert_eq!(info.session_start_limit.max_concurrency, 2);
    assert_eq!(info.session_start_limit.remaining, 1_000);

    let mut gateway = shard(&sim, 0, 3);
    gateway.pump_until("READY", |c| c.count("READY") == 1).await;
    let info = client
        .gateway()
        .authed()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(info.session_start_limit.remaining, 999);
    assert_eq!(info.session_start_limit.total, 1_000);

    let unauthed = Client::builder()
        .proxy(sim.http_proxy(), true)
        .token("nope".into())
        .ratelimiter(None)
        .build();
    assert!(unauthed.gateway().authed().await.is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn create_message_returns_it_and_dispatches_message_create_to_the_right_shard() {
    let sim = start(SimConfig {
        shards: 2,
        guilds: 4,
        ..SimConfig::default()
    })
    .await;
    let guild = sim.guilds().into_iter().find(|g| g.shard == 1).unwrap();
    let mut gateway = shard(&sim, 1, 2);
    gateway
        .pump_until("READY burst", |c| c.count("GUILD_CREATE") == 2)
        .await;

    let client = http(&sim, true);
    let channel = Id::new(guild.channels[2]);
    let message = client
        .create_message(channel)
        .content("hello sim")
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(message.content, "hello sim");
    assert_eq!(message.channel_id, channel);
    assert_eq!(message.author.id.get(), BOT_USER_ID);
    gateway
        .pump_until("MESSAGE_CREATE", |c| c.count("MESSAGE_CREATE") == 1)
        .await;
    assert_eq!(gateway.received.last().unwrap().id, message.id.get());

    let missing = client.create_message(Id::new(guild.id)).content("x").await;
    assert!(missing.is_err(), "a guild id is not a channel");
    gateway.assert_matches_truth(&sim, 1).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn execute_webhook_honours_wait() {
    let sim = start(SimConfig {
        guilds: 2,
        ..SimConfig::default()
    })
    .await;
    let guild = &sim.guilds()[1];
    let mut gateway = shard(&sim, 0, 1);
    gateway
        .pump_until("READY burst", |c| c.count("GUILD_CREATE") == 2)
        .await;
    let client = http(&sim, true);
    let webhook = Id::new(guild.webhook_id);
    let waited = client
        .execute_webhook(webhook, &guild.webhook_token)
        .content("via webhook")
        .wait()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(waited.content, "via webhook");
    let response = client
        .execute_webhook(webhook, &guild.webhook_token)
        .content("no wait")
        .await
        .unwrap();
    assert_eq!(response.status().get(), 204);
    assert!(
        client
            .execute_webhook(webhook, "wrong-token")
            .content("x")
            .await
            .is_err()
    );
    gateway
        .pump_until("two MESSAGE_CREATE", |c| c.count("MESSAGE_CREATE") == 2)
        .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn past_the_global_limit_requests_get_429_and_twilight_paces_itself() {
    let sim = start(SimConfig {
        rest_global_limit: 10,
        ..SimConfig::default()
    })
    .await;
    // Without its rate limiter twilight retries a 429 at once, so every request ends
    // well but the simulator refused some first.
    let raw = http(&sim, false);
    let results =
        futures_util::future::join_all((0..15).map(|_| raw.gateway().authed().into_future())).await;
    assert!(results.iter().all(Result::is_ok));
    let limited = sim.stats().rest_rate_limited;
    assert!(limited >= 5, "{limited} requests were refused");

    // With its rate limiter, twilight reads the headers and waits instead.
    let paced = http(&sim, true);
    let results =
        futures_util::future::join_all((0..25).map(|_| paced.gateway().authed().into_future()))
            .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        sim.stats().rest_rate_limited,
        limited,
        "no 429 for a paced client"
    );
    sim.shutdown().await;
}
