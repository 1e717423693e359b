//! What the example bots read at start, from the same keys as the `shardmesh` binary:
//! `[--config FILE]` and `SHARDMESH__*` variables as `shardmesh consumer` reads them,
//! and for replies the bot token and REST address gateway nodes use (`gateway.token`,
//! `gateway.api_url`), so one file or one set of variables serves the whole bot.

use std::path::Path;

use shardmesh_consumer::ConsumerSettings;
use shardmesh_gateway::GatewaySettings;

/// The consumer node's settings and a Discord REST client: Discord itself, or
/// `gateway.api_url` (e.g. `shardmesh sim`'s `http://127.0.0.1:7100`) when set.
///
/// # Errors
///
/// Arguments other than `[--config FILE]`, or settings that do not load (a missing
/// `gateway.token` among them).
pub fn load(example: &str) -> anyhow::Result<(ConsumerSettings, twilight_http::Client)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = match args.as_slice() {
        [] => None,
        [flag, file] if flag == "--config" => Some(Path::new(file)),
        _ => anyhow::bail!("usage: {example} [--config FILE]"),
    };
    let settings = ConsumerSettings::load(file)?;
    let discord = GatewaySettings::load(file)?.role;
    // twilight-http adds the `Bot ` prefix when the token lacks it, as the gateway does.
    let mut rest = twilight_http::Client::builder().token(discord.token.expose().to_owned());
    if let Some((address, plain_http)) = discord.api_proxy() {
        rest = rest.proxy(address, plain_http);
    }
    Ok((settings, rest.build()))
}
