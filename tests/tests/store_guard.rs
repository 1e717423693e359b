//! One cluster, one store: a consumer node started with another store file under the
//! cluster's name and broker (a user running a second bot process from another
//! directory) refuses to take any partition and says which store each side uses, while
//! the cluster's own consumer keeps handling every event once.

use std::time::Duration;

use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::deliveries::{GroupReport, Upto, wait_caught_up};
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{
    ConsumerTuning, NodeProcess, TestCluster, Timings, Truth, broker_url, sim_config, wait_until,
};

const SHARDS: u32 = 8;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_on_another_store_refuses_naming_both_and_nothing_is_handled_twice() {
    let sim = sim_config(SHARDS, SHARDS, 100.0);
    let mut cluster = TestCluster::start("guard", sim, PARTITIONS, Timings::FAST).await;
    cluster.start_nodes(&["g1"]).await;
    cluster.wait_settled(SHARDS as usize, WAIT).await;
    let sink = Sink::start(None).await;
    let mut consumers =
        ConsumerNodes::new(&cluster, sink, ConsumerTuning::PER_EVENT, &broker_url());
    consumers.start(&[("c1", "bot")]).await;
    consumers.wait_settled("bot", WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 200, WAIT)
        .await;

    // The same cluster name and broker, and a store file of its own.
    let mut stray = cluster.node_config("c2");
    stray.consumer = Some(ConsumerTuning::PER_EVENT);
    stray.store_path = cluster.dir().join("elsewhere").join("store.sqlite");
    std::fs::create_dir_all(stray.store_path.parent().unwrap()).unwrap();
    let config = cluster.write_config(&stray);
    let log = cluster.dir().join("c2.log");
    let sink_url = consumers.sink().url("bot", "c2");
    let mut c2 = NodeProcess::consumer("c2", "bot", &sink_url, &config, &log).await;
    let exit = wait_until("c2 refuses and exits", WAIT, || {
        c2.try_exit().ok_or_else(|| "still running".to_owned())
    })
    .await;
    assert!(!exit.success(), "c2 on another store exited {exit}");
    let refusal = c2
        .error_lines()
        .into_iter()
        .find(|line| line.contains("store is not the cluster's"))
        .unwrap_or_else(|| panic!("no refusal in c2's log:\n{}", c2.log_tail(30)));
    println!("c2: {refusal}");
    for store in [&stray.store_path, &cluster.node_config("c1").store_path] {
        let path = store.display().to_string();
        assert!(refusal.contains(&path), "{refusal} does not name {path}");
    }

    // c1 kept every partition and handles everything once; c2 handled nothing.
    let owners = consumers.wait_settled("bot", WAIT).await;
    assert!(owners.values().all(|owner| owner == "c1"), "{owners:?}");
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 200, WAIT)
        .await;
    cluster.sim.stop_traffic();
    wait_caught_up(&cluster.sim, consumers.sink(), &["bot"], Upto::All, WAIT).await;
    let report = GroupReport::new(
        "bot",
        PARTITIONS,
        &Truth::read(&cluster.sim).dispatches,
        &consumers.sink().posts(),
    );
    println!("store guard: {}", report.summary());
    report.assert_complete();
    report.assert_no_repeats();
    assert!(
        !report.per_node.contains_key("c2"),
        "c2 handled events: {:?}",
        report.per_node
    );
    drop(consumers);
    cluster.finish().await;
}
