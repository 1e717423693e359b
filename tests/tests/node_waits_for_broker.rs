//! A gateway node and a consumer node started while RabbitMQ refuses every connection
//! (behind a fault proxy that is down): both serve `/health` at once, answer `/ready`
//! with 503 and the start-up step, and log one WARN per failed attempt instead of
//! exiting. Once the broker opens both become ready, and the group handles every
//! dispatch the simulator sent exactly once, with one IDENTIFY per shard.

use std::time::Duration;

use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::deliveries::{GroupReport, Upto, wait_caught_up};
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{
    ConsumerTuning, FaultProxy, TestCluster, Timings, Truth, broker_authority, broker_url,
    eventually, sim_config,
};

const SHARDS: u32 = 4;
const PARTITIONS: u32 = 2;
const WAIT: Duration = Duration::from_secs(60);
/// Failed attempts each node must have logged before the broker opens.
const ATTEMPTS: usize = 3;

/// The node's WARN lines about a start-up step that could not reach its service.
fn waiting_lines(log: &str) -> usize {
    log.lines()
        .filter(|line| line.contains(" WARN ") && line.contains("not reachable yet, retrying"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_before_the_broker_wait_for_it_then_deliver_everything_once() {
    let sim = sim_config(SHARDS, SHARDS, 100.0);
    let mut cluster = TestCluster::start("waitbroker", sim, PARTITIONS, Timings::FAST).await;
    cluster.topology = cluster.topology.clone().with_dead_letters("a");
    let upstream = broker_authority(&broker_url());
    let proxy = FaultProxy::start(&upstream).await;
    proxy.take_down();
    let broker_url = proxy.rewrite(&broker_url(), &upstream);

    let mut gateway = cluster.node_config("g1");
    gateway.broker_url.clone_from(&broker_url);
    cluster.start_nodes_with(vec![gateway]).await;
    let mut consumers = ConsumerNodes::new(
        &cluster,
        Sink::start(None).await,
        ConsumerTuning::PER_EVENT,
        &broker_url,
    );
    consumers.start(&[("c1", "a")]).await;

    // Both wait: alive, not ready, saying why, retrying with a WARN per attempt.
    for (node, log) in [
        (
            cluster.fleet.node("g1"),
            cluster.fleet.node("g1").log_path().to_owned(),
        ),
        (
            consumers.fleet.node("c1"),
            consumers.fleet.node("c1").log_path().to_owned(),
        ),
    ] {
        eventually(
            &format!(
                "{ATTEMPTS} WARN lines about the unreachable broker in {}",
                log.display()
            ),
            WAIT,
            || async {
                let seen = waiting_lines(&std::fs::read_to_string(&log).unwrap_or_default());
                if seen >= ATTEMPTS {
                    Ok(())
                } else {
                    Err(format!("{seen} so far"))
                }
            },
        )
        .await;
        let health = node.get("/health").await.expect("/health answers");
        assert_eq!(health.status, 200, "/health while waiting: {}", health.body);
        let ready = node.get("/ready").await.expect("/ready answers");
        assert_eq!(
            ready.status, 503,
            "/ready while the broker refuses: {}",
            ready.body
        );
        assert!(
            ready.body.starts_with("starting: ") && ready.body.contains("attempt"),
            "/ready should name the start-up step it waits on; it said {:?}",
            ready.body
        );
        assert!(
            node.error_lines().is_empty(),
            "errors while waiting: {:#?}",
            node.error_lines()
        );
    }
    assert_eq!(
        cluster.sim.stats().identifies,
        0,
        "a shard identified before the node joined"
    );

    proxy.restore();
    eventually("g1 and c1 ready once the broker opens", WAIT, || async {
        cluster.fleet.node("g1").ready().await?;
        consumers.fleet.node("c1").ready().await
    })
    .await;
    cluster.wait_ready_at_sim(WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 300, WAIT)
        .await;
    cluster.sim.stop_traffic();

    wait_caught_up(&cluster.sim, consumers.sink(), &["a"], Upto::All, WAIT).await;
    let report = GroupReport::new(
        "a",
        PARTITIONS,
        &Truth::read(&cluster.sim).dispatches,
        &consumers.sink().posts(),
    );
    println!(
        "waitbroker: {} ({} WARN lines from g1 while waiting)",
        report.summary(),
        waiting_lines(&cluster.fleet.node("g1").log())
    );
    report.assert_complete();
    report.assert_no_repeats();
    assert_eq!(
        cluster.sim.stats().identifies,
        u64::from(SHARDS),
        "waiting for the broker cost IDENTIFYs"
    );
    drop(consumers);
    cluster.finish().await;
}
