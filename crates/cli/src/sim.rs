//! `shardmesh sim`: a local Discord (gateway + REST) for tests, demos and load tests.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shardmesh_mesh::{RoleSection, RoleSettings};
use shardmesh_proto::InvalidConfig;
use shardmesh_sim::{ErrorKind, SimConfig, Simulator, Stats, Token};

use crate::tally::SimTally;

/// Flags of `shardmesh sim`. The world's flags override `[sim]` in `--config` and
/// `SHARDMESH__SIM__*` variables (keys as in [`SimConfig`]: `shards`, `guilds`, `rate`,
/// `max_concurrency`, `token`, `seed`, `heartbeat_interval_ms`, `resume_window_ms`,
/// `replay_capacity`, `session_start_total`, …); a flag left out keeps their value.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (gateway, REST and `/_sim/` control share it).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 7_100)]
    port: u16,
    /// Shard count clients must identify with [`sim.shards`, default 1].
    #[arg(long)]
    shards: Option<u32>,
    /// Guilds the bot is in, spread over shards as Discord does [`sim.guilds`, default 10].
    #[arg(long)]
    guilds: Option<u32>,
    /// Synthetic dispatches per second across all guilds, 0 for idle [`sim.rate`, default 100].
    #[arg(long)]
    rate: Option<f64>,
    /// Identify buckets; one IDENTIFY per bucket per 5 s [`sim.max_concurrency`, default 1].
    #[arg(long)]
    max_concurrency: Option<u16>,
    /// Bot token clients must present [`sim.token`, default `sim-token`].
    #[arg(long)]
    token: Option<String>,
    /// Seed of the traffic generator: same seed, same events [`sim.seed`, default 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Heartbeat interval sent in HELLO, in milliseconds [`sim.heartbeat_interval_ms`,
    /// default 41250].
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// How long a disconnected session stays resumable, in seconds
    /// [`sim.resume_window_ms` / 1000, default 180].
    #[arg(long)]
    resume_window_secs: Option<u64>,
    /// Dispatches kept per session for RESUME replay [`sim.replay_capacity`, default 4096].
    #[arg(long)]
    replay_capacity: Option<usize>,
    /// Daily session-start budget reported by `/gateway/bot` [`sim.session_start_total`,
    /// default 1000].
    #[arg(long)]
    session_start_limit: Option<u32>,
    /// Seconds between stats lines (0: none).
    #[arg(long, default_value_t = 5)]
    stats_every: u64,
    /// Also keep a tally at this address (ip:port): consumers deliver to it with
    /// `--sink http://ADDR/events`, and `GET http://ADDR/verdict` compares what they
    /// delivered with every dispatch this simulator sent (lost, duplicates, out of
    /// order), as `shardmesh demo` does. The stats lines then carry the verdict so far.
    #[arg(long, value_name = "ADDR")]
    tally: Option<SocketAddr>,
}

/// `[sim]` of the config file: the simulated world, keyed as [`SimConfig`] names its
/// fields. The binary's default rate is 100 dispatches/s (the library's is 0), so a
/// bare `shardmesh sim` shows traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct SimSection(SimConfig);

impl Default for SimSection {
    fn default() -> Self {
        Self(SimConfig {
            rate: 100.0,
            ..SimConfig::default()
        })
    }
}

impl RoleSection for SimSection {
    const SECTION: &'static str = "sim";

    fn validate(&self) -> Result<(), InvalidConfig> {
        self.0.validate().map_err(|error| match error.kind() {
            ErrorKind::InvalidConfig { key, reason } => InvalidConfig::new(full_key(key), *reason),
            _ => InvalidConfig::new("sim", error.to_string()),
        })
    }
}

/// `sim.<key>`: the simulator names keys within its own config. Leaked because
/// `InvalidConfig` holds a static key; a refusal happens once, at start-up.
fn full_key(key: &str) -> &'static str {
    Box::leak(format!("sim.{key}").into_boxed_str())
}

impl SimArgs {
    /// The world: defaults < `[sim]` in `file` < `SHARDMESH__SIM__*` in `env` < flags.
    fn config(
        &self,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<SimConfig> {
        let RoleSettings {
            role: SimSection(mut config),
            ..
        } = RoleSettings::<SimSection>::load_from(file, env)?;
        let flags = &self;
        if let Some(token) = &flags.token {
            config.token = Token::new(token.clone());
        }
        config.shards = flags.shards.unwrap_or(config.shards);
        config.guilds = flags.guilds.unwrap_or(config.guilds);
        config.rate = flags.rate.unwrap_or(config.rate);
        config.max_concurrency = flags.max_concurrency.unwrap_or(config.max_concurrency);
        config.seed = flags.seed.unwrap_or(config.seed);
        config.heartbeat_interval_ms = flags
            .heartbeat_interval_ms
            .unwrap_or(config.heartbeat_interval_ms);
        if let Some(secs) = flags.resume_window_secs {
            config.resume_window_ms = secs.saturating_mul(1_000);
        }
        config.replay_capacity = flags.replay_capacity.unwrap_or(config.replay_capacity);
        config.session_start_total = flags
            .session_start_limit
            .unwrap_or(config.session_start_total);
        SimSection(config.clone())
            .validate()
            .map_err(|invalid| anyhow::anyhow!("invalid flags: {invalid}"))?;
        Ok(config)
    }
}

/// Runs the simulator until Ctrl-C or SIGTERM, printing a stats line every few seconds.
pub async fn run(args: SimArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let config = args.config(file, std::env::vars())?;
    // Shared with the tally, which reads the record for every verdict.
    let sim = Arc::new(Simulator::start(config, SocketAddr::new(args.bind, args.port)).await?);
    let config = sim.config();
    let http = format!("http://{}", sim.http_proxy());
    println!("shardmesh sim listening on {}", sim.addr());
    println!("  gateway  {}/?v=10&encoding=json", sim.gateway_url());
    println!(
        "  REST     {http}/api/v10   (twilight-http: proxy(\"{}\", true))",
        sim.http_proxy()
    );
    println!("  control  {http}/_sim/stats  /_sim/log?since=0  /_sim/chaos/{{shard}}");
    println!(
        "  {} shards, {} guilds, {} dispatches/s, max_concurrency {}, seed {}",
        config.shards, config.guilds, config.rate, config.max_concurrency, config.seed
    );
    let shutdown = shardmesh_mesh::shutdown_on_signal();
    let tally = SimTally::new(Arc::clone(&sim));
    if let Some(addr) = args.tally {
        tally.serve(addr, shutdown.clone()).await?;
        println!(
            "  tally    http://{addr}/events (the consumers' HTTP sink)  http://{addr}/verdict"
        );
    }
    let every = Duration::from_secs(args.stats_every.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut last = (Instant::now(), sim.stats());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick(), if args.stats_every > 0 => {
                let now = (Instant::now(), sim.stats());
                println!("{}", summary(&last, &now));
                if args.tally.is_some() {
                    println!("tally: {}", tally.judge().line());
                }
                last = now;
            }
        }
    }
    println!("shardmesh sim stopping");
    drop(tally);
    // The tally's server may still hold the simulator for a moment; dropping the last
    // handle stops it just the same.
    if let Ok(sim) = Arc::try_unwrap(sim) {
        sim.shutdown().await;
    }
    Ok(())
}

/// One line: what is connected, what was spent, what flowed since the last line.
fn summary((then, before): &(Instant, Stats), (now, stats): &(Instant, Stats)) -> String {
    let secs = now.duration_since(*then).as_secs_f64().max(f64::EPSILON);
    #[allow(clippy::cast_precision_loss)]
    let per_sec = stats.dispatches_sent.saturating_sub(before.dispatches_sent) as f64 / secs;
    format!(
        "connections {} sessions {} identifies {} resumes {} pacing_violations {} session_starts_left {}/{} sent {} ({per_sec:.0}/s) replayed {} rest {} (429: {})",
        stats.connections,
        stats.sessions,
        stats.identifies,
        stats.resumes,
        stats.pacing_violations,
        stats.session_start_remaining,
        stats.session_start_total,
        stats.dispatches_sent,
        stats.replayed,
        stats.rest_requests,
        stats.rest_rate_limited,
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn flags(args: &[&str]) -> SimArgs {
        Cli::parse_from(std::iter::once("sim").chain(args.iter().copied())).sim
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn flags_become_a_valid_config() {
        let args = flags(&[
            "--shards",
            "4",
            "--guilds",
            "40",
            "--rate",
            "250",
            "--max-concurrency",
            "2",
            "--token",
            "t",
            "--seed",
            "9",
        ]);
        let config = args.config(None, []).unwrap();
        assert_eq!(
            (
                config.shards,
                config.guilds,
                config.max_concurrency,
                config.seed
            ),
            (4, 40, 2, 9)
        );
        assert!(config.token.matches("Bot t"));
        assert!((config.rate - 250.0).abs() < f64::EPSILON);
    }

    #[test]
    fn bare_sim_has_traffic() {
        let config = flags(&[]).config(None, []).unwrap();
        assert!((config.rate - 100.0).abs() < f64::EPSILON);
        assert_eq!((config.shards, config.guilds), (1, 10));
    }

    #[test]
    fn file_then_environment_then_flags() {
        // One file for every process of a host: the gateway's section is left alone.
        let toml = file(
            "[cluster]\nname = \"demo\"\n[gateway]\ntoken = \"t\"\n\
             [sim]\nshards = 4\nguilds = 40\nrate = 5.0\nseed = 3\nresume_window_ms = 9000\n",
        );
        let env = [("SHARDMESH__SIM__GUILDS".to_owned(), "80".to_owned())];
        let config = flags(&["--seed", "9"])
            .config(Some(toml.path()), env)
            .unwrap();
        assert_eq!(
            (
                config.shards,
                config.guilds,
                config.seed,
                config.resume_window_ms
            ),
            (4, 80, 9, 9_000)
        );
        assert!((config.rate - 5.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_bad_sim_key_is_named_with_its_source() {
        let toml = file("[sim]\nshards = 0\n");
        let path = toml.path().display().to_string();
        let error = flags(&[]).config(Some(toml.path()), []).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("invalid configuration: sim.shards (from {path} line 2): must be 1..=65535")
        );
        let toml = file("[sim]\nshard = 4\n");
        let error = flags(&[]).config(Some(toml.path()), []).unwrap_err();
        assert!(error.to_string().contains("sim.shard"), "{error}");
        assert!(error.to_string().contains("unknown key"), "{error}");
        let error = flags(&["--shards", "0"]).config(None, []).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid flags: sim.shards: must be 1..=65535"
        );
    }

    #[test]
    fn summary_reports_the_rate_since_the_last_line() {
        let start = Instant::now();
        let before = Stats {
            dispatches_sent: 100,
            ..Stats::default()
        };
        let after = Stats {
            dispatches_sent: 300,
            connections: 2,
            ..Stats::default()
        };
        let line = summary(&(start, before), &(start + Duration::from_secs(2), after));
        assert!(line.contains("connections 2"), "{line}");
        assert!(line.contains("sent 300 (100/s)"), "{line}");
    }
}
