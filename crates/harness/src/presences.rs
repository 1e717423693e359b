//! Presence updates (op 3) numbered by a marker in their activity name: what the
//! command tests and benchmarks send, and how they find each one again in the
//! simulator's command record.

use std::collections::BTreeMap;

use serde_json::Value;
use shardmesh_sim::Simulator;

/// The `d` of a presence update whose activity is named `m<marker>`.
pub fn presence_d(marker: u64) -> Value {
    serde_json::json!({
        "since": null,
        "activities": [{"name": format!("m{marker}"), "type": 0}],
        "status": "online",
        "afk": false,
    })
}

/// The whole frame of [`presence_d`], `{"op":3,"d":{..}}`, as it goes to Discord.
pub fn presence_frame(marker: u64) -> String {
    serde_json::json!({ "op": 3, "d": presence_d(marker) }).to_string()
}

/// One marked presence update the simulator received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The shard whose connection it came on.
    pub shard: u32,
    /// Its marker.
    pub marker: u64,
    /// When the simulator read it, Unix microseconds.
    pub at_us: u64,
}

/// Every marked presence update the simulator has received, in arrival order; other
/// commands are skipped.
pub fn received_presences(sim: &Simulator) -> Vec<Received> {
    let mut received = Vec::new();
    received_presences_since(sim, 0, &mut received);
    received
}

/// The marked presence updates from the simulator's command log position `since` on,
/// appended to `into`; returns the position after the last one read, for the next call.
pub fn received_presences_since(sim: &Simulator, mut since: u64, into: &mut Vec<Received>) -> u64 {
    loop {
        let page = sim.commands_since(since, 5_000);
        let Some(last) = page.records.last() else {
            return since;
        };
        since = last.cursor + 1;
        into.extend(page.records.iter().filter_map(|record| {
            let name = record.payload["activities"][0]["name"].as_str()?;
            Some(Received {
                shard: record.shard,
                marker: name.strip_prefix('m')?.parse().ok()?,
                at_us: record.received_at_us,
            })
        }));
    }
}

/// [`received_presences`] as each shard's markers, in arrival order.
pub fn presence_markers(sim: &Simulator) -> BTreeMap<u32, Vec<u64>> {
    let mut markers: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for received in received_presences(sim) {
        markers
            .entry(received.shard)
            .or_default()
            .push(received.marker);
    }
    markers
}
