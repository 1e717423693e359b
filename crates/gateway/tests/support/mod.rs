//! A test cluster of gateway nodes in one process: the simulator as Discord, the real
//! RabbitMQ, one SQLite store file, each node with its own bus, publisher and store
//! handle running `shardmesh_mesh::run` with [`GatewayShards`] as its holder.

#![allow(dead_code, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardmesh_broker::{
    BrokerConfig, BrokerUrl, NodeBus, Publisher, StartAt, StreamId, StreamReader, Topology,
};
use shardmesh_gateway::{BotToken, GatewayConfig, GatewayShards, PublishLoop, ShardPhase};
use shardmesh_mesh::{LeaseConfig, MembershipConfig, MeshNode, NodeIdentity, NodeStatus};
use shardmesh_proto::{EventEnvelope, NodeRole, NodeState};
use shardmesh_sim::{EventKind, SimConfig, Simulator};
use shardmesh_store::{ClusterSpec, LeaseKey, SqliteConfig, SqliteStore, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use twilight_gateway::Intents;

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

/// `(shard, session, seq)`: a dispatch's identity.
pub type Id = (u32, String, u64);

pub fn broker() -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(
            std::env::var("SHARDMESH_TEST_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        ),
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

/// Polls `done` every 20 ms until it holds; fails the test after [`DEADLINE`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the async `probe` every 20 ms until it yields a value; fails the test after
/// [`DEADLINE`].
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Node {
    pub name: String,
    pub shards: GatewayShards<SqliteStore>,
    pub status: watch::Receiver<NodeStatus>,
    /// Drains the node: hand-overs, then the publisher stops.
    pub shutdown: CancellationToken,
    bus_shutdown: CancellationToken,
    task: JoinHandle<()>,
}

pub struct Cluster {
    pub name: String,
    pub topology: Topology,
    pub store_config: SqliteConfig,
    pub sim: Simulator,
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(prefix: &str, sim: SimConfig) -> Self {
        // `RUST_LOG=shardmesh_gateway=debug cargo test -- --nocapture` shows the nodes' logs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("t-gw-{prefix}-{}-{nanos}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let sim = Simulator::start(sim, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("simulator starts");
        Self {
            topology: Topology::new(&name, PARTITIONS, &broker()).unwrap(),
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

    pub fn spec() -> ClusterSpec {
        ClusterSpec {
            shard_count: SHARDS,
            partitions: PARTITIONS,
            max_concurrency: SHARDS,
        }
    }

    pub fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            token: BotToken::new(self.sim.config().token.expose()),
            intents: Intents::all().bits(),
            gateway_url: Some(self.sim.gateway_url().to_owned()),
            ..GatewayConfig::default()
        }
    }

    pub async fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.store_config, &self.name)
            .await
            .unwrap()
    }

    /// Starts a node; its task runs the mesh loop and the publish loop side by side.
    pub async fn start_node(&mut self, name: &str, config: GatewayConfig) {
        let store = Arc::new(self.store().await);
        let bus_shutdown = CancellationToken::new();
        let (bus, inbox) = NodeBus::connect(&broker(), &self.topology, name, bus_shutdown.clone())
            .await
            .unwrap_or_else(|error| {
                panic!("RabbitMQ is needed (set SHARDMESH_TEST_AMQP_URL): {error}")
            });
        // The publisher's own token outlives the publish loop, so the loop can drain.
        let publisher = Publisher::connect(&broker(), &self.topology, bus_shutdown.clone())
            .await
            .unwrap();
        let (publish_loop, handle) = PublishLoop::new(publisher, name, PARTITIONS, &config);
        let stop = CancellationToken::new();
        let shards = GatewayShards::new(
            config,
            Self::spec(),
            name,
            Arc::clone(&store),
            handle,
            stop.clone(),
        );
        let node = MeshNode {
            identity: NodeIdentity {
                node: name.into(),
                role: NodeRole::Gateway,
                group: None,
                capacity: 1,
                address: None,
            },
            keys: (0..SHARDS).map(LeaseKey::Shard).collect(),
            store,
            holder: shards.clone(),
            lease: LEASE,
            membership: MEMBERSHIP,
        };
        let (status_tx, status) = watch::channel(NodeStatus {
            state: NodeState::Starting,
            owns: Vec::new(),
            peers: 0,
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (shards, shutdown) = (shards.clone(), shutdown.clone());
            async move {
                let meshing = async {
                    shardmesh_mesh::run(node, &bus, inbox, &status_tx, shutdown).await;
                    // Every shard is handed over: now the publisher may stop.
                    stop.cancel();
                };
                let (published, ()) = tokio::join!(publish_loop.run(stop.clone()), meshing);
                published.expect("publishing ends cleanly");
                shards.stopped().await;
                bus.shutdown().await;
            }
        });
        self.nodes.push(Node {
            name: name.into(),
            shards,
            status,
            shutdown,
            bus_shutdown,
            task,
        });
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|node| node.name == name).unwrap()
    }

    /// Active shards per node, from the nodes' own shard statuses.
    pub fn active(&self) -> BTreeMap<String, Vec<u32>> {
        self.nodes
            .iter()
            .map(|node| {
                let active = node
                    .shards
                    .statuses()
                    .into_iter()
                    .filter(|status| status.phase == ShardPhase::Active)
                    .map(|status| status.shard)
                    .collect();
                (node.name.clone(), active)
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

    /// Drains a node (hand-over by RESUME) and waits for its task to end.
    pub async fn stop(&mut self, name: &str) {
        let index = self
            .nodes
            .iter()
            .position(|node| node.name == name)
            .unwrap();
        let node = self.nodes.remove(index);
        node.shutdown.cancel();
        tokio::time::timeout(DEADLINE, node.task)
            .await
            .expect("a node drains in time")
            .unwrap();
        node.bus_shutdown.cancel();
    }

    /// Ends a node as a crash would: no hand-over, no leaving announcement, its
    /// connections dropped.
    pub async fn kill(&mut self, name: &str) {
        let index = self
            .nodes
            .iter()
            .position(|node| node.name == name)
            .unwrap();
        let node = self.nodes.remove(index);
        node.task.abort();
        let _ = node.task.await;
        node.bus_shutdown.cancel();
        // Its shard tasks end as their leases' keeper is gone (self-fence).
        tokio::time::timeout(DEADLINE, node.shards.stopped())
            .await
            .expect("shards of a killed node stop");
    }

    /// Every dispatch the simulator sent, RESUMED aside (a connection event, not a
    /// session's: gateways do not publish it).
    pub fn truth(&self) -> BTreeSet<Id> {
        self.sim
            .log_since(0, usize::MAX)
            .records
            .iter()
            .filter(|record| record.kind != EventKind::Resumed)
            .map(|record| (record.shard, record.session.to_string(), record.seq))
            .collect()
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
        let names: Vec<String> = self.nodes.iter().map(|node| node.name.clone()).collect();
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
