//! A scenario's consumer nodes: `shardmesh consumer` processes of one or more groups,
//! all posting to one [`EventSink`] (the test's collecting [`Sink`] unless a scenario
//! brings a bot's own endpoint), configured like the cluster's gateway
//! nodes plus a `[consumer]` section. Stopped with their handles; when a scenario
//! panics, the end of every consumer's log is printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use shardmesh_harness::{ConsumerTuning, Fleet, NodeConfig, NodeProcess, Truth};
use shardmesh_sim::Simulator;
use shardmesh_store::{Checkpoint, Lease, LeaseKey, LeaseState, SqliteStore, Store};

use crate::cluster::TestCluster;
use crate::deliveries::{GroupReport, Upto, wait_caught_up};
use crate::sink::{EventSink, Sink};

/// The consumer nodes of a scenario and the sink they post to.
pub struct ConsumerNodes<S: EventSink = Sink> {
    dir: PathBuf,
    template: NodeConfig,
    store: SqliteStore,
    partitions: u32,
    sink: S,
    /// The node processes, running and ended.
    pub fleet: Fleet,
}

impl<S: EventSink> ConsumerNodes<S> {
    /// Consumer nodes of `cluster` (its store, broker, timings and temp directory),
    /// posting to `sink`, reaching RabbitMQ at `broker_url` (a fault proxy, or the
    /// cluster's own URL).
    pub fn new(cluster: &TestCluster, sink: S, tuning: ConsumerTuning, broker_url: &str) -> Self {
        let mut template = cluster.node_config("");
        broker_url.clone_into(&mut template.broker_url);
        template.consumer = Some(tuning);
        Self {
            dir: cluster.dir(),
            partitions: template.partitions,
            template,
            store: cluster.store.clone(),
            sink,
            fleet: Fleet::default(),
        }
    }

    /// The sink every node posts to.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Starts one node per `(id, group)`, all at once, and waits for each to serve HTTP.
    ///
    /// # Panics
    ///
    /// When a node does not start (with the end of its log).
    pub async fn start(&mut self, nodes: &[(&str, &str)]) {
        let starts: Vec<_> = nodes
            .iter()
            .map(|(id, group)| {
                let config = NodeConfig {
                    node_id: (*id).to_owned(),
                    ..self.template.clone()
                };
                let path = self.dir.join(format!("{id}.toml"));
                std::fs::write(&path, config.to_toml()).expect("write the consumer's config");
                let log = self.dir.join(format!("{id}.log"));
                let sink = self.sink.url(group, id);
                let (id, group) = ((*id).to_owned(), (*group).to_owned());
                async move { NodeProcess::consumer(&id, &group, &sink, &path, &log).await }
            })
            .collect();
        self.fleet.start_all(starts).await;
    }

    /// `group`'s partition leases in the store, by partition.
    async fn partition_leases(&self, group: &str) -> Result<BTreeMap<u32, Lease>, String> {
        let leases = self
            .store
            .leases()
            .await
            .map_err(|error| error.to_string())?;
        Ok(leases
            .into_iter()
            .filter_map(|lease| match &lease.key {
                LeaseKey::Partition {
                    group: of,
                    partition,
                } if of == group => Some((*partition, lease)),
                _ => None,
            })
            .collect())
    }

    /// The owner of each of `group`'s partition leases that has one, from the store.
    ///
    /// # Errors
    ///
    /// The store error, as text.
    pub async fn partition_owners(&self, group: &str) -> Result<BTreeMap<u32, String>, String> {
        let leases = self.partition_leases(group).await?;
        Ok(leases
            .into_iter()
            .filter_map(|(partition, lease)| Some((partition, lease.owner?)))
            .collect())
    }

    /// The checkpoint each of `group`'s partitions has in the store (the offset to read
    /// on from and the per-shard dedup marks), whether or not someone holds it.
    ///
    /// # Errors
    ///
    /// The store error, as text.
    pub async fn checkpoints(&self, group: &str) -> Result<BTreeMap<u32, Checkpoint>, String> {
        let leases = self.partition_leases(group).await?;
        Ok(leases
            .into_iter()
            .filter_map(|(partition, lease)| match lease.state {
                LeaseState::Partition(checkpoint) => Some((partition, checkpoint)),
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
        let nodes = self.fleet.group(group);
        let what = format!(
            "the {} partitions of group {group} spread over its running nodes {:?}, store and \
             /metrics agreeing, every node /ready",
            self.partitions,
            nodes.iter().map(|node| node.id()).collect::<Vec<_>>()
        );
        shardmesh_harness::eventually(&what, timeout, || self.settled(group, &nodes)).await
    }

    async fn settled(
        &self,
        group: &str,
        nodes: &[&NodeProcess],
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
        for node in self.fleet.group(group) {
            sum += node.metrics().await?.count(name);
        }
        Ok(sum)
    }

    /// The end of every consumer's log, running and ended.
    pub fn log_tails(&self) -> String {
        self.fleet.log_tails()
    }
}

impl<S: EventSink> Drop for ConsumerNodes<S> {
    fn drop(&mut self) {
        // The processes die with their handles (kill_on_drop).
        if std::thread::panicking() {
            eprintln!("\n===== the end of each consumer node's log =====");
            eprintln!("{}", self.log_tails());
        }
    }
}

impl ConsumerNodes<Sink> {
    /// Waits until group `group` handled everything the simulator sent (stop its
    /// traffic first) and judges it; prints the summary after `label`.
    ///
    /// # Panics
    ///
    /// As [`wait_caught_up`].
    pub async fn group_report(
        &self,
        sim: &Simulator,
        group: &str,
        label: &str,
        timeout: Duration,
    ) -> GroupReport {
        wait_caught_up(sim, &self.sink, &[group], Upto::All, timeout).await;
        let report = GroupReport::new(
            group,
            self.partitions,
            &Truth::read(sim).dispatches,
            &self.sink.posts(),
        );
        println!("{label}: {}", report.summary());
        report
    }
}
