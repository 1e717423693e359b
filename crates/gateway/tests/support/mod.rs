//! A test cluster of gateway nodes in one process: the simulator as Discord, the real
//! RabbitMQ, one SQLite store file, each node a [`GatewayNode`] started from plain
//! settings, the way `shardmesh gateway` starts one.

#![allow(dead_code, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shardmesh_broker::{BrokerConfig, BrokerUrl, StartAt, StreamId, StreamReader, Topology};
use shardmesh_gateway::{BotToken, GatewayConfig, GatewayNode, GatewaySettings, ShardPhase};
use shardmesh_harness::{Truth, broker_url, require_broker, unique_name};
use shardmesh_mesh::{ClusterSettings, LeaseConfig, MembershipConfig, MeshSettings, NodeSettings};
use shardmesh_proto::EventEnvelope;
use shardmesh_sim::{SimConfig, Simulator};
use shardmesh_store::{SqliteConfig, SqliteStore, Store, StoreConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use twilight_gateway::Intents;

pub use shardmesh_harness::Id;

pub const SHARDS: u32 = 8;
pub const PARTITIONS: u32 = 4;
/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const LEASE: LeaseConfig = LeaseConfig {
    duration_ms: 3_000,
    renew_interval_ms: 500,
    fence_margin_ms: 500,
};
pub const MEMBERSHIP: MembershipConfig = MembershipConfig {
    announce_interval_ms: 100,
    node_timeout_ms: 1_000,
    settle_delay_ms: 300,
};

pub fn broker() -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(broker_url()),
        backoff_min_ms: 20,
        backoff_max_ms: 500,
        ..BrokerConfig::default()
    }
}

/// A simulator with short heartbeats and no identify pacing (pacing is not what these
/// tests check; the store queue still paces per bucket).
pub fn sim_config(rate: f64) -> SimConfig {
    SimConfig {
        shards: SHARDS,
        guilds: 2 * SHARDS,
        max_concurrency: u16::try_from(SHARDS).unwrap(),
        rate,
        heartbeat_interval_ms: 1_000,
        identify_interval_ms: 0,
        identify_slack_ms: 0,
        ..SimConfig::default()
    }
}

pub struct Cluster {
    pub name: String,
    pub topology: Topology,
    pub store_config: SqliteConfig,
    pub sim: Simulator,
    nodes: Vec<(String, GatewayNode)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(prefix: &str, sim: SimConfig) -> Self {
        // The nodes' logs at info go with a failing test's output (a passing test's are
        // dropped); `RUST_LOG=shardmesh_gateway=debug cargo test -- --nocapture` shows more.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "shardmesh_gateway=info,shardmesh_mesh=info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_test_writer()
            .try_init();
        require_broker().await;
        let name = unique_name(&format!("gw-{prefix}"));
        let dir = tempfile::tempdir().unwrap();
        let sim = Simulator::start(sim, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("simulator starts");
        Self {
            topology: Topology::new(&name, PARTITIONS, &broker())
                .unwrap()
                .with_command_queues(SHARDS),
            store_config: SqliteConfig {
                path: dir.path().join("store.sqlite"),
                ..SqliteConfig::default()
            },
            name,
            sim,
            nodes: Vec::new(),
            _dir: dir,
        }
    }

    /// A cluster with nodes `a` and `b` started together, holding 4 active shards each.
    pub async fn start_two(prefix: &str, sim: SimConfig) -> Self {
        let mut cluster = Self::start(prefix, sim).await;
        let config = cluster.gateway_config();
        cluster.start_node("a", config.clone());
        cluster.start_node("b", config);
        shardmesh_harness::wait_for("both nodes hold 4 active shards", DEADLINE, || {
            cluster.settled(4)
        })
        .await;
        cluster
    }

    /// `[gateway]` pointing at the simulator, for its gateway and its REST API.
    pub fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            token: BotToken::new(self.sim.config().token.expose()),
            intents: Intents::all().bits(),
            gateway_url: Some(self.sim.gateway_url().to_owned()),
            api_url: Some(format!("http://{}", self.sim.http_proxy())),
            ..GatewayConfig::default()
        }
    }

    pub async fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.store_config, &self.name)
            .await
            .unwrap()
    }

    /// Starts node `name` with `config`: the cluster's spec, store, broker and quick
    /// timings, no HTTP face.
    pub fn start_node(&mut self, name: &str, config: GatewayConfig) {
        let settings = GatewaySettings {
            mesh: MeshSettings {
                cluster: ClusterSettings {
                    name: self.name.clone(),
                    partitions: PARTITIONS,
                    shard_count: SHARDS,
                    max_concurrency: SHARDS,
                },
                node: NodeSettings {
                    id: name.into(),
                    capacity: 1,
                    http_bind: String::new(),
                },
                store: StoreConfig {
                    sqlite: self.store_config.clone(),
                    ..StoreConfig::default()
                },
                broker: broker(),
                lease: LEASE,
                membership: MEMBERSHIP,
            },
            role: config,
        };
        let node = GatewayNode::spawn(settings, &CancellationToken::new());
        self.nodes.push((name.into(), node));
    }

    pub fn node(&self, name: &str) -> &GatewayNode {
        self.nodes
            .iter()
            .find_map(|(named, node)| (named == name).then_some(node))
            .unwrap()
    }

    fn remove(&mut self, name: &str) -> GatewayNode {
        let index = self
            .nodes
            .iter()
            .position(|(named, _)| named == name)
            .unwrap();
        self.nodes.remove(index).1
    }

    /// Active shards per node, from the nodes' own shard statuses.
    pub fn active(&self) -> BTreeMap<String, Vec<u32>> {
        self.nodes
            .iter()
            .map(|(name, node)| {
                let active = node
                    .shards()
                    .into_iter()
                    .filter(|status| status.phase == ShardPhase::Active)
                    .map(|status| status.shard)
                    .collect();
                (name.clone(), active)
            })
            .collect()
    }

    /// Whether every shard is active on exactly one node, and each node has `per_node`.
    pub fn settled(&self, per_node: usize) -> bool {
        let active = self.active();
        let all: BTreeSet<u32> = active.values().flatten().copied().collect();
        let count: usize = active.values().map(Vec::len).sum();
        all.len() == SHARDS as usize
            && count == SHARDS as usize
            && active.values().all(|shards| shards.len() == per_node)
    }

    /// Drains a node (hand-over by RESUME) and waits for it to end cleanly.
    pub async fn stop(&mut self, name: &str) {
        let mut node = self.remove(name);
        tokio::time::timeout(DEADLINE, node.stop())
            .await
            .expect("a node drains in time")
            .expect("a node stops cleanly");
    }

    /// Ends a node as a crash would: no hand-over, no leaving announcement, its
    /// connections dropped, its leases left to expire.
    pub async fn kill(&mut self, name: &str) {
        let node = self.remove(name);
        tokio::time::timeout(DEADLINE, node.crash())
            .await
            .expect("shards of a killed node stop");
    }

    /// Every dispatch the simulator sent, RESUMED aside (a connection event, not a
    /// session's: gateways do not publish it).
    pub fn truth(&self) -> BTreeSet<Id> {
        Truth::read(&self.sim).ids()
    }

    /// Reads every event stream until it holds everything the simulator sent (the
    /// truth is re-read each round, as the last frames may still be on their way) and
    /// nothing more arrives for a moment. Returns the envelopes in stream order per
    /// partition.
    pub async fn read_streams(&self) -> (BTreeSet<Id>, Vec<EventEnvelope>) {
        let token = CancellationToken::new();
        let mut readers = Vec::new();
        for partition in 0..PARTITIONS {
            let reader = StreamReader::connect(
                &broker(),
                &self.topology,
                StreamId::Events(partition),
                StartAt::First,
                token.clone(),
            )
            .await
            .unwrap();
            readers.push(reader);
        }
        let mut events = Vec::new();
        let mut seen = BTreeSet::new();
        let end = Instant::now() + DEADLINE;
        loop {
            for reader in &mut readers {
                while let Ok(next) =
                    tokio::time::timeout(Duration::from_millis(300), reader.next_batch()).await
                {
                    let (_, batch) = next.unwrap();
                    for envelope in batch.events {
                        seen.insert((envelope.shard, envelope.session.clone(), envelope.seq));
                        events.push(envelope);
                    }
                }
            }
            let truth = self.truth();
            if truth.is_subset(&seen) {
                token.cancel();
                for reader in readers {
                    reader.close().await;
                }
                return (truth, events);
            }
            assert!(
                Instant::now() < end,
                "streams never held everything; missing: {:?}",
                truth.difference(&seen).take(10).collect::<Vec<_>>()
            );
        }
    }

    /// Stops the remaining nodes, deletes the cluster's rows and streams, stops the
    /// simulator.
    pub async fn finish(mut self) {
        let names: Vec<String> = self.nodes.iter().map(|(name, _)| name.clone()).collect();
        for name in names {
            self.stop(&name).await;
        }
        self.store().await.delete_cluster().await.unwrap();
        self.topology.delete(&broker()).await.unwrap();
        self.sim.shutdown().await;
    }
}

/// How often each dispatch appears in the streams.
pub fn copies(events: &[EventEnvelope]) -> BTreeMap<Id, Vec<&EventEnvelope>> {
    let mut copies: BTreeMap<Id, Vec<&EventEnvelope>> = BTreeMap::new();
    for envelope in events {
        copies
            .entry((envelope.shard, envelope.session.clone(), envelope.seq))
            .or_default()
            .push(envelope);
    }
    copies
}

/// Asserts the streams hold exactly the truth's dispatches, with every session's seqs
/// running 1, 2, 3, ... without a gap.
pub fn assert_complete(truth: &BTreeSet<Id>, events: &[EventEnvelope]) {
    let copies = copies(events);
    let published: BTreeSet<Id> = copies.keys().cloned().collect();
    assert_eq!(
        published.difference(truth).take(10).collect::<Vec<_>>(),
        Vec::<&Id>::new(),
        "streams hold dispatches the simulator never sent"
    );
    assert_eq!(
        truth.difference(&published).take(10).collect::<Vec<_>>(),
        Vec::<&Id>::new(),
        "dispatches missing from the streams"
    );
    let mut sessions: BTreeMap<(u32, &str), Vec<u64>> = BTreeMap::new();
    for (shard, session, seq) in &published {
        sessions.entry((*shard, session)).or_default().push(*seq);
    }
    for ((shard, session), seqs) in sessions {
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "gap in shard {shard} session {session}");
    }
    assert!(
        published
            .iter()
            .map(|(shard, ..)| shard)
            .collect::<BTreeSet<_>>()
            .len()
            == SHARDS as usize,
        "some shard published nothing"
    );
}
