//! The numbers a gateway node starts with: shard count and identify buckets from the
//! configuration or from Discord (`GET /gateway/bot`), agreed with the cluster in the
//! store, and the daily identify budget Discord reports.

use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use shardmesh_gateway::GatewayConfig;
use shardmesh_store::{ClusterSpec, IdentifyBudget, Store};

use crate::settings::ClusterSettings;

/// How long the one REST call at start-up may take.
const REST_TIMEOUT: Duration = Duration::from_secs(10);

/// What `GET /gateway/bot` told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BotGateway {
    shards: u32,
    max_concurrency: u32,
    budget: IdentifyBudget,
}

/// Settles the cluster spec and records Discord's identify budget.
///
/// Configured numbers (non-zero) must match what the cluster recorded; numbers left at
/// 0 take the recorded ones, or Discord's when the cluster is new. Discord is always
/// asked, for the budget; when it cannot be reached and every number is configured the
/// node starts anyway (the budget stays as recorded).
pub async fn settle<S: Store>(
    store: &S,
    cluster: &ClusterSettings,
    gateway: &GatewayConfig,
) -> anyhow::Result<ClusterSpec> {
    let configured = cluster.shard_count != 0 && cluster.max_concurrency != 0;
    let discord = match ask_discord(gateway).await {
        Ok(answer) => Some(answer),
        Err(error) if configured => {
            tracing::warn!(
                error = %format!("{error:#}"),
                "GET /gateway/bot failed; starting with the configured shard count, \
                 identify budget unchanged"
            );
            None
        }
        Err(error) => {
            return Err(error.context(
                "cluster.shard_count or cluster.max_concurrency is 0, so Discord must be asked",
            ));
        }
    };
    if let Some(discord) = &discord {
        store
            .set_identify_budget(discord.budget)
            .await
            .context("recording the identify budget")?;
        tracing::info!(
            recommended_shards = discord.shards,
            max_concurrency = discord.max_concurrency,
            identifies_left = discord.budget.remaining,
            identifies_per_day = discord.budget.total,
            "asked Discord"
        );
    }
    let recorded = store.spec().await.context("reading the cluster spec")?;
    let pick = |configured: u32, recorded: Option<u32>, discord: Option<u32>| {
        if configured != 0 {
            configured
        } else {
            recorded.or(discord).unwrap_or(0)
        }
    };
    let proposed = ClusterSpec {
        shard_count: pick(
            cluster.shard_count,
            recorded.map(|spec| spec.shard_count),
            discord.map(|answer| answer.shards),
        ),
        partitions: cluster.partitions,
        max_concurrency: pick(
            cluster.max_concurrency,
            recorded.map(|spec| spec.max_concurrency),
            discord.map(|answer| answer.max_concurrency),
        ),
    };
    if proposed.shard_count == 0 || proposed.max_concurrency == 0 {
        bail!("Discord answered a shard count or max_concurrency of 0: {proposed:?}");
    }
    Ok(store.agree_spec(proposed).await?)
}

async fn ask_discord(gateway: &GatewayConfig) -> anyhow::Result<BotGateway> {
    let mut client = twilight_http::Client::builder()
        .token(gateway.token.expose().to_owned())
        .timeout(REST_TIMEOUT);
    if let Some((address, plain_http)) = gateway.api_proxy() {
        client = client.proxy(address, plain_http);
    }
    let client = client.build();
    let where_ = gateway.api_url.as_deref().unwrap_or("https://discord.com");
    let info = client
        .gateway()
        .authed()
        .await
        .with_context(|| format!("GET /gateway/bot at {where_}"))?
        .model()
        .await
        .with_context(|| format!("reading the answer of GET /gateway/bot at {where_}"))?;
    let limit = info.session_start_limit;
    Ok(BotGateway {
        shards: info.shards,
        max_concurrency: u32::from(limit.max_concurrency),
        budget: IdentifyBudget {
            remaining: limit.remaining,
            total: limit.total,
            resets_at: SystemTime::now() + Duration::from_millis(limit.reset_after),
        },
    })
}
