//! Bad input and lost sessions are loud: a token Discord refuses stops the shards once,
//! with an action-log entry and no retry loop; a READY where a RESUME was expected is
//! recorded as a lost session.

mod support;

use shardmesh_gateway::{BotToken, GatewayConfig, ShardPhase};
use shardmesh_harness::{eventually, wait_for};
use shardmesh_sim::Chaos;
use shardmesh_store::{Action, SqliteStore, Store as _};
use support::{Cluster, DEADLINE, SHARDS, sim_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_stops_every_shard_once_and_says_why() {
    let mut cluster = Cluster::start("token", sim_config(0.0)).await;
    let config = GatewayConfig {
        token: BotToken::new("not-the-token"),
        ..cluster.gateway_config()
    };
    cluster.start_node("a", config);
    wait_for("every shard closed for good", DEADLINE, || {
        let statuses = cluster.node("a").shards();
        statuses.len() == SHARDS as usize
            && statuses
                .iter()
                .all(|status| status.phase == ShardPhase::FatallyClosed)
    })
    .await;
    let store = cluster.store().await;
    let fatal = eventually("the action log names every shard", DEADLINE, || async {
        let fatal = logged(&store, "shard_fatal").await;
        if fatal.len() == SHARDS as usize {
            Ok(fatal)
        } else {
            Err(format!("{} shard_fatal entries", fatal.len()))
        }
    })
    .await;
    assert!(
        fatal
            .iter()
            .all(|action| action.result.starts_with("close code 4004")),
        "{fatal:?}"
    );

    // No retry loop: nothing reconnects, the lease stays with the stopped shard.
    let stats = cluster.sim.stats();
    assert_eq!(stats.identifies, 0);
    assert_eq!(stats.connections, 0);
    assert_eq!(cluster.node("a").counters().fatal_closes, u64::from(SHARDS));
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_instead_of_resumed_is_recorded_as_a_lost_session() {
    let mut cluster = Cluster::start("lost", sim_config(100.0)).await;
    let config = cluster.gateway_config();
    cluster.start_node("a", config);
    wait_for("all shards active", DEADLINE, || cluster.settled(8)).await;
    let before = cluster.node("a").shards()[0].session.session_id.clone();

    // The session ends at Discord: the shard's RESUME is refused, it identifies again.
    assert_eq!(cluster.sim.chaos(0, Chaos::Expire), 1);
    wait_for("shard 0 runs a new session", DEADLINE, || {
        let status = &cluster.node("a").shards()[0];
        status.phase == ShardPhase::Active && status.session.session_id != before
    })
    .await;
    assert_eq!(cluster.node("a").counters().sessions_lost, 1);
    let store = cluster.store().await;
    let lost = eventually(
        "the action log records the lost session",
        DEADLINE,
        || async {
            let lost = logged(&store, "session_lost").await;
            if lost.is_empty() {
                Err("no session_lost entry".to_owned())
            } else {
                Ok(lost)
            }
        },
    )
    .await;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].args, format!("shard/0 session {before}"));
    cluster.finish().await;
}

/// The recent entries of the action log named `action`.
async fn logged(store: &SqliteStore, action: &str) -> Vec<Action> {
    store
        .recent_actions(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.action == action)
        .collect()
}
