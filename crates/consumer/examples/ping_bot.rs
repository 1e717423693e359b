//! A whole bot on shardmesh: a consumer node whose handler answers "!ping" with "pong"
//! through twilight-http.
//!
//! The loop: Discord (here `shardmesh sim`) → `shardmesh gateway` nodes → RabbitMQ
//! streams → this consumer node → [`PingBot::handle`] → REST `create_message` → Discord
//! dispatches the bot's "pong" as a new `MESSAGE_CREATE`, which comes back the same way
//! (and is ignored: the bot does not answer itself).
//!
//! Configured through the environment (defaults in brackets):
//!
//! - `PING_BOT_API` REST host:port of Discord's stand-in [`127.0.0.1:7100`, `shardmesh sim`]
//! - `PING_BOT_TOKEN` bot token [`sim-token`]
//! - `SHARDMESH_CLUSTER` cluster name [`default`], `SHARDMESH_STORE` SQLite file
//!   [`shardmesh.sqlite`], `SHARDMESH_AMQP_URL` RabbitMQ
//!   [`amqp://guest:guest@127.0.0.1:5672/%2f`], `PING_BOT_GROUP` consumer group [`ping-bot`]
//!
//! ```sh
//! cargo run -p shardmesh-consumer --example ping_bot
//! ```
//!
//! README's quick start shows the simulator and gateway node to run next to it.

use std::sync::Arc;

use shardmesh_broker::{BrokerConfig, BrokerUrl, NodeBus, Topology};
use shardmesh_consumer::{ConsumerConfig, ConsumerPartitions, ConsumerSetup, Delivery, Handler};
use shardmesh_mesh::{LeaseConfig, MembershipConfig, MeshNode, NodeIdentity, NodeStatus};
use shardmesh_proto::{NodeRole, NodeState};
use shardmesh_store::{SqliteConfig, SqliteStore, Store as _};
use tokio_util::sync::CancellationToken;
use twilight_model::gateway::event::Event;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The bot: one REST client, shared by every partition's calls.
struct PingBot {
    http: twilight_http::Client,
}

impl PingBot {
    /// A bot speaking REST to `api` (`host:port`, plain HTTP) with `token`.
    fn new(api: &str, token: &str) -> Self {
        let http = twilight_http::Client::builder()
            .proxy(api.to_owned(), true)
            .token(format!("Bot {token}"))
            .build();
        Self { http }
    }
}

impl Handler for PingBot {
    type Error = BoxError;

    async fn handle(&self, delivery: Delivery) -> Result<(), BoxError> {
        // The event type is in the envelope: most events are skipped without parsing.
        if delivery.event_type() != "MESSAGE_CREATE" {
            return Ok(());
        }
        let Event::MessageCreate(message) = delivery.event()? else {
            return Ok(());
        };
        if message.author.bot || message.content.trim() != "!ping" {
            return Ok(());
        }
        // An error here (a 5xx, a timeout) is retried by the consumer, then
        // dead-lettered: the ping is never silently dropped.
        self.http
            .create_message(message.channel_id)
            .content("pong")
            .await?;
        println!(
            "pong to channel {} (event shard {} seq {})",
            message.channel_id,
            delivery.shard(),
            delivery.seq()
        );
        Ok(())
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // twilight-http panics on its first client without a rustls crypto provider when
    // the workspace enables its TLS features.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = env("SHARDMESH_CLUSTER", "default");
    let group = env("PING_BOT_GROUP", "ping-bot");
    let node = format!("ping-bot-{}", std::process::id());
    let broker = BrokerConfig {
        url: BrokerUrl::new(env(
            "SHARDMESH_AMQP_URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        )),
        ..BrokerConfig::default()
    };
    let store = SqliteConfig {
        path: env("SHARDMESH_STORE", "shardmesh.sqlite").into(),
        ..SqliteConfig::default()
    };
    let store = Arc::new(SqliteStore::open(&store, &cluster).await?);
    // The gateway nodes agree the partition count in the store; before any ran, the
    // default is what the first one will propose.
    let partitions = store.spec().await?.map_or(16, |spec| spec.partitions);
    let topology = Topology::new(&cluster, partitions, &broker)?.with_dead_letters(&group);
    topology.declare(&broker).await?;
    let config = ConsumerConfig {
        group: group.clone(),
        ..ConsumerConfig::default()
    };
    let lease = LeaseConfig::default();
    let shutdown = CancellationToken::new();

    let bot = PingBot::new(
        &env("PING_BOT_API", "127.0.0.1:7100"),
        &env("PING_BOT_TOKEN", "sim-token"),
    );
    let partitions = ConsumerPartitions::new(
        ConsumerSetup {
            config,
            broker: broker.clone(),
            topology: topology.clone(),
            node: node.clone(),
            store: Arc::clone(&store),
            lease: lease.clone(),
            handler: bot,
        },
        CancellationToken::new(),
    )?;
    let (bus, inbox) = NodeBus::connect(&broker, &topology, &node, shutdown.clone()).await?;
    let mesh = MeshNode {
        identity: NodeIdentity {
            node: node.clone(),
            role: NodeRole::Consumer,
            group: Some(group.clone()),
            capacity: 1,
            address: None,
        },
        keys: partitions.keys(),
        store,
        holder: partitions.clone(),
        lease,
        membership: MembershipConfig::default(),
    };
    let (status, _) = tokio::sync::watch::channel(NodeStatus {
        state: NodeState::Starting,
        owns: Vec::new(),
        peers: 0,
    });
    // Ctrl-C drains: partitions are handed over with a final checkpoint, so another
    // node of the group (or this one, restarted) goes on exactly where this one stopped.
    let drain = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        drain.cancel();
    });
    println!(
        "ping bot {node}: cluster {cluster}, group {group}, {partitions_count} partitions; Ctrl-C stops",
        partitions_count = topology.partitions()
    );
    shardmesh_mesh::run(mesh, &bus, inbox, &status, shutdown).await;
    partitions.stopped().await;
    bus.shutdown().await;
    println!("stopped: {:?}", partitions.counters());
    Ok(())
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

        let bot = PingBot::new(&sim.http_proxy(), "sim-token");
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
