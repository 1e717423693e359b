//! Channel mirroring, a service on the consumer library: each message a person posts in
//! channel `MIRROR_SOURCE` is reposted in `MIRROR_TARGET` through a webhook, under the
//! author's name and avatar. `cargo run -p shardmesh-consumer --example mirror --
//! --config shardmesh.toml` reads the file (and `SHARDMESH__*`) as `shardmesh consumer`
//! does; REST goes to Discord, or to `gateway.api_url` when set (`shardmesh sim`), with
//! `gateway.token`: the keys the gateway nodes read. Run several: the group shares the
//! partitions.
//!
//! Each message is reposted once:
//! - A node drained (SIGTERM, a deploy) hands its partitions over with a final
//!   checkpoint: the next owner starts after the last event handled and repeats nothing.
//! - A node killed (SIGKILL, OOM) leaves its next owner to repeat the events handled since
//!   the last checkpoint. Every repost carries its event's delivery id in an embed footer;
//!   whenever a partition's events do not continue where this process left them (its
//!   first event, or a take-over), the mirror reads the footers of the target channel's
//!   newest 100 messages and skips the events it finds there. A repeat whose repost is
//!   older than those 100 messages would be posted again: keep
//!   `consumer.checkpoint_every_events` well below 100 on a busy target channel. (Not
//!   seen either: a partition that leaves a live process and comes back to it inside
//!   the same stream message, which needs a lost lease and a batch.)

mod bot_settings;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use anyhow::Context as _;
use shardmesh_consumer::{Delivery, Handler};
use twilight_http::Client;
use twilight_model::gateway::event::Event;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, WebhookMarker};

const WEBHOOK_NAME: &str = "shardmesh mirror";

struct Mirror {
    rest: Client,
    source: Id<ChannelMarker>,
    target: Id<ChannelMarker>,
    webhook: (Id<WebhookMarker>, String),
    /// Footers of the target channel's newest messages, as last read.
    reposted: Mutex<HashSet<String>>,
    /// The stream offset of the last event handled, per partition.
    last_offset: Mutex<HashMap<u32, u64>>,
}

impl Mirror {
    /// Finds the target channel's mirror webhook, or creates it.
    async fn connect(rest: Client, source: u64, target: u64) -> anyhow::Result<Self> {
        let (source, target) = (Id::new(source), Id::new(target));
        let hooks = rest.channel_webhooks(target).await?.models().await?;
        let hook = match hooks
            .into_iter()
            .find(|hook| hook.name.as_deref() == Some(WEBHOOK_NAME))
        {
            Some(hook) => hook,
            None => {
                rest.create_webhook(target, WEBHOOK_NAME)
                    .await?
                    .model()
                    .await?
            }
        };
        let token = hook.token.context("the mirror webhook has no token")?;
        let (reposted, last_offset) = (Mutex::default(), Mutex::default());
        let webhook = (hook.id, token);
        Ok(Self {
            rest,
            source,
            target,
            webhook,
            reposted,
            last_offset,
        })
    }

    /// Reposts `delivery` unless it is not a person's message in the source channel, or
    /// a repeat whose repost is already in the target channel.
    async fn mirror(&self, delivery: &Delivery) -> anyhow::Result<()> {
        let Event::MessageCreate(message) = delivery.event()? else {
            return Ok(());
        };
        if message.channel_id != self.source || message.author.bot {
            return Ok(());
        }
        let id = delivery.id();
        let footer = format!("shardmesh event {}/{}/{}", id.shard, id.session, id.seq);
        let last = lock(&self.last_offset).get(&delivery.partition()).copied();
        // The same stream message (a batch) or the next one: this process's own run.
        if !last.is_some_and(|last| delivery.offset() == last || delivery.offset() == last + 1) {
            let recent = self.rest.channel_messages(self.target).limit(100).await?;
            let footers = recent
                .models()
                .await?
                .into_iter()
                .flat_map(|message| message.embeds);
            *lock(&self.reposted) = footers
                .filter_map(|embed| Some(embed.footer?.text))
                .collect();
        }
        if lock(&self.reposted).contains(&footer) {
            eprintln!("already mirrored, not posted again: {footer}");
            return Ok(());
        }
        let author = &message.author;
        let avatar = author.avatar.map(|hash| {
            format!(
                "https://cdn.discordapp.com/avatars/{}/{hash}.png",
                author.id
            )
        });
        let body = serde_json::to_vec(&serde_json::json!({
            "content": message.content,
            "username": author.global_name.as_ref().unwrap_or(&author.name),
            "avatar_url": avatar,
            "embeds": [{"type": "rich", "footer": {"text": footer}}],
        }))?;
        let (webhook, token) = &self.webhook;
        self.rest
            .execute_webhook(*webhook, token)
            .payload_json(&body)
            .wait()
            .await?;
        Ok(())
    }
}

impl Handler for Mirror {
    type Error = anyhow::Error;

    async fn handle(&self, delivery: Delivery) -> anyhow::Result<()> {
        if delivery.event_type() == "MESSAGE_CREATE" {
            self.mirror(&delivery).await?;
        }
        // Only once handled: a failed attempt is retried with the same look-up.
        lock(&self.last_offset).insert(delivery.partition(), delivery.offset());
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default(); // twilight-http TLS
    let (settings, rest) = bot_settings::load("mirror")?;
    // The channels are the mirror's own choice, not a setting of the node.
    let channel = |name| {
        std::env::var(name)
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("{name}: a channel id"))
    };
    let (source, target) = (channel("MIRROR_SOURCE")?, channel("MIRROR_TARGET")?);
    let mirror = Mirror::connect(rest, source, target).await?;
    let shutdown = shardmesh_consumer::shutdown_on_signal();
    Ok(shardmesh_consumer::run(settings, mirror, shutdown).await?)
}
