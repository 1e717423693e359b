//! The whole pipeline under steady traffic while nodes die: simulator → 3 gateway
//! nodes → streams → 3 consumer nodes of group `a` and 1 of group `b`, every node
//! reaching RabbitMQ through a fault proxy. A gateway node is killed (SIGKILL) and replaced, one
//! is drained and replaced, the broker is unreachable for a few seconds; then both
//! groups have handled every dispatch exactly once, in seq order per session. Then a
//! consumer of group `a` is killed (SIGKILL) and replaced: group `b` still sees everything
//! exactly once, and group `a` at most once more for the events the killed consumer had
//! in flight (the last one it handled from each partition it owned, with per-event
//! checkpoints).

use std::collections::BTreeSet;
use std::time::Duration;

use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::deliveries::{GroupReport, Upto, wait_caught_up};
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{
    ConsumerTuning, FaultProxy, TestCluster, Timings, Truth, broker_authority, broker_url,
    eventually, holds_for, sim_config,
};
use tokio::time::Instant;

const SHARDS: u32 = 16;
const PARTITIONS: u32 = 4;
const RATE: f64 = 200.0;
const WAIT: Duration = Duration::from_secs(60);
/// How long the broker is unreachable.
const OUTAGE: Duration = Duration::from_secs(3);
/// Shards per gateway node when three share 16.
const MAX_PER_GATEWAY: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn every_group_handles_every_dispatch_once_through_gateway_and_consumer_failures() {
    let started = Instant::now();
    let sim = sim_config(SHARDS, SHARDS, RATE);
    let mut cluster = TestCluster::start("cchaos", sim, PARTITIONS, Timings::FAST).await;
    // Cleanup (also on panic) deletes the groups' dead-letter streams with the rest.
    cluster.topology = cluster
        .topology
        .clone()
        .with_dead_letters("a")
        .with_dead_letters("b");
    let upstream = broker_authority(&broker_url());
    let proxy = FaultProxy::start(&upstream).await;
    let proxied = proxy.rewrite(&broker_url(), &upstream);
    let gateway = |cluster: &TestCluster, id: &str| {
        let mut config = cluster.node_config(id);
        config.broker_url.clone_from(&proxied);
        config
    };
    let configs = ["g1", "g2", "g3"]
        .iter()
        .map(|id| gateway(&cluster, id))
        .collect();
    cluster.start_nodes_with(configs).await;
    cluster.wait_settled(MAX_PER_GATEWAY, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;

    let sink = Sink::start(None).await;
    let mut consumers = ConsumerNodes::new(&cluster, sink, ConsumerTuning::PER_EVENT, &proxied);
    consumers
        .start(&[("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")])
        .await;
    consumers.wait_settled("a", WAIT).await;
    consumers.wait_settled("b", WAIT).await;
    // Renewals have saved confirmed seqs, so gateway take-overs resume mid-session.
    cluster.wait_sessions_saved(5, WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    println!("chaos: running after {:?}", started.elapsed());

    // A gateway node crashes; a fresh one (new id, as by default) joins.
    cluster.fleet.kill("g2").await;
    cluster
        .start_nodes_with(vec![gateway(&cluster, "g4")])
        .await;
    cluster.wait_settled(MAX_PER_GATEWAY, WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 200, WAIT)
        .await;
    println!(
        "chaos: gateway g2 killed and replaced by g4 at {:?}",
        started.elapsed()
    );

    // A gateway node drains; a fresh one joins.
    let status = cluster.fleet.terminate("g1", WAIT).await;
    assert!(status.success(), "drained gateway g1 exited with {status}");
    cluster
        .start_nodes_with(vec![gateway(&cluster, "g5")])
        .await;
    cluster.wait_settled(MAX_PER_GATEWAY, WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 200, WAIT)
        .await;
    println!(
        "chaos: gateway g1 drained and replaced by g5 at {:?}",
        started.elapsed()
    );

    // Every node's broker connections are cut and RabbitMQ is unreachable for a while.
    proxy.take_down();
    // The fault itself lasts a fixed time: this sleep is the outage, not a wait.
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();
    let restored = consumers.sink().count();
    eventually(
        "both groups handling new events after the broker came back",
        WAIT,
        || async {
            let posts = consumers.sink().posts_since(restored);
            let groups: BTreeSet<&str> = posts.iter().map(|post| post.group.as_str()).collect();
            if groups.len() == 2 {
                Ok(())
            } else {
                Err(format!("groups handling since: {groups:?}"))
            }
        },
    )
    .await;
    println!(
        "chaos: broker outage of {OUTAGE:?} over at {:?}",
        started.elapsed()
    );

    // Gateway failures and broker cuts only so far: exactly once, in both groups.
    let sent = Truth::read(&cluster.sim).dispatches;
    wait_caught_up(
        &cluster.sim,
        consumers.sink(),
        &["a", "b"],
        Upto::Snapshot(&sent),
        WAIT,
    )
    .await;
    let posts = consumers.sink().posts();
    for group in ["a", "b"] {
        let mut report = GroupReport::new(group, PARTITIONS, &sent, &posts);
        // Handled beyond the snapshot is fine here; the end checks it all.
        report.verdict.unknown.clear();
        println!("chaos, gateway faults only: {}", report.summary());
        report.assert_complete();
        report.assert_no_repeats();
    }

    // A consumer of group a crashes; a fresh one joins.
    let owners = consumers.wait_settled("a", WAIT).await;
    let owned: BTreeSet<u32> = owners
        .iter()
        .filter(|(_, owner)| *owner == "a2")
        .map(|(partition, _)| *partition)
        .collect();
    assert!(!owned.is_empty(), "a2 owns no partition: {owners:?}");
    // a2's handler now takes 50 ms per event while its partitions bring ~50 events/s
    // each: it falls behind and always has an event in flight when it is killed.
    consumers.sink().set_delay("a2", Duration::from_millis(50));
    let slow = consumers.sink().count();
    eventually("a2 handling events slowly", WAIT, || async {
        let handled = consumers
            .sink()
            .posts_since(slow)
            .iter()
            .filter(|post| post.node == "a2")
            .count();
        if handled >= 10 {
            Ok(())
        } else {
            Err(format!("a2 handled {handled} since"))
        }
    })
    .await;
    consumers.fleet.kill("a2").await;
    let killed = Instant::now();
    consumers.start(&[("a4", "a")]).await;
    consumers.wait_settled("a", WAIT).await;
    println!(
        "chaos: consumer a2 (partitions {owned:?}) killed; group a settled with a4 {:?} later",
        killed.elapsed()
    );
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    cluster.sim.stop_traffic();

    wait_caught_up(&cluster.sim, consumers.sink(), &["a", "b"], Upto::All, WAIT).await;
    // Nothing more comes (a late repeat would).
    let total = consumers.sink().count();
    holds_for(
        "no more POSTs once both groups caught up",
        Duration::from_secs(1),
        || async {
            let now = consumers.sink().count();
            if now == total {
                Ok(())
            } else {
                Err(format!("{} more POSTs", now - total))
            }
        },
    )
    .await;
    assert!(
        consumers.sink().malformed().is_empty(),
        "malformed POSTs: {:?}",
        consumers.sink().malformed()
    );

    let sent = Truth::read(&cluster.sim).dispatches;
    let posts = consumers.sink().posts();
    let b = GroupReport::new("b", PARTITIONS, &sent, &posts);
    println!("chaos: {}", b.summary());
    b.assert_complete();
    b.assert_no_repeats();
    for partition in &owned {
        let last = posts
            .iter()
            .rfind(|post| post.node == "a2" && post.event.partition == *partition);
        let next = posts.iter().find(|post| {
            post.group == "a"
                && post.node != "a2"
                && post.event.partition == *partition
                && last.is_some_and(|last| post.index > last.index)
        });
        println!(
            "chaos: partition {partition}: a2's last event {:?} @{:?} reached the sink {:?} before the kill; \
             the next owner began with {:?} @{:?}",
            last.map(|post| post.event.id()),
            last.map(|post| post.event.offset),
            last.and_then(|post| killed.checked_duration_since(post.at)),
            next.map(|post| (post.node.clone(), post.event.id())),
            next.map(|post| post.event.offset),
        );
    }
    let a = GroupReport::new("a", PARTITIONS, &sent, &posts);
    println!("chaos: {}", a.summary());
    a.assert_complete();
    a.assert_repeats_in_flight_at("a2", &owned, 1, &posts);
    let b_delivered = consumers
        .count_sum("b", "shardmesh_consumer_delivered_total")
        .await
        .unwrap();
    assert_eq!(
        b_delivered,
        u64::try_from(b.verdict.arrivals).unwrap(),
        "b1's shardmesh_consumer_delivered_total against the POSTs its sink got"
    );
    println!(
        "chaos: b1 dropped {} duplicates; {} identifies, {} resumes at the simulator; took {:?}",
        consumers
            .count_sum("b", "shardmesh_consumer_duplicates_total")
            .await
            .unwrap(),
        cluster.sim.stats().identifies,
        cluster.sim.stats().resumes,
        started.elapsed()
    );
    drop(consumers);
    cluster.finish().await;
}
