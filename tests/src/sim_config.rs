//! The simulated Discord the scenarios run against.

use shardmesh_sim::SimConfig;

/// A simulator with `shards` shards (two guilds each), `max_concurrency` identify
/// buckets paced at Discord's 5 s, and `rate` dispatches per second of traffic.
///
/// # Panics
///
/// When `max_concurrency` does not fit Discord's `u16`.
pub fn sim_config(shards: u32, max_concurrency: u32, rate: f64) -> SimConfig {
    SimConfig {
        shards,
        guilds: 2 * shards,
        max_concurrency: u16::try_from(max_concurrency).expect("max_concurrency fits u16"),
        rate,
        ..SimConfig::default()
    }
}
