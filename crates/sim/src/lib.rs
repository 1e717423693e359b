//! A local Discord for tests, demos and load tests: gateway v10 (JSON over WebSocket,
//! optional `zlib-stream`) and a REST subset on one port, synthetic traffic at a set
//! rate, chaos controls, and a ground-truth record of every dispatch it sent.
//!
//! Real clients (twilight) connect to it as to Discord: the gateway at
//! [`Simulator::gateway_url`] (twilight's `ConfigBuilder::proxy_url`) and REST at
//! [`Simulator::http_proxy`] (twilight-http's `ClientBuilder::proxy(_, true)`).
//!
//! ```no_run
//! use shardmesh_sim::{Chaos, SimConfig, Simulator};
//!
//! # async fn demo() -> Result<(), shardmesh_sim::Error> {
//! let config = SimConfig { shards: 4, guilds: 40, rate: 500.0, ..SimConfig::default() };
//! let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap()).await?;
//! println!("gateway at {}", sim.gateway_url());
//! // ... connect shards, then:
//! sim.chaos(2, Chaos::Drop);
//! let page = sim.log_since(0, 1_000);
//! println!("{} dispatches sent so far", page.next);
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The same data is served over HTTP under `/_sim/` for other processes; see
//! [`Chaos`], [`Stats`] and [`LogPage`] for the JSON shapes.

mod compress;
mod config;
mod connection;
mod control;
pub mod error;
mod frames;
mod pacing;
mod rate_limit;
mod rest;
mod routes;
mod session;
mod sim;
mod state;
mod traffic;
mod truth;
mod world;

pub use config::{PRIVILEGED_INTENTS, SimConfig, Token, VALID_INTENTS};
pub use error::{Error, ErrorKind};
pub use sim::{GuildInfo, Simulator};
pub use state::{Chaos, Stats};
pub use traffic::EventKind;
pub use truth::{DispatchRecord, LogPage, SessionId};
pub use world::{BOT_USER_ID, DISCORD_EPOCH_MS};
