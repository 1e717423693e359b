//! `shardmesh ctl rolling-restart` under traffic, with the test as the supervisor that
//! starts every node that exits again (as compose's restart policy would): first the
//! three gateway nodes, then the two consumer nodes, one at a time. The simulator counts
//! no IDENTIFY beyond the first ones, the streams hold every dispatch once, and the
//! consumer group handles every dispatch once.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::ctl::ctl_supervised;
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{ConsumerTuning, Fleet, TestCluster, Timings, broker_url, sim_config};

const SHARDS: u32 = 16;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);
/// A whole rolling restart: per node a drain, a start and a settling of a few seconds.
const ROLL: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn rolling_restarts_of_every_gateway_and_consumer_cost_no_identify_and_lose_nothing() {
    let sim = sim_config(SHARDS, SHARDS, 200.0);
    let mut cluster = TestCluster::start("roll", sim, PARTITIONS, Timings::FAST).await;
    cluster.topology = cluster.topology.clone().with_dead_letters("a");
    cluster.start_nodes(&["g1", "g2", "g3"]).await;
    cluster.wait_settled(6, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    let sink = Sink::start(None).await;
    let mut consumers =
        ConsumerNodes::new(&cluster, sink, ConsumerTuning::PER_EVENT, &broker_url());
    consumers.start(&[("c1", "a"), ("c2", "a")]).await;
    consumers.wait_settled("a", WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 600, WAIT)
        .await;
    let ctl_config = cluster.write_config(&cluster.node_config("ctl"));

    roll(
        &ctl_config,
        &["--role", "gateway"],
        &mut cluster.fleet,
        &["g1", "g2", "g3"],
    )
    .await;
    for id in ["g1", "g2", "g3"] {
        let status = cluster.fleet.ended(id).exit_status();
        assert!(
            status.is_some_and(|status| status.success()),
            "{id}'s drained process exited with {status:?}"
        );
    }
    cluster.wait_settled(6, WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;

    roll(
        &ctl_config,
        &["--role", "consumer", "--group", "a"],
        &mut consumers.fleet,
        &["c1", "c2"],
    )
    .await;
    consumers.wait_settled("a", WAIT).await;
    cluster
        .wait_traffic(cluster.sim.stats().truth_records, 400, WAIT)
        .await;
    cluster.sim.stop_traffic();

    let (truth, streams) = cluster
        .stream_report("rolling restart, streams", WAIT)
        .await;
    streams.assert_complete();
    streams.assert_no_repeats();
    let group = consumers
        .group_report(&cluster.sim, "a", "rolling restart, group a", WAIT)
        .await;
    group.assert_complete();
    group.assert_no_repeats();

    let stats = cluster.sim.stats();
    assert_eq!(
        stats.identifies,
        u64::from(SHARDS),
        "the rolling restart cost IDENTIFYs (sessions per shard: {:?})",
        truth.shards_with_new_sessions()
    );
    let actions = cluster.actions().await;
    assert!(
        actions.iter().all(|action| action.action != "session_lost"),
        "session_lost in the action log: {actions:#?}"
    );
    let rolls: Vec<_> = actions
        .iter()
        .filter(|action| action.action == "rolling_restart")
        .collect();
    assert_eq!(
        rolls.len(),
        2,
        "two rolling restarts in the action log: {rolls:#?}"
    );
    assert!(
        rolls
            .iter()
            .all(|action| action.actor.starts_with("ctl:") && action.result.starts_with("ok")),
        "each rolling restart recorded as done by ctl: {rolls:#?}"
    );
    let drains = actions
        .iter()
        .filter(|action| action.action == "drain_exit" && action.actor.starts_with("ctl:"))
        .count();
    assert_eq!(
        drains, 5,
        "one drain per node in the action log: {actions:#?}"
    );
    cluster.assert_no_lease_lost().await;
    drop(consumers);
    cluster.finish().await;
}

/// Runs `ctl rolling-restart <role_args>` beside a supervisor restarting `fleet`'s
/// exited nodes, and checks that it succeeded and restarted each of `nodes` once.
async fn roll(config: &Path, role_args: &[&str], fleet: &mut Fleet, nodes: &[&str]) {
    let mut args = vec!["rolling-restart"];
    args.extend_from_slice(role_args);
    args.extend(["--step-timeout-secs", "60"]);
    let what = format!("ctl {}", args.join(" "));
    let (rolled, restarted) = ctl_supervised(config, &args, fleet, ROLL).await;
    println!(
        "{what} took {:?}:\n{}{}",
        rolled.took, rolled.stdout, rolled.stderr
    );
    assert!(
        rolled.status.success(),
        "{what} failed ({}): {}{}",
        rolled.status,
        rolled.stdout,
        rolled.stderr
    );
    assert_eq!(
        restarted.iter().cloned().collect::<BTreeSet<_>>(),
        nodes
            .iter()
            .map(|node| (*node).to_owned())
            .collect::<BTreeSet<_>>(),
        "every node exited once to be restarted: {restarted:?}"
    );
}
