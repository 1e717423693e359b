//! Mesh nodes sharing keys through a real RabbitMQ (announcements) and a real SQLite
//! store (leases): even split, no key held twice, re-balancing on join and drain.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardmesh_broker::{BrokerConfig, BrokerUrl, Topology};
use shardmesh_harness::{broker_url, require_broker, unique_name, wait_until};
use shardmesh_mesh::{
    ClusterSettings, Error, LeaseConfig, LeaseGuard, LeaseHolder, MembershipConfig, MeshSettings,
    NodeRuntime, NodeSettings, NodeTask,
};
use shardmesh_proto::{NodeRole, NodeState};
use shardmesh_store::{LeaseKey, LeaseState, SqliteConfig, SqliteStore, Store, StoreConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SHARDS: u32 = 32;
const DEADLINE: Duration = Duration::from_secs(30);

fn broker() -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(broker_url()),
        backoff_min_ms: 20,
        backoff_max_ms: 500,
        ..BrokerConfig::default()
    }
}

/// Who works on which key right now, across all nodes of the test. A std Mutex: never
/// held across an await.
#[derive(Default)]
struct Workboard {
    working: Mutex<HashMap<LeaseKey, String>>,
    overlaps: Mutex<Vec<LeaseKey>>,
}

struct Worker {
    node: String,
    board: Arc<Workboard>,
}

impl LeaseHolder for Worker {
    async fn start(&self, guard: LeaseGuard) {
        let key = guard.lease().key.clone();
        let previous = self
            .board
            .working
            .lock()
            .unwrap()
            .insert(key.clone(), self.node.clone());
        if previous.is_some() {
            self.board.overlaps.lock().unwrap().push(key);
        }
    }

    fn state(&self, _key: &LeaseKey) -> LeaseState {
        LeaseState::Empty
    }

    async fn hand_over(&self, key: &LeaseKey) -> LeaseState {
        self.board.working.lock().unwrap().remove(key);
        LeaseState::Empty
    }

    async fn lost(&self, key: &LeaseKey) {
        self.board.working.lock().unwrap().remove(key);
    }
}

struct Node {
    name: String,
    task: NodeTask<Error>,
}

struct Mesh {
    cluster: String,
    topology: Topology,
    store_config: SqliteConfig,
    board: Arc<Workboard>,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Mesh {
    async fn new(prefix: &str) -> Self {
        require_broker().await;
        let cluster = unique_name(prefix);
        let topology = Topology::new(&cluster, 1, &broker()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        Self {
            cluster,
            topology,
            store_config: SqliteConfig {
                path: dir.path().join("store.sqlite"),
                ..SqliteConfig::default()
            },
            board: Arc::new(Workboard::default()),
            nodes: Vec::new(),
            _dir: dir,
        }
    }

    /// Starts node `name` on the mesh layer's runtime: the store, the bus and the mesh
    /// loop with a [`Worker`] holding `shard/0..32`, quick timings, no HTTP face.
    fn start_node(&mut self, name: &str) {
        let settings = MeshSettings {
            cluster: ClusterSettings {
                name: self.cluster.clone(),
                partitions: 1,
                ..ClusterSettings::default()
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
            lease: LeaseConfig {
                duration_ms: 3_000,
                renew_interval_ms: 500,
                fence_margin_ms: 500,
            },
            membership: MembershipConfig {
                announce_interval_ms: 100,
                node_timeout_ms: 1_000,
                settle_delay_ms: 300,
            },
        };
        let topology = self.topology.clone();
        let holder = Worker {
            node: name.into(),
            board: Arc::clone(&self.board),
        };
        let shutdown = CancellationToken::new();
        let task = NodeTask::spawn(&shutdown, move |controls, drain| async move {
            let mut runtime =
                NodeRuntime::start(settings, NodeRole::Gateway, None, false, controls).await?;
            let keys = (0..SHARDS).map(LeaseKey::Shard).collect();
            let served = runtime
                .crash_signal()
                // Boxed: the mesh loop's state machine is large.
                .run_until_cancelled_owned(Box::pin(async {
                    let store = runtime.open_store(&drain).await?;
                    runtime.join(&topology, &drain).await?;
                    let pending = std::future::pending::<()>();
                    runtime
                        .run(store, keys, holder, drain.child_token(), pending)
                        .await;
                    Ok(())
                }))
                .await;
            runtime
                .finish(served, |error| matches!(error, Error::Stopped))
                .await
        });
        self.nodes.push(Node {
            name: name.into(),
            task,
        });
    }

    /// Keys held per node, from the nodes' own status.
    fn holdings(&self) -> BTreeMap<String, Vec<LeaseKey>> {
        self.nodes
            .iter()
            .map(|node| (node.name.clone(), node.task.status().borrow().owns.clone()))
            .collect()
    }

    /// Waits until every key is held by exactly one node and no node holds more than
    /// `bound`.
    async fn wait_balanced(&self, bound: usize) -> BTreeMap<String, Vec<LeaseKey>> {
        let what = format!("every key held by one node, none holding more than {bound}");
        wait_until(&what, DEADLINE, || {
            let holdings = self.holdings();
            let mut owners: HashMap<&LeaseKey, usize> = HashMap::new();
            for key in holdings.values().flatten() {
                *owners.entry(key).or_default() += 1;
            }
            let each_once =
                owners.len() == SHARDS as usize && owners.values().all(|count| *count == 1);
            if each_once && holdings.values().all(|keys| keys.len() <= bound) {
                Ok(holdings.clone())
            } else {
                Err(format!("{holdings:?}"))
            }
        })
        .await
    }

    async fn stop(&mut self, name: &str) {
        let index = self
            .nodes
            .iter()
            .position(|node| node.name == name)
            .unwrap();
        let mut node = self.nodes.remove(index);
        tokio::time::timeout(DEADLINE, node.task.stop())
            .await
            .expect("a node drains in time")
            .expect("a node stops cleanly");
    }

    /// Ends a node as a crash would: no hand-over, no leaving announcement, its
    /// connections dropped.
    async fn kill(&mut self, name: &str) {
        let index = self
            .nodes
            .iter()
            .position(|node| node.name == name)
            .unwrap();
        let node = self.nodes.remove(index);
        tokio::time::timeout(DEADLINE, node.task.crash())
            .await
            .expect("a killed node ends");
        // The process is gone, and its work with it.
        self.board
            .working
            .lock()
            .unwrap()
            .retain(|_, worker| worker != name);
    }

    async fn finish(mut self) {
        for name in self
            .nodes
            .iter()
            .map(|node| node.name.clone())
            .collect::<Vec<_>>()
        {
            self.stop(&name).await;
        }
        assert!(self.board.overlaps.lock().unwrap().is_empty());
        let store = SqliteStore::open(&self.store_config, &self.cluster)
            .await
            .unwrap();
        store.delete_cluster().await.unwrap();
        self.topology.delete(&broker()).await.unwrap();
    }
}

#[tokio::test]
async fn nodes_split_32_keys_evenly_and_rebalance_on_join_drain_and_crash() {
    let mut mesh = Mesh::new("mesh").await;
    for name in ["a", "b", "c"] {
        mesh.start_node(name);
    }
    let three = mesh.wait_balanced(11).await;
    assert!(three.values().all(|keys| keys.len() >= 10), "{three:?}");

    mesh.start_node("d");
    let four = mesh.wait_balanced(8).await;
    assert_eq!(four["d"].len(), 8);

    // A drained node hands everything over; the others take its keys.
    mesh.stop("b").await;
    // Right after it stopped (its row lives a node timeout, 1 s), the registry says b
    // left rather than that it is ready.
    let store = SqliteStore::open(&mesh.store_config, &mesh.cluster)
        .await
        .unwrap();
    let b_row = store
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|node| node.node == "b");
    assert!(
        b_row
            .as_ref()
            .is_some_and(|row| row.state == NodeState::Leaving),
        "the registry lists the drained node b as {b_row:?}"
    );
    mesh.wait_balanced(11).await;
    assert!(
        mesh.board.overlaps.lock().unwrap().is_empty(),
        "a key was worked on twice"
    );

    // Every hand-over went through the store: the action log says so.
    let actions = store.recent_actions(500).await.unwrap();
    let handed_over_by_b = actions
        .iter()
        .filter(|action| action.actor == "b" && action.action == "hand_over")
        .count();
    assert!(
        handed_over_by_b >= 8,
        "b handed over {handed_over_by_b} keys"
    );
    // A crashed node's keys are taken over once its leases expire, and not before.
    let killed_at = Instant::now();
    mesh.kill("c").await;
    mesh.wait_balanced(16).await;
    assert!(
        killed_at.elapsed() >= Duration::from_millis(1_500),
        "keys of a crashed node were taken before its leases could expire"
    );
    mesh.finish().await;
}
