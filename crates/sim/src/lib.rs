//! A local Discord for tests, demos and load tests: gateway v10 (JSON over WebSocket,
//! optional `zlib-stream` or `zstd-stream`) and a REST subset on one port, synthetic
//! traffic at a set rate, chaos controls, and a ground-truth record of every dispatch it
//! sent.
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
//!
//! Channels keep the messages created on request, so a bot that reads history or
//! reposts through webhooks (a channel mirror) can be tested end to end: a human user
//! posts with [`Simulator::post_as_user`], the bot sees the `MESSAGE_CREATE`, reads
//! `GET /channels/{id}/messages`, creates a webhook with `POST /channels/{id}/webhooks`
//! and executes it with its own `username` and `avatar_url`; [`Simulator::messages`]
//! shows what each channel holds. Generated traffic is dispatched but never kept.
//!
//! ```no_run
//! use shardmesh_sim::{SimConfig, Simulator, UserPost};
//!
//! # async fn demo() -> Result<(), shardmesh_sim::Error> {
//! let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! let channels = &sim.guilds()[0].channels;
//! let post = UserPost {
//!     content: "hello".into(),
//!     username: "alice".into(),
//!     ..UserPost::default()
//! };
//! sim.post_as_user(channels[0], &post)?;
//! // ... the bot mirrors it into channels[1], then:
//! let mirrored = sim.messages(channels[1]);
//! assert_eq!(mirrored[0]["author"]["username"], "alice");
//! # Ok(())
//! # }
//! ```

mod channels;
mod commands;
mod compress;
mod config;
mod connection;
mod control;
pub mod error;
mod frames;
mod members;
mod messages;
mod pacing;
mod rate_limit;
mod reply;
mod rest;
mod routes;
mod session;
mod shard_sets;
mod sim;
mod state;
mod string_ids;
mod traffic;
mod truth;
mod world;

pub use config::{PRIVILEGED_INTENTS, SimConfig, Token, VALID_INTENTS};
pub use error::{Error, ErrorKind};
pub use messages::UserPost;
pub use sim::Simulator;
pub use state::{Chaos, Stats};
pub use traffic::EventKind;
pub use truth::{CommandPage, CommandRecord, DispatchRecord, LogPage, SessionId};
pub use world::{BOT_USER_ID, DISCORD_EPOCH_MS, GuildInfo, avatar_hash};
