//! A scenario's consumer nodes: `shardmesh consumer` processes of one or more groups,
//! all posting to the test's collecting [`Sink`], configured like the cluster's gateway
//! nodes plus a `[consumer]` section. Stopped with their handles; when a scenario
//! panics, the end of every consumer's log is printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use shardmesh_store::{LeaseKey, SqliteStore, Store};

use crate::cluster::TestCluster;
use crate::consumer_process::ConsumerProcess;
use crate::node_config::NodeConfig;
use crate::sink::Sink;

/// Lines of each consumer's log printed when a scenario fails.
const TAIL_LINES: usize = 60;

/// `[consumer]` settings besides the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// `consumer.checkpoint_every_events`.
    pub checkpoint_every_events: u64,
    /// `consumer.checkpoint_every_ms`.
    pub checkpoint_every_ms: u64,
    /// `consumer.handler_attempts`.
    pub handler_attempts: u32,
    /// `consumer.handler_backoff_min_ms`.
    pub handler_backoff_min_ms: u64,
    /// `consumer.handler_backoff_max_ms`.
    pub handler_backoff_max_ms: u64,
}

impl ConsumerSettings {
    /// A checkpoint per event (a killed consumer repeats at most the event in flight),
    /// three handler attempts with short backoff.
    pub const PER_EVENT: Self = Self {
        checkpoint_every_events: 1,
        checkpoint_every_ms: 100,
        handler_attempts: 3,
        handler_backoff_min_ms: 10,
        handler_backoff_max_ms: 50,
    };

    /// The `[consumer]` table for `group`.
    pub fn to_toml(&self, group: &str) -> String {
        format!(
            "\n[consumer]\ngroup = {}\ncheckpoint_every_events = {}\ncheckpoint_every_ms = {}\n\
             handler_attempts = {}\nhandler_backoff_min_ms = {}\nhandler_backoff_max_ms = {}\n",
            toml::Value::String(group.to_owned()),
            self.checkpoint_every_events,
            self.checkpoint_every_ms,
            self.handler_attempts,
            self.handler_backoff_min_ms,
            self.handler_backoff_max_ms
        )
    }
}

/// The consumer nodes of a scenario and the sink they post to.
pub struct ConsumerNodes {
    dir: PathBuf,
    template: NodeConfig,
    settings: ConsumerSettings,
    store: SqliteStore,
    partitions: u32,
    sink: Sink,
    running: Vec<ConsumerProcess>,
    ended: Vec<ConsumerProcess>,
}

impl ConsumerNodes {
    /// Consumer nodes of `cluster` (its store, broker, timings and temp directory),
    /// posting to `sink`, reaching RabbitMQ at `broker_url` (a fault proxy, or the
    /// cluster's own URL).
    pub fn new(
        cluster: &TestCluster,
        sink: Sink,
        settings: ConsumerSettings,
        broker_url: &str,
    ) -> Self {
        let mut template = cluster.node_config("");
        broker_url.clone_into(&mut template.broker_url);
        Self {
            dir: cluster.dir(),
            partitions: template.partitions,
            template,
            settings,
            store: cluster.store.clone(),
            sink,
            running: Vec::new(),
            ended: Vec::new(),
        }
    }

    /// The sink every node posts to.
    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// Starts one node per `(id, group)`, all at once, and waits for each to serve HTTP.
    ///
    /// # Panics
    ///
    /// When a node does not start (with the end of its log).
    pub async fn start(&mut self, nodes: &[(&str, &str)]) {
        let mut starting = tokio::task::JoinSet::new();
        for (id, group) in nodes {
            let config = NodeConfig {
                node_id: (*id).to_owned(),
                ..self.template.clone()
            };
            let path = self.dir.join(format!("{id}.toml"));
            let text = config.to_toml() + &self.settings.to_toml(group);
            std::fs::write(&path, text).expect("write the consumer's config");
            let log = self.dir.join(format!("{id}.log"));
            let sink = self.sink.url(group, id);
            let (id, group) = ((*id).to_owned(), (*group).to_owned());
            starting.spawn(
                async move { ConsumerProcess::start(&id, &group, &sink, &path, &log).await },
            );
        }
        while let Some(started) = starting.join_next().await {
            match started {
                Ok(node) => self.running.push(node),
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        }
    }

    /// The running node `id`.
    ///
    /// # Panics
    ///
    /// When there is none.
    pub fn node(&self, id: &str) -> &ConsumerProcess {
        self.running
            .iter()
            .find(|node| node.id() == id)
            .unwrap_or_else(|| panic!("no running consumer {id}"))
    }

    /// The running nodes of `group`.
    pub fn group(&self, group: &str) -> Vec<&ConsumerProcess> {
        self.running
            .iter()
            .filter(|node| node.group() == group)
            .collect()
    }

    /// The node `id` that was killed or terminated.
    ///
    /// # Panics
    ///
    /// When there is none.
    pub fn ended(&self, id: &str) -> &ConsumerProcess {
        self.ended
            .iter()
            .find(|node| node.id() == id)
            .unwrap_or_else(|| panic!("no ended consumer {id}"))
    }

    /// SIGKILLs node `id`.
    pub async fn kill(&mut self, id: &str) {
        let mut node = self.take(id);
        node.kill().await;
        self.ended.push(node);
    }

    /// SIGTERMs node `id` and waits up to `timeout` for it to exit.
    pub async fn terminate(&mut self, id: &str, timeout: Duration) -> ExitStatus {
        let mut node = self.take(id);
        let status = node.terminate(timeout).await;
        self.ended.push(node);
        status
    }

    fn take(&mut self, id: &str) -> ConsumerProcess {
        let index = self
            .running
            .iter()
            .position(|node| node.id() == id)
            .unwrap_or_else(|| panic!("no running consumer {id}"));
        self.running.remove(index)
    }

    /// The owner of each of `group`'s partition leases that has one, from the store.
    ///
    /// # Errors
    ///
    /// The store error, as text.
    pub async fn partition_owners(&self, group: &str) -> Result<BTreeMap<u32, String>, String> {
        let leases = self
            .store
            .leases()
            .await
            .map_err(|error| error.to_string())?;
        Ok(leases
            .into_iter()
            .filter_map(|lease| match (lease.key, lease.owner) {
                (
                    LeaseKey::Partition {
                        group: of,
                        partition,
                    },
                    Some(owner),
                ) if of == group => Some((partition, owner)),
                _ => None,
            })
            .collect())
    }

    /// Waits until the running nodes of `group` hold every partition between them, as
    /// evenly as the assignment allows (each at most ⌈partitions / nodes⌉ and, when
    /// there are enough partitions, at least one), each answers `/ready` 200 and reports
    /// its count as `shardmesh_consumer_partitions_owned`. Returns the owners.
    ///
    /// # Panics
    ///
    /// After `timeout`, with what the store and the nodes said last.
    pub async fn wait_settled(&self, group: &str, timeout: Duration) -> BTreeMap<u32, String> {
        let nodes = self.group(group);
        let what = format!(
            "the {} partitions of group {group} spread over its running nodes {:?}, store and \
             /metrics agreeing, every node /ready",
            self.partitions,
            nodes.iter().map(|node| node.id()).collect::<Vec<_>>()
        );
        crate::wait::eventually(&what, timeout, || self.settled(group, &nodes)).await
    }

    async fn settled(
        &self,
        group: &str,
        nodes: &[&ConsumerProcess],
    ) -> Result<BTreeMap<u32, String>, String> {
        let owners = self.partition_owners(group).await?;
        let mut counts: BTreeMap<&str, u64> = nodes.iter().map(|node| (node.id(), 0)).collect();
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
        let most = u64::from(self.partitions).div_ceil(nodes.len().max(1) as u64);
        let least = u64::from(self.partitions >= u32::try_from(nodes.len()).unwrap_or(u32::MAX));
        if owners.len() != self.partitions as usize
            || counts.values().any(|count| *count > most || *count < least)
        {
            return Err(format!(
                "store: {} partitions owned, per node {counts:?}",
                owners.len()
            ));
        }
        for node in nodes {
            node.ready().await?;
            let owned = node
                .metrics()
                .await?
                .get("shardmesh_consumer_partitions_owned")
                .map(|value| {
                    // Partition counts: small and never negative.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let owned = value.round() as u64;
                    owned
                });
            if owned != Some(counts[node.id()]) {
                return Err(format!(
                    "consumer {} reports shardmesh_consumer_partitions_owned {owned:?}, the store \
                     {} (per node {counts:?})",
                    node.id(),
                    counts[node.id()]
                ));
            }
        }
        Ok(owners)
    }

    /// The sum of the count-like metric `name` over the running nodes of `group`.
    ///
    /// # Errors
    ///
    /// A node's `/metrics` failing.
    pub async fn count_sum(&self, group: &str, name: &str) -> Result<u64, String> {
        let mut sum = 0;
        for node in self.group(group) {
            sum += node.metrics().await?.count(name);
        }
        Ok(sum)
    }

    /// The end of every consumer's log, running and ended.
    pub fn log_tails(&self) -> String {
        self.running
            .iter()
            .chain(&self.ended)
            .map(|node| node.log_tail(TAIL_LINES))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ConsumerNodes {
    fn drop(&mut self) {
        // The processes die with their handles (kill_on_drop).
        if std::thread::panicking() {
            eprintln!("\n===== the end of each consumer node's log =====");
            eprintln!("{}", self.log_tails());
        }
    }
}
