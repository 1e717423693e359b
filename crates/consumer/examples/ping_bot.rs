//! A whole bot: a consumer node answering "!ping" with "pong" through twilight-http.
//! `cargo run -p shardmesh-consumer --example ping_bot -- --config shardmesh.toml` reads
//! the file (and `SHARDMESH__*` variables) as `shardmesh consumer --config` does; replies
//! go to Discord, or to `gateway.api_url` when set (`shardmesh sim`), with
//! `gateway.token`: the keys the bot's gateway nodes read.

mod bot_settings;

use shardmesh_consumer::{Delivery, Handler};
use twilight_model::gateway::event::Event;

struct PingBot(twilight_http::Client);

impl Handler for PingBot {
    type Error = anyhow::Error;

    async fn handle(&self, delivery: Delivery) -> anyhow::Result<()> {
        // The envelope names the event type: most events are skipped without parsing.
        if delivery.event_type() == "MESSAGE_CREATE"
            && let Event::MessageCreate(message) = delivery.event()?
            && !message.author.bot
            && message.content.trim() == "!ping"
        {
            // A failure (5xx, timeout) is retried, then dead-lettered: never dropped.
            let reply = self.0.create_message(message.channel_id).content("pong");
            reply.await?;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default(); // twilight-http TLS
    let (settings, rest) = bot_settings::load("ping_bot")?;
    let shutdown = shardmesh_consumer::shutdown_on_signal();
    Ok(shardmesh_consumer::run(settings, PingBot(rest), shutdown).await?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt as _;
    use shardmesh_proto::EventEnvelope;
    use shardmesh_sim::{SimConfig, Simulator};
    use twilight_gateway::{ConfigBuilder, Intents, Message, Shard, ShardId};

    use super::*;

    /// A `MESSAGE_CREATE` of `content` by a user (not the bot) in `channel`.
    fn message(channel: u64, guild: u64, content: &str) -> Delivery {
        let payload = format!(
            r#"{{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{{"id":"900000000000000001","type":0,"channel_id":"{channel}","guild_id":"{guild}","author":{{"id":"900000000000000002","username":"someone","discriminator":"0","global_name":null,"avatar":null}},"content":"{content}","timestamp":"2024-01-01T00:00:00.000000+00:00","edited_timestamp":null,"tts":false,"mention_everyone":false,"mentions":[],"mention_roles":[],"attachments":[],"embeds":[],"pinned":false,"flags":0}}}}"#
        );
        Delivery::new(
            EventEnvelope {
                shard: 0,
                shard_count: 1,
                epoch: 1,
                session: "s".into(),
                seq: 7,
                event_type: "MESSAGE_CREATE".into(),
                guild_id: Some(guild),
                received_at_ms: 0,
                payload,
            },
            0,
            0,
        )
    }

    /// Reads the shard until a dispatch whose text satisfies `wanted`, for at most 20 s.
    async fn next_dispatch(shard: &mut Shard, wanted: impl Fn(&str) -> bool) -> String {
        let read = async {
            while let Some(item) = shard.next().await {
                if let Ok(Message::Text(text)) = item
                    && wanted(&text)
                {
                    return text;
                }
            }
            panic!("the shard stream ended");
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("the dispatch arrived within 20 s")
    }

    #[tokio::test]
    async fn ping_is_answered_with_pong_through_discord() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = Simulator::start(
            SimConfig {
                guilds: 1,
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let guild = sim.guilds()[0].clone();
        // A bot's own shard, to see what Discord dispatches after the reply.
        let config = ConfigBuilder::new(
            "sim-token".into(),
            Intents::GUILDS | Intents::GUILD_MESSAGES,
        )
        .proxy_url(sim.gateway_url().to_owned())
        .build();
        let mut shard = Shard::with_config(ShardId::ONE, config);
        next_dispatch(&mut shard, |text| text.contains(r#""t":"GUILD_CREATE""#)).await;

        let bot = PingBot(
            twilight_http::Client::builder()
                .proxy(sim.http_proxy(), true)
                .token("Bot sim-token".into())
                .build(),
        );
        bot.handle(message(guild.channels[0], guild.id, "hello"))
            .await
            .unwrap();
        bot.handle(message(guild.channels[0], guild.id, "!ping"))
            .await
            .unwrap();

        let reply =
            next_dispatch(&mut shard, |text| text.contains(r#""t":"MESSAGE_CREATE""#)).await;
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["d"]["content"], "pong");
        assert_eq!(reply["d"]["channel_id"], guild.channels[0].to_string());
        assert_eq!(sim.stats().rest_requests, 1, "only !ping is answered");
        sim.shutdown().await;
    }
}
