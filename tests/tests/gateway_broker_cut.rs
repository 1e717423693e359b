//! Every gateway node reaches RabbitMQ through a fault-injecting proxy; the proxy cuts
//! all broker connections and refuses new ones for 10 s under traffic. Afterwards the
//! streams hold every dispatch the simulator sent (repeats, if any, exact), and the
//! outage cost no IDENTIFY.

use std::time::Duration;

use shardmesh_tests::{
    FaultProxy, TestCluster, Timings, broker_authority, broker_url, eventually, sim_config,
};

const SHARDS: u32 = 32;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);
/// How long the broker is unreachable.
const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_broker_outage_loses_nothing() {
    let sim = sim_config(SHARDS, SHARDS, 200.0);
    let mut cluster = TestCluster::start("cut", sim, PARTITIONS, Timings::FAST).await;
    let upstream = broker_authority(&broker_url());
    let proxy = FaultProxy::start(&upstream).await;
    let configs = ["g1", "g2", "g3"]
        .iter()
        .map(|id| {
            let mut config = cluster.node_config(id);
            config.broker_url = proxy.rewrite(&config.broker_url, &upstream);
            config
        })
        .collect();
    cluster.start_nodes_with(configs).await;
    cluster.wait_settled(11, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    cluster.wait_sessions_saved(5, WAIT).await;
    // A few seconds of traffic on every shard before the event.
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 600, WAIT)
        .await;

    let connections = proxy.accepted();
    proxy.take_down();
    // The fault itself lasts a fixed time: this sleep is the outage, not a wait.
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();
    let restored_at = cluster.sim.stats().truth_records;
    println!(
        "cut: broker unreachable for {OUTAGE:?}; {} connection attempts refused meanwhile",
        proxy.accepted() - connections
    );

    // Recovered: every shard confirms (and saves) beyond what it had saved then.
    let before = cluster.saved_sessions().await.unwrap();
    eventually(
        "every shard's saved seq past its value at the end of the outage",
        WAIT,
        || async {
            let now = cluster.saved_sessions().await?;
            let behind: Vec<(u32, u64)> = before
                .iter()
                .filter(|(shard, then)| now.get(*shard).is_none_or(|now| now.seq <= then.seq))
                .map(|(shard, then)| (*shard, then.seq))
                .collect();
            if behind.is_empty() {
                Ok(())
            } else {
                Err(format!("(shard, seq saved then) not past: {behind:?}"))
            }
        },
    )
    .await;
    cluster.wait_traffic(restored_at, 400, WAIT).await;
    cluster.sim.stop_traffic();

    let (truth, report) = cluster.stream_report("cut", WAIT).await;
    report.assert_complete();
    report.assert_repeats_exact();

    let stats = cluster.sim.stats();
    assert_eq!(
        stats.identifies,
        u64::from(SHARDS),
        "the broker outage cost IDENTIFYs (sessions per shard: {:?})",
        truth.shards_with_new_sessions()
    );
    cluster.wait_settled(11, WAIT).await;
    cluster.assert_no_lease_lost().await;
    cluster.finish().await;
}
