//! One scenario's world: a unique cluster name, a temp directory with the SQLite store
//! and the nodes' config files and logs, the simulator as Discord, the real RabbitMQ,
//! and the gateway node processes. Everything is stopped and deleted at the end, also
//! when the scenario panics; then the end of every node's log is printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use shardmesh_broker::{BrokerConfig, BrokerUrl, Topology};
use shardmesh_harness::{
    Fleet, NodeConfig, NodeProcess, Timings, Truth, broker_url, require_broker, unique_name,
};
use shardmesh_sim::{SimConfig, Simulator};
use shardmesh_store::{
    Action, LeaseKey, LeaseState, ShardSession, SqliteConfig, SqliteStore, Store,
};
use tempfile::TempDir;

use crate::streams::{StreamReport, read_until_complete};

/// The broker config the test itself uses (reading streams, deleting the topology),
/// with quick reconnects.
///
/// # Panics
///
/// When RabbitMQ is unreachable, saying so: the scenarios need it.
pub async fn shared_broker() -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(require_broker().await),
        backoff_min_ms: 20,
        backoff_max_ms: 500,
        ..BrokerConfig::default()
    }
}

/// A scenario's cluster: simulator, store, topology and gateway node processes.
pub struct TestCluster {
    /// The cluster name.
    pub name: String,
    /// The simulated Discord.
    pub sim: Simulator,
    /// The test's own (direct) broker config.
    pub broker: BrokerConfig,
    /// The cluster's streams and exchanges.
    pub topology: Topology,
    /// The store every node shares.
    pub store: SqliteStore,
    /// What new nodes are configured with (node id and paths aside).
    pub template: NodeConfig,
    dir: Option<TempDir>,
    /// The node processes, running and ended.
    pub fleet: Fleet,
    finished: bool,
}

impl TestCluster {
    /// Starts the simulator with `sim` and prepares a cluster of `partitions` whose
    /// nodes use the simulator's shard count and `max_concurrency`, and `timings`.
    ///
    /// # Panics
    ///
    /// When RabbitMQ is unreachable or the simulator or store cannot start.
    pub async fn start(prefix: &str, sim: SimConfig, partitions: u32, timings: Timings) -> Self {
        let broker = shared_broker().await;
        let name = unique_name(prefix);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("a temp dir");
        let sim = Simulator::start(sim, "127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("the simulator starts");
        let store_path = dir.path().join("store.sqlite");
        // Opened first, so the nodes find the file and its tables ready.
        let store = SqliteStore::open(
            &SqliteConfig {
                path: store_path.clone(),
                ..SqliteConfig::default()
            },
            &name,
        )
        .await
        .expect("the store opens");
        let template = NodeConfig {
            cluster: name.clone(),
            partitions,
            shard_count: sim.config().shards,
            max_concurrency: u32::from(sim.config().max_concurrency),
            node_id: String::new(),
            store_path,
            broker_url: broker_url(),
            broker_connect_timeout_ms: 3_000,
            broker_backoff_max_ms: 1_000,
            timings,
            token: sim.config().token.expose().to_owned(),
            intents: 513,
            gateway_url: sim.gateway_url().to_owned(),
            api_url: format!("http://{}", sim.http_proxy()),
            consumer: None,
        };
        Self {
            topology: Topology::new(&name, partitions, &broker)
                .expect("a valid topology")
                .with_command_queues(template.shard_count),
            name,
            sim,
            broker,
            store,
            template,
            dir: Some(dir),
            fleet: Fleet::default(),
            finished: false,
        }
    }

    /// The template's config with node id `id`.
    pub fn node_config(&self, id: &str) -> NodeConfig {
        NodeConfig {
            node_id: id.to_owned(),
            ..self.template.clone()
        }
    }

    /// The scenario's temp directory.
    ///
    /// # Panics
    ///
    /// Never while the cluster lives (it is taken only on drop).
    pub fn dir(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("the dir lives until drop")
            .path()
            .to_owned()
    }

    /// Writes `config` to `<dir>/<id>.toml` and returns the path.
    ///
    /// # Panics
    ///
    /// When the file cannot be written.
    pub fn write_config(&self, config: &NodeConfig) -> PathBuf {
        let path = self.dir().join(format!("{}.toml", config.node_id));
        std::fs::write(&path, config.to_toml()).expect("write the node's config");
        path
    }

    /// Starts the nodes `ids` with the template config, all at once, and waits for
    /// each to serve HTTP.
    pub async fn start_nodes(&mut self, ids: &[&str]) {
        let configs = ids.iter().map(|id| self.node_config(id)).collect();
        self.start_nodes_with(configs).await;
    }

    /// Starts one node per config, all at once, and waits for each to serve HTTP.
    ///
    /// # Panics
    ///
    /// When a node does not start (with the end of its log).
    pub async fn start_nodes_with(&mut self, configs: Vec<NodeConfig>) {
        let starts: Vec<_> = configs
            .into_iter()
            .map(|config| {
                let path = self.write_config(&config);
                let log = self.dir().join(format!("{}.log", config.node_id));
                async move { NodeProcess::gateway(&config.node_id, &path, &log, &[]).await }
            })
            .collect();
        self.fleet.start_all(starts).await;
    }

    /// Waits until the simulator saw every shard of `shards` RESUME after its truth
    /// record `since` (a cursor from `sim.stats().truth_records`).
    ///
    /// # Panics
    ///
    /// When one has not within `timeout`, naming those that have not.
    pub async fn wait_resumed(&self, shards: &BTreeSet<u32>, since: u64, timeout: Duration) {
        let what = format!("shards {shards:?} resumed at the simulator");
        shardmesh_harness::wait_until(&what, timeout, || {
            let resumed = Truth::read(&self.sim).resumed_since(since);
            let waiting: Vec<&u32> = shards.difference(&resumed).collect();
            if waiting.is_empty() {
                Ok(())
            } else {
                Err(format!("no RESUMED yet for {waiting:?}"))
            }
        })
        .await;
    }

    /// Reads the event streams until they hold everything the simulator sent (stop its
    /// traffic first), and judges them; prints the summary after `label`.
    ///
    /// # Panics
    ///
    /// As [`read_until_complete`].
    pub async fn stream_report(&self, label: &str, timeout: Duration) -> (Truth, StreamReport) {
        let (truth, contents) =
            read_until_complete(&self.broker, &self.topology, &self.sim, timeout).await;
        let report = StreamReport::new(&truth, &contents);
        println!("{label}: {}", report.summary());
        (truth, report)
    }

    /// Shard leases with an owner, from the store.
    ///
    /// # Errors
    ///
    /// The store error, as text.
    pub async fn owners(&self) -> Result<BTreeMap<u32, String>, String> {
        let leases = self
            .store
            .leases()
            .await
            .map_err(|error| error.to_string())?;
        Ok(leases
            .into_iter()
            .filter_map(|lease| match (lease.key, lease.owner) {
                (LeaseKey::Shard(shard), Some(owner)) => Some((shard, owner)),
                _ => None,
            })
            .collect())
    }

    /// The session each shard lease saved.
    ///
    /// # Errors
    ///
    /// The store error, as text.
    pub async fn saved_sessions(&self) -> Result<BTreeMap<u32, ShardSession>, String> {
        let leases = self
            .store
            .leases()
            .await
            .map_err(|error| error.to_string())?;
        Ok(leases
            .into_iter()
            .filter_map(|lease| match (lease.key, lease.state) {
                (LeaseKey::Shard(shard), LeaseState::Shard(session)) => Some((shard, session)),
                _ => None,
            })
            .collect())
    }

    /// The action log, oldest first.
    ///
    /// # Panics
    ///
    /// When the store cannot be read.
    pub async fn actions(&self) -> Vec<Action> {
        let mut actions = self
            .store
            .recent_actions(100_000)
            .await
            .expect("read the action log");
        actions.reverse();
        actions
    }

    /// Asserts no node lost a lease it held (`lease_lost` in the action log): with the
    /// store healthy, leases end by hand-over or with their holder's death only.
    ///
    /// # Panics
    ///
    /// Listing the losses.
    pub async fn assert_no_lease_lost(&self) {
        let lost: Vec<String> = self
            .actions()
            .await
            .into_iter()
            .filter(|action| action.action == "lease_lost")
            .map(|action| format!("{} lost {} ({})", action.actor, action.args, action.result))
            .collect();
        assert!(
            lost.is_empty(),
            "expected no lease lost while the store is healthy; the action log says: {lost:?}"
        );
    }

    /// Waits until the running nodes hold every shard between them, evenly enough:
    /// each answers `/ready` 200, the store's owners are exactly the running nodes with
    /// at most `max_per_node` shards each, and each node's `shardmesh_gateway_shards_owned`
    /// equals its count in the store. Returns the owners.
    ///
    /// # Panics
    ///
    /// After `timeout`, with what the store and the nodes said last.
    pub async fn wait_settled(
        &self,
        max_per_node: usize,
        timeout: Duration,
    ) -> BTreeMap<u32, String> {
        let shards = self.template.shard_count;
        let what = format!(
            "all {shards} shards owned by the {} running nodes, at most {max_per_node} each, \
             store and /metrics agreeing, every node /ready",
            self.fleet.nodes().len()
        );
        shardmesh_harness::eventually(&what, timeout, || self.settled(shards, max_per_node)).await
    }

    async fn settled(
        &self,
        shards: u32,
        max_per_node: usize,
    ) -> Result<BTreeMap<u32, String>, String> {
        let owners = self.owners().await?;
        let mut counts: BTreeMap<&str, usize> = self
            .fleet
            .nodes()
            .iter()
            .map(|node| (node.id(), 0))
            .collect();
        for owner in owners.values() {
            match counts.get_mut(owner.as_str()) {
                Some(count) => *count += 1,
                None => {
                    return Err(format!(
                        "store owners {owners:?} include {owner}, not running"
                    ));
                }
            }
        }
        if owners.len() != shards as usize || counts.values().any(|count| *count > max_per_node) {
            return Err(format!(
                "store: {} shards owned, per node {counts:?}",
                owners.len()
            ));
        }
        for node in self.fleet.nodes() {
            node.ready().await?;
            let metrics = node.metrics().await?;
            let owned = metrics
                .get("shardmesh_gateway_shards_owned")
                .map(|_| metrics.count("shardmesh_gateway_shards_owned"));
            let expected = counts[node.id()] as u64;
            if owned != Some(expected) {
                return Err(format!(
                    "node {} reports shardmesh_gateway_shards_owned {owned:?}, the store {expected} \
                     (per node {counts:?})",
                    node.id()
                ));
            }
        }
        Ok(owners)
    }

    /// Waits until every shard has had a READY at the simulator.
    ///
    /// # Panics
    ///
    /// After `timeout`, naming the shards without one.
    pub async fn wait_ready_at_sim(&self, timeout: Duration) {
        let shards = self.template.shard_count;
        shardmesh_harness::wait_until(
            &format!("a READY for each of the {shards} shards at the simulator"),
            timeout,
            || {
                let ready = Truth::read(&self.sim).ready_shards();
                let waiting: Vec<u32> =
                    (0..shards).filter(|shard| !ready.contains(shard)).collect();
                if waiting.is_empty() {
                    Ok(())
                } else {
                    Err(format!("no READY yet for shards {waiting:?}"))
                }
            },
        )
        .await;
    }

    /// Waits until every shard's lease has saved a session whose seq is at least
    /// `min_seq` (events flow and renewals carry the confirmed seq); returns the saved
    /// sessions.
    ///
    /// # Panics
    ///
    /// After `timeout`, with the shards still behind.
    pub async fn wait_sessions_saved(
        &self,
        min_seq: u64,
        timeout: Duration,
    ) -> BTreeMap<u32, ShardSession> {
        let shards = self.template.shard_count;
        shardmesh_harness::eventually(
            &format!("every shard's lease saving a session at seq >= {min_seq}"),
            timeout,
            || async {
                let saved = self.saved_sessions().await?;
                let behind: Vec<(u32, u64)> = (0..shards)
                    .map(|shard| (shard, saved.get(&shard).map_or(0, |session| session.seq)))
                    .filter(|(_, seq)| *seq < min_seq)
                    .collect();
                if behind.is_empty() {
                    Ok(saved)
                } else {
                    Err(format!("(shard, saved seq) behind: {behind:?}"))
                }
            },
        )
        .await
    }

    /// Waits until the simulator has written `count` more ground-truth records than
    /// `cursor` (traffic went on for a while).
    ///
    /// # Panics
    ///
    /// After `timeout`.
    pub async fn wait_traffic(&self, cursor: u64, count: u64, timeout: Duration) {
        shardmesh_harness::wait_until(
            &format!("{count} more dispatches after cursor {cursor}"),
            timeout,
            || {
                let now = self.sim.stats().truth_records;
                if now >= cursor + count {
                    Ok(())
                } else {
                    Err(format!("{} so far", now.saturating_sub(cursor)))
                }
            },
        )
        .await;
    }

    /// The sum of the count-like metric `name` over the running nodes.
    ///
    /// # Errors
    ///
    /// A node's `/metrics` failing.
    pub async fn count_sum(&self, name: &str) -> Result<u64, String> {
        let mut sum = 0;
        for node in self.fleet.nodes() {
            sum += node.metrics().await?.count(name);
        }
        Ok(sum)
    }

    /// Stops every node (SIGKILL), deletes the cluster's store rows and topology and
    /// stops the simulator.
    ///
    /// # Panics
    ///
    /// When the rows or the topology cannot be deleted.
    pub async fn finish(mut self) {
        self.fleet.kill_all().await;
        self.store
            .delete_cluster()
            .await
            .expect("delete the store rows");
        self.topology
            .delete(&self.broker)
            .await
            .expect("delete the topology");
        self.finished = true;
    }

    /// The end of every node's log, running and ended.
    pub fn log_tails(&self) -> String {
        self.fleet.log_tails()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "\n===== cluster {}: the end of each node's log =====",
                self.name
            );
            eprintln!("{}", self.log_tails());
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "===== logs, configs and store kept in {} =====",
                    dir.keep().display()
                );
            }
        }
        // The processes die with their handles (kill_on_drop).
        self.fleet = Fleet::default();
        // Async cleanup from a destructor: its own runtime on its own thread. After a
        // failure the store rows stay in the kept directory, for `sqlite3` to read.
        let keep_rows = std::thread::panicking();
        let (store, topology, broker) = (
            self.store.clone(),
            self.topology.clone(),
            self.broker.clone(),
        );
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a cleanup runtime");
            runtime.block_on(async move {
                if !keep_rows {
                    let _ = store.delete_cluster().await;
                }
                let _ = topology.delete(&broker).await;
            });
        });
        let _ = cleanup.join();
    }
}
