//! Log levels through a broker cut. Two gateway nodes and two consumer nodes reach
//! RabbitMQ through a fault proxy; under traffic the proxy cuts every broker connection
//! and refuses new ones for a few seconds. The mesh heals by itself and loses nothing,
//! so no node logs an ERROR line; each says once per broker connection that it was lost
//! (WARN) and once that it is back (INFO), instead of a line per retry or per message.

use std::collections::BTreeMap;
use std::time::Duration;

use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::deliveries::{GroupReport, Upto, wait_caught_up};
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{
    ConsumerTuning, FaultProxy, NodeProcess, TestCluster, Timings, Truth, broker_authority,
    broker_url, eventually, sim_config,
};
use tokio::time::Instant;

const SHARDS: u32 = 16;
const PARTITIONS: u32 = 4;
const RATE: f64 = 200.0;
const WAIT: Duration = Duration::from_secs(60);
/// How long the broker is unreachable: several reconnect attempts at the nodes' 1 s
/// backoff ceiling, well within a lease (the store is not behind the proxy).
const OUTAGE: Duration = Duration::from_secs(6);
/// Shards per gateway node when two share 16.
const MAX_PER_GATEWAY: usize = 8;

/// The WARN line of a broker connection's loss, once per connection per outage.
const LOST: &str = "broker connection lost, reconnecting";
/// The INFO line of a broker connection set up again, with the outage's length.
const BACK: &str = "broker connection back";

/// What one node logged from the cut on.
#[derive(Debug)]
struct CutLog {
    node: String,
    /// WARN lines, by message.
    warnings: BTreeMap<String, usize>,
    /// Each connection's [`LOST`] lines.
    lost: BTreeMap<String, usize>,
    /// Each connection's [`BACK`] lines' `outage_ms`.
    back: BTreeMap<String, Vec<u64>>,
}

impl CutLog {
    /// Reads `node`'s log after its first `skip` lines.
    fn read(node: &NodeProcess, skip: usize) -> Self {
        let log = node.log();
        let mut cut = Self {
            node: format!("{} {}", node.role(), node.id()),
            warnings: BTreeMap::new(),
            lost: BTreeMap::new(),
            back: BTreeMap::new(),
        };
        for line in log.lines().skip(skip) {
            let message = message_of(line);
            let connection = field(line, "connection").unwrap_or("?").to_owned();
            match level_of(line) {
                Some("WARN") => {
                    if message == LOST {
                        *cut.lost.entry(connection).or_default() += 1;
                    }
                    *cut.warnings.entry(message).or_default() += 1;
                }
                Some("INFO") if message == BACK => {
                    let outage = field(line, "outage_ms").and_then(|ms| ms.parse::<u64>().ok());
                    cut.back.entry(connection).or_default().extend(outage);
                }
                _ => {}
            }
        }
        cut
    }

    /// The level policy through a broker outage that heals: no ERROR in `node`'s whole
    /// log; from the cut on, each connection's loss one WARN, at most one more WARN per
    /// connection for what the loss held up (an announcement not sent), never one per
    /// attempt, heartbeat, shard or message; and one INFO per connection when it is
    /// back, after most of the outage.
    fn assert_policy(&self, node: &NodeProcess) {
        assert!(
            node.error_lines().is_empty(),
            "{} logged ERROR through a broker cut that healed by itself:\n{}",
            self.node,
            node.error_lines().join("\n")
        );
        // Each connection's loss is one WARN, never one per reconnect attempt.
        assert!(
            self.lost.values().all(|lines| *lines == 1),
            "{}: a connection's loss logged more than once: {:?}",
            self.node,
            self.lost
        );
        // Besides the losses, at most one WARN per connection for what the loss held
        // up (an announcement not sent): not one per heartbeat, shard or message.
        assert!(
            self.warning_count() <= 2 * self.lost.len(),
            "{}: {} WARN lines for {} broker connections lost: {:?}",
            self.node,
            self.warning_count(),
            self.lost.len(),
            self.warnings
        );
        for (connection, outages) in &self.back {
            assert_eq!(
                outages.len(),
                1,
                "{}: connection {connection} said it is back more than once: {outages:?}",
                self.node
            );
            // Lost at the cut, back only once the proxy forwarded again.
            assert!(
                u128::from(outages[0]) >= OUTAGE.as_millis() / 2,
                "{}: connection {connection} back after {} ms of a {OUTAGE:?} outage",
                self.node,
                outages[0]
            );
        }
    }

    fn warning_count(&self) -> usize {
        self.warnings.values().sum()
    }

    /// Whether every connection that was lost has said it is back.
    fn recovered(&self) -> Result<(), String> {
        let missing: Vec<&String> = self
            .lost
            .keys()
            .filter(|connection| !self.back.contains_key(*connection))
            .collect();
        if self.lost.is_empty() {
            Err(format!("{}: no broker connection lost yet", self.node))
        } else if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: not back yet: {missing:?}", self.node))
        }
    }
}

/// The level of a log line: its second word.
fn level_of(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

/// The log message of `line`: the words after the target (`shardmesh_broker::connection:`)
/// up to the first field (`key=value`), so lines about the same thing count together.
fn message_of(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().skip(2).collect();
    let target = words
        .iter()
        .position(|word| word.ends_with(':') && !word.contains('{'))
        .map_or(0, |at| at + 1);
    words[target..]
        .iter()
        .take_while(|word| !word.contains('='))
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The value of field `name` in `line`: a quoted string without its quotes, or the
/// word after `name=`.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (_, rest) = line.split_once(&format!(" {name}="))?;
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split_whitespace().next(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn a_broker_cut_that_heals_logs_no_error_and_one_warning_per_connection() {
    let started = Instant::now();
    let sim = sim_config(SHARDS, SHARDS, RATE);
    let mut cluster = TestCluster::start("cutlogs", sim, PARTITIONS, Timings::FAST).await;
    cluster.topology = cluster.topology.clone().with_dead_letters("a");
    let upstream = broker_authority(&broker_url());
    let proxy = FaultProxy::start(&upstream).await;
    let proxied = proxy.rewrite(&broker_url(), &upstream);
    let configs = ["g1", "g2"]
        .iter()
        .map(|id| {
            let mut config = cluster.node_config(id);
            config.broker_url.clone_from(&proxied);
            config
        })
        .collect();
    cluster.start_nodes_with(configs).await;
    cluster.wait_settled(MAX_PER_GATEWAY, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    let mut consumers = ConsumerNodes::new(
        &cluster,
        Sink::start(None).await,
        ConsumerTuning::PER_EVENT,
        &proxied,
    );
    consumers.start(&[("c1", "a"), ("c2", "a")]).await;
    consumers.wait_settled("a", WAIT).await;
    cluster.wait_sessions_saved(5, WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    println!("cutlogs: running after {:?}", started.elapsed());

    let nodes = || cluster.fleet.nodes().iter().chain(consumers.fleet.nodes());
    let before_cut: Vec<usize> = nodes().map(|node| node.log().lines().count()).collect();
    let cut_logs = || -> Vec<CutLog> {
        nodes()
            .zip(&before_cut)
            .map(|(node, skip)| CutLog::read(node, *skip))
            .collect()
    };
    proxy.take_down();
    // The fault itself lasts a fixed time: this sleep is the outage, not a wait.
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();
    let restored = consumers.sink().count();
    eventually(
        "every broker connection a node lost in the cut logged as back",
        WAIT,
        || async {
            let pending: Vec<String> = cut_logs()
                .iter()
                .filter_map(|log| log.recovered().err())
                .collect();
            if pending.is_empty() {
                Ok(())
            } else {
                Err(pending.join("; "))
            }
        },
    )
    .await;
    eventually(
        "group a handling new events after the broker came back",
        WAIT,
        || async {
            let since = consumers.sink().posts_since(restored).len();
            if since >= 200 {
                Ok(())
            } else {
                Err(format!("{since} POSTs since"))
            }
        },
    )
    .await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    cluster.sim.stop_traffic();
    wait_caught_up(&cluster.sim, consumers.sink(), &["a"], Upto::All, WAIT).await;
    println!(
        "cutlogs: broker unreachable for {OUTAGE:?}, caught up {:?} after the cut began",
        started.elapsed()
    );

    // Nothing lost, nothing repeated, in the streams and at the consumers.
    let sent = Truth::read(&cluster.sim).dispatches;
    let group = GroupReport::new("a", PARTITIONS, &sent, &consumers.sink().posts());
    println!("cutlogs: {}", group.summary());
    group.assert_complete();
    group.assert_no_repeats();
    let (_, streams) = cluster.stream_report("cutlogs", WAIT).await;
    streams.assert_complete();
    streams.assert_repeats_exact();

    for (node, log) in nodes().zip(cut_logs()) {
        println!(
            "cutlogs: {}: {} WARN lines {:?}; lost {:?}; back after (ms) {:?}",
            log.node,
            log.warning_count(),
            log.warnings,
            log.lost,
            log.back
        );
        log.assert_policy(node);
    }
    drop(consumers);
    cluster.finish().await;
}
