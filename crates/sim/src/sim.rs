//! The running simulator: its listener, background tasks, and the handle tests and the
//! CLI hold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::error::{Error, ErrorKind};
use crate::messages::UserPost;
use crate::shard_sets::Fanout;
use crate::state::{Chaos, Shared, Stats};
use crate::traffic::TrafficGen;
use crate::truth::{CommandPage, LogPage};
use crate::world::GuildInfo;

/// How often the traffic driver generates a batch.
const TRAFFIC_TICK: Duration = Duration::from_millis(10);

/// A running simulator: gateway and REST on one port, traffic, ground truth.
///
/// Dropping it cancels every task; [`Simulator::shutdown`] also waits for them.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Simulator {
    /// Validates `config`, binds `addr` (port 0 picks a free port) and starts serving.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for a bad config, [`ErrorKind::Bind`] if the
    /// address cannot be bound.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> Result<Self, Error> {
        config.validate()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(ErrorKind::Bind, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(ErrorKind::Bind, e))?;
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared::new(
            config,
            format!("ws://{}", reachable(addr)),
            cancel.clone(),
        ));
        let app = crate::routes::router(Arc::clone(&shared));
        let tracker = shared.tracker.clone();
        tracker.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "simulator server failed");
            }
        });
        tracker.spawn(drive_traffic(Arc::clone(&shared)));
        tracker.spawn(sweep_sessions(Arc::clone(&shared)));
        tracing::info!(%addr, "simulator listening");
        Ok(Self { shared, addr })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://host:port`: the gateway URL (twilight's `proxy_url`), also sent as
    /// `resume_gateway_url`.
    pub fn gateway_url(&self) -> &str {
        &self.shared.gateway_url
    }

    /// `host:port` for twilight-http's `ClientBuilder::proxy(_, true)`.
    pub fn http_proxy(&self) -> String {
        reachable(self.addr).to_string()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// A snapshot of the counters (also `GET /_sim/stats`).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Ground-truth records with `cursor >= since`, at most `limit` (also
    /// `GET /_sim/log`).
    pub fn log_since(&self, since: u64, limit: usize) -> LogPage {
        self.shared.log_since(since, limit)
    }

    /// Gateway commands received (ops 3, 4, 8, 31, 43 on identified connections) with
    /// `cursor >= since`, at most `limit`, oldest first (also `GET /_sim/commands`).
    ///
    /// Every command is recorded once, when read, even if it was malformed or named a
    /// guild of another shard; count a test's command here to prove it arrived exactly
    /// once.
    pub fn commands_since(&self, since: u64, limit: usize) -> CommandPage {
        self.shared.commands.since(since, limit)
    }

    /// Sets the traffic rate in dispatches per second (negative counts as 0).
    pub fn set_rate(&self, rate: f64) {
        self.shared.traffic.set_rate(rate.max(0.0));
    }

    /// Resumes generating traffic (it runs from the start unless stopped).
    pub fn start_traffic(&self) {
        self.shared.traffic.set_running(true);
    }

    /// Stops generating traffic; REST-created messages still dispatch.
    pub fn stop_traffic(&self) {
        self.shared.traffic.set_running(false);
    }

    /// Applies a chaos action to `shard` (its sessions of every shard count); returns
    /// how many sessions it reached.
    pub fn chaos(&self, shard: u32, chaos: Chaos) -> usize {
        self.shared.chaos(shard, None, chaos)
    }

    /// Applies a chaos action to shard `shard` of the sessions that identified with
    /// `shard_count` shards only (one set while a bot re-shards); returns how many
    /// sessions it reached.
    pub fn chaos_in(&self, shard_count: u32, shard: u32, chaos: Chaos) -> usize {
        self.shared.chaos(shard, Some(shard_count), chaos)
    }

    /// The shard count `GET /gateway/bot` recommends (the configured `shards` until
    /// changed).
    pub fn recommended_shards(&self) -> u32 {
        self.shared.recommended_shards()
    }

    /// Makes `GET /gateway/bot` recommend `shards` (also `POST
    /// /_sim/recommended_shards`), as Discord raises its recommendation when a bot
    /// grows. Sessions already running are not affected.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] (key `recommended_shards`) outside 1..=65,535.
    pub fn set_recommended_shards(&self, shards: u32) -> Result<(), Error> {
        if !(1..=65_535).contains(&shards) {
            return Err(Error::invalid_config(
                "recommended_shards",
                "must be 1..=65535",
            ));
        }
        self.shared.set_recommended_shards(shards);
        Ok(())
    }

    /// The bot's guilds.
    pub fn guilds(&self) -> Vec<GuildInfo> {
        self.shared.world.guild_infos()
    }

    /// Every message `channel` keeps, oldest first, as its `MESSAGE_CREATE` carried
    /// it (also `GET /_sim/channels/{id}/messages`).
    ///
    /// Kept are messages created through REST (bot messages, webhook executions) and
    /// [`Simulator::post_as_user`], at most the newest 10,000 per channel; generated
    /// traffic is never kept. An unknown channel has none.
    pub fn messages(&self, channel: u64) -> Vec<serde_json::Value> {
        self.shared
            .channels()
            .all(channel)
            .iter()
            // Stored JSON was written by serde_json: it always parses.
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect()
    }

    /// A human user posts `post` in `channel`: the message is kept in the channel and
    /// its `MESSAGE_CREATE` (author not a bot, with a `member`) goes to the guild's
    /// shard, in the ground truth like every dispatch. The author's id is derived from
    /// the username. Returns the message (also `POST /_sim/channels/{id}/messages`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnknownChannel`] if no guild has `channel`,
    /// [`ErrorKind::EmptyMessage`] for empty content, [`ErrorKind::InvalidPost`] for
    /// content over 2,000 characters, a username outside 2..=32 characters or an
    /// avatar that is not an image hash.
    pub fn post_as_user(&self, channel: u64, post: &UserPost) -> Result<serde_json::Value, Error> {
        crate::messages::post_as_user(&self.shared, channel, post, None)
            .map(|posted| posted.message)
    }

    /// A token cancelled when the simulator stops; cancelling it stops the simulator.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.cancel.clone()
    }

    /// Stops serving, closes every connection and waits for every task to end.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// An address clients can dial: the unspecified address becomes loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Generates traffic at the configured rate until cancelled, one batch per tick, each
/// event to the matching shard of every shard set in use, and wakes each touched
/// shard's connections once per batch.
async fn drive_traffic(shared: Arc<Shared>) {
    let world = shared.world;
    let mut traffic = TrafficGen::new(shared.config.seed, world);
    let mut d = String::with_capacity(2_048);
    let mut fanout = Fanout::default();
    let mut owed = 0.0_f64;
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(TRAFFIC_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let rate = shared.traffic.rate();
        if !shared.traffic.running.load(Ordering::Relaxed) || rate <= 0.0 {
            tokio::select! {
                () = shared.cancel.cancelled() => return,
                () = shared.traffic.changed.notified() => {}
            }
            owed = 0.0;
            last = Instant::now();
            continue;
        }
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            _ = tick.tick() => {}
            () = shared.traffic.changed.notified() => {}
        }
        // A stop (which also wakes this task) generates nothing more: a test that
        // stopped traffic can count what was generated and know it is final.
        if !shared.traffic.running.load(Ordering::Relaxed) {
            continue;
        }
        let now = Instant::now();
        // After a stall, catch up by at most 100 ms worth: the rate is a ceiling.
        owed = (owed + rate * now.duration_since(last).as_secs_f64()).min(rate * 0.1 + 1.0);
        last = now;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = owed.floor() as u64;
        #[allow(clippy::cast_precision_loss)]
        {
            owed -= due as f64;
        }
        fanout.begin(&shared.sets);
        for _ in 0..due {
            let Some(event) = traffic.next_into(&shared.ids, &mut d) else {
                break;
            };
            let guild_id = world.guild_id(event.guild);
            let logical = shared.next_logical();
            fanout.dispatch(guild_id, event.kind, event.id, logical, &d);
        }
        shared.counters.generated.fetch_add(due, Ordering::Relaxed);
        fanout.notify();
    }
}

/// Ends sessions whose resume window has passed.
async fn sweep_sessions(shared: Arc<Shared>) {
    let period = (shared.config.resume_window() / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = tokio::time::sleep(period) => shared.sweep(Instant::now()),
        }
    }
}
