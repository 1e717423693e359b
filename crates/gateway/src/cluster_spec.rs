//! The numbers a gateway node starts with: shard count and identify buckets from the
//! configuration or from Discord (`GET /gateway/bot`), agreed with the cluster in the
//! store, and the daily identify budget Discord reports.

use std::time::{Duration, SystemTime};

use shardmesh_mesh::ClusterSettings;
use shardmesh_store::{ClusterSpec, IdentifyBudget, Store};

use crate::{Error, GatewayConfig};

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
pub(crate) async fn settle<S: Store>(
    store: &S,
    cluster: &ClusterSettings,
    gateway: &GatewayConfig,
) -> Result<ClusterSpec, Error> {
    let configured = cluster.shard_count != 0 && cluster.max_concurrency != 0;
    let discord = match ask_discord(gateway).await {
        Ok(answer) => Some(answer),
        Err(error) if configured => {
            tracing::warn!(
                %error,
                "GET /gateway/bot failed; starting with the configured shard count, \
                 identify budget unchanged"
            );
            None
        }
        Err(Error::Discord { url, reason }) => {
            return Err(Error::Discord {
                url,
                reason: format!(
                    "{reason} (cluster.shard_count or cluster.max_concurrency is 0, so \
                     Discord must be asked)"
                ),
            });
        }
        Err(error) => return Err(error),
    };
    if let Some(discord) = &discord {
        store
            .set_identify_budget(discord.budget)
            .await
            .map_err(|source| store_error("recording the identify budget", source))?;
        tracing::info!(
            recommended_shards = discord.shards,
            max_concurrency = discord.max_concurrency,
            identifies_left = discord.budget.remaining,
            identifies_per_day = discord.budget.total,
            "asked Discord"
        );
    }
    let recorded = store
        .spec()
        .await
        .map_err(|source| store_error("reading the cluster spec", source))?;
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
        return Err(Error::Discord {
            url: api_base(gateway).to_owned(),
            reason: format!("answered a shard count or max_concurrency of 0: {proposed:?}"),
        });
    }
    store
        .agree_spec(proposed)
        .await
        .map_err(|source| store_error("agreeing the cluster spec", source))
}

fn store_error(step: &str, source: shardmesh_store::Error) -> Error {
    Error::Node(shardmesh_mesh::Error::Store {
        step: step.to_owned(),
        source,
    })
}

fn api_base(gateway: &GatewayConfig) -> &str {
    gateway.api_url.as_deref().unwrap_or("https://discord.com")
}

async fn ask_discord(gateway: &GatewayConfig) -> Result<BotGateway, Error> {
    let mut client = twilight_http::Client::builder()
        .token(gateway.token.expose().to_owned())
        .timeout(REST_TIMEOUT);
    if let Some((address, plain_http)) = gateway.api_proxy() {
        client = client.proxy(address, plain_http);
    }
    let client = client.build();
    let failed = |reason: String| Error::Discord {
        url: format!("{}/api/v10/gateway/bot", api_base(gateway)),
        reason,
    };
    let info = client
        .gateway()
        .authed()
        .await
        .map_err(|error| failed(error.to_string()))?
        .model()
        .await
        .map_err(|error| failed(format!("reading the answer: {error}")))?;
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
