//! `shardmesh sim`: a local Discord (gateway + REST) for tests, demos and load tests.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use shardmesh_sim::{SimConfig, Simulator, Stats, Token};

/// Flags of `shardmesh sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (gateway, REST and `/_sim/` control share it).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 7_100)]
    port: u16,
    /// Shard count clients must identify with.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// Guilds the bot is in, spread over shards as Discord does.
    #[arg(long, default_value_t = 10)]
    guilds: u32,
    /// Synthetic dispatches per second across all guilds (0: idle).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Identify buckets; one IDENTIFY per bucket per 5 s.
    #[arg(long, default_value_t = 1)]
    max_concurrency: u16,
    /// Bot token clients must present.
    #[arg(
        long,
        env = "SHARDMESH_SIM_TOKEN",
        default_value = "sim-token",
        hide_env_values = true
    )]
    token: String,
    /// Seed of the traffic generator (same seed, same events).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Heartbeat interval sent in HELLO, in milliseconds.
    #[arg(long, default_value_t = 41_250)]
    heartbeat_interval_ms: u64,
    /// How long a disconnected session stays resumable, in seconds.
    #[arg(long, default_value_t = 180)]
    resume_window_secs: u64,
    /// Dispatches kept per session for RESUME replay.
    #[arg(long, default_value_t = 4_096)]
    replay_capacity: usize,
    /// Daily session-start budget reported by `/gateway/bot`.
    #[arg(long, default_value_t = 1_000)]
    session_start_limit: u32,
    /// Seconds between stats lines (0: none).
    #[arg(long, default_value_t = 5)]
    stats_every: u64,
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            token: Token::new(self.token.clone()),
            shards: self.shards,
            guilds: self.guilds,
            rate: self.rate,
            max_concurrency: self.max_concurrency,
            seed: self.seed,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            resume_window_ms: self.resume_window_secs.saturating_mul(1_000),
            replay_capacity: self.replay_capacity,
            session_start_total: self.session_start_limit,
            ..SimConfig::default()
        }
    }
}

/// Runs the simulator until Ctrl-C or SIGTERM, printing a stats line every few seconds.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let sim = Simulator::start(args.config(), SocketAddr::new(args.bind, args.port)).await?;
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
        args.shards, args.guilds, args.rate, args.max_concurrency, args.seed
    );
    let every = Duration::from_secs(args.stats_every.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut last = (Instant::now(), sim.stats());
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            result = &mut shutdown => {
                result?;
                break;
            }
            _ = ticker.tick(), if args.stats_every > 0 => {
                let now = (Instant::now(), sim.stats());
                println!("{}", summary(&last, &now));
                last = now;
            }
        }
    }
    println!("shardmesh sim stopping");
    sim.shutdown().await;
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

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
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

    #[test]
    fn flags_become_a_valid_config() {
        let cli = Cli::parse_from([
            "sim",
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
        let config = cli.sim.config();
        config.validate().unwrap();
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
