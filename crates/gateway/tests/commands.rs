//! Gateway commands sent through the broker reach Discord on the shard's connection,
//! once and in order per shard, while the shards move between nodes: checked against
//! what the simulator received.

mod support;

use std::collections::BTreeMap;

use shardmesh_broker::CommandSender;
use shardmesh_harness::{
    eventually, presence_frame, presence_markers, received_presences, unix_ms, wait_for,
    wait_until, within,
};
use shardmesh_proto::{CommandEnvelope, WIRE_VERSION};
use shardmesh_store::Store as _;
use support::{Cluster, DEADLINE, SHARDS, broker, sim_config};
use tokio_util::sync::CancellationToken;

/// A presence update for `shard` marked `marker`, so the simulator's record tells the
/// commands apart.
fn presence(marker: u64, shard: u32, expires_at_ms: Option<u64>) -> CommandEnvelope {
    CommandEnvelope {
        v: WIRE_VERSION,
        id: format!("command-{marker}"),
        shard,
        shard_count: SHARDS,
        op: 3,
        payload: presence_frame(marker),
        expires_at_ms,
        sent_by: "test".into(),
        created_at_ms: unix_ms(),
    }
}

/// Sends the presence updates `markers` round robin over the shards; returns each
/// shard's markers in the order they were accepted.
async fn send_round_robin(
    sender: &mut CommandSender,
    markers: impl Iterator<Item = u64>,
) -> BTreeMap<u32, Vec<u64>> {
    let mut sent: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for marker in markers {
        let shard = u32::try_from(marker).unwrap() % SHARDS;
        within(
            "a command accepted",
            DEADLINE,
            sender.send(&presence(marker, shard, None)),
        )
        .await
        .unwrap();
        sent.entry(shard).or_default().push(marker);
    }
    sent
}

/// `later` after `earlier`, shard by shard.
fn joined(
    mut earlier: BTreeMap<u32, Vec<u64>>,
    later: BTreeMap<u32, Vec<u64>>,
) -> BTreeMap<u32, Vec<u64>> {
    for (shard, markers) in later {
        earlier.entry(shard).or_default().extend(markers);
    }
    earlier
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_discord_once_and_in_order_across_a_drain() {
    const COMMANDS: u64 = 240;
    let mut cluster = Cluster::start_two("cmd-drain", sim_config(50.0)).await;
    let mut sender = within(
        "command sender connect",
        DEADLINE,
        CommandSender::connect(&broker(), &cluster.topology, CancellationToken::new()),
    )
    .await
    .unwrap();

    let before = send_round_robin(&mut sender, 0..=COMMANDS / 2).await;
    // Commands keep coming while a's shards move to b by RESUME.
    cluster.stop("a").await;
    let expected = joined(
        before,
        send_round_robin(&mut sender, COMMANDS / 2 + 1..COMMANDS).await,
    );
    wait_until("the simulator received every command", DEADLINE, || {
        let got = presence_markers(&cluster.sim);
        if got == expected {
            Ok(())
        } else {
            let count: usize = got.values().map(Vec::len).sum();
            Err(format!("{count} of {COMMANDS} so far"))
        }
    })
    .await;
    assert_eq!(
        presence_markers(&cluster.sim),
        expected,
        "a command was repeated or reordered"
    );
    let stats = cluster.sim.stats();
    assert_eq!(
        stats.rate_limit_closes, 0,
        "a connection went over 120 per 60 s"
    );
    assert_eq!(
        stats.identifies,
        u64::from(SHARDS),
        "a hand-over cost an IDENTIFY"
    );
    let counters = cluster.node("b").counters();
    assert!(counters.commands_sent > 0);
    sender.close().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_command_is_not_sent_and_is_reported() {
    let mut cluster = Cluster::start("cmd-expiry", sim_config(0.0)).await;
    let config = cluster.gateway_config();
    cluster.start_node("a", config);
    wait_for("a holds all 8 shards", DEADLINE, || cluster.settled(8)).await;
    let mut sender = CommandSender::connect(&broker(), &cluster.topology, CancellationToken::new())
        .await
        .unwrap();
    sender
        .send(&presence(1, 0, Some(unix_ms() - 1)))
        .await
        .unwrap();
    sender.send(&presence(2, 0, None)).await.unwrap();
    wait_for("the live command arrives", DEADLINE, || {
        presence_markers(&cluster.sim).get(&0) == Some(&vec![2])
    })
    .await;
    let counters = cluster.node("a").counters();
    assert_eq!((counters.commands_expired, counters.commands_sent), (1, 1));
    let store = cluster.store().await;
    eventually("the expiry is in the action log", DEADLINE, async || {
        let actions = store
            .recent_actions(50)
            .await
            .map_err(|error| error.to_string())?;
        if actions
            .iter()
            .any(|action| action.action == "command_expired" && action.args.contains("command-1"))
        {
            Ok(())
        } else {
            Err(format!("{actions:?}"))
        }
    })
    .await;
    sender.close().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_survive_a_crashed_owner_with_at_most_one_repeat_per_shard() {
    const COMMANDS: u64 = 160;
    let mut cluster = Cluster::start_two("cmd-crash", sim_config(50.0)).await;
    let a_shards = cluster.active()["a"].len();
    let mut sender = CommandSender::connect(&broker(), &cluster.topology, CancellationToken::new())
        .await
        .unwrap();
    let before = send_round_robin(&mut sender, 0..=COMMANDS / 2).await;
    cluster.kill("a").await;
    let expected = joined(
        before,
        send_round_robin(&mut sender, COMMANDS / 2 + 1..COMMANDS).await,
    );
    // Consecutive repeats are what a crash may cause: the command in flight when the
    // owner died, sent again by the next one.
    let deduplicated = |markers: &[u64]| {
        let mut out: Vec<u64> = markers.to_vec();
        out.dedup();
        out
    };
    wait_until("the simulator received every command", DEADLINE, || {
        let got: BTreeMap<u32, Vec<u64>> = presence_markers(&cluster.sim)
            .into_iter()
            .map(|(shard, markers)| (shard, deduplicated(&markers)))
            .collect();
        if got == expected {
            Ok(())
        } else {
            let count: usize = got.values().map(Vec::len).sum();
            Err(format!("{count} of {COMMANDS} so far"))
        }
    })
    .await;
    let got = presence_markers(&cluster.sim);
    let repeats: usize = got
        .values()
        .map(|markers| markers.len() - deduplicated(markers).len())
        .sum();
    assert!(
        repeats <= a_shards,
        "{repeats} repeats after a crash, more than one per shard of the crashed node: {got:?}"
    );
    assert_eq!(cluster.sim.stats().rate_limit_closes, 0);
    sender.close().await;
    cluster.finish().await;
}

/// Once the first minute's budget of a burst of `burst` to shard 0 is spent, the
/// backlog is visible: the node holds its prefetch, the broker the rest, and nothing is
/// unaccounted for.
async fn backlog_is_split_between_node_and_broker(cluster: &Cluster, burst: u64) {
    let queues = cluster.topology.clone().with_command_queues(SHARDS);
    eventually(
        "the backlog is split between node and broker",
        DEADLINE,
        async || {
            let status = cluster
                .node("a")
                .shards()
                .into_iter()
                .find(|s| s.shard == 0);
            let commands = status.ok_or("shard 0 is not on a")?.commands;
            let backlog = shardmesh_broker::command_backlog(&broker(), &queues)
                .await
                .map_err(|error| error.to_string())?;
            let queue = backlog
                .iter()
                .find(|queue| queue.shard == 0)
                .ok_or("no queue")?;
            let accounted = u64::from(queue.waiting) + u64::from(commands.held) + commands.sent;
            if commands.sent > 100
                && commands.held == 32
                && queue.readers == 1
                && accounted == burst
            {
                Ok(())
            } else {
                Err(format!("node {commands:?}, broker {queue:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_to_one_shard_is_spread_within_120_per_minute() {
    const BURST: u64 = 500;
    // Discord's heartbeat interval: twilight reserves permits for the heartbeats it
    // expects, and the simulator counts heartbeats against the same 120 per 60 s.
    let sim = shardmesh_sim::SimConfig {
        heartbeat_interval_ms: 41_250,
        ..sim_config(0.0)
    };
    let mut cluster = Cluster::start("cmd-burst", sim).await;
    cluster.start_node("a", cluster.gateway_config());
    wait_for("a holds all 8 shards", DEADLINE, || cluster.settled(8)).await;
    let connections = cluster.sim.stats().connections;
    let mut sender = CommandSender::connect(&broker(), &cluster.topology, CancellationToken::new())
        .await
        .unwrap();
    for marker in 0..BURST {
        sender.send(&presence(marker, 0, None)).await.unwrap();
    }
    backlog_is_split_between_node_and_broker(&cluster, BURST).await;
    // 500 at about 115 a minute: four minutes and a bit.
    let spread = std::time::Duration::from_secs(330);
    let started = std::time::Instant::now();
    wait_until("the simulator received the whole burst", spread, || {
        let count = presence_markers(&cluster.sim).get(&0).map_or(0, Vec::len);
        if count as u64 == BURST {
            Ok(())
        } else {
            let stats = cluster.sim.stats();
            Err(format!(
                "{count} of {BURST} after {:?} ({} closes with 4008, {} resumes; node: {:?})",
                started.elapsed(),
                stats.rate_limit_closes,
                stats.resumes,
                cluster.node("a").counters()
            ))
        }
    })
    .await;
    assert_eq!(
        presence_markers(&cluster.sim)[&0],
        (0..BURST).collect::<Vec<_>>(),
        "the burst was reordered or repeated"
    );
    // The busiest 60 s of the connection, from the simulator's receive times.
    let times: Vec<u64> = received_presences(&cluster.sim)
        .iter()
        .filter(|received| received.shard == 0)
        .map(|received| received.at_us)
        .collect();
    let busiest = times
        .iter()
        .enumerate()
        .map(|(i, start)| {
            times[i..]
                .iter()
                .take_while(|t| **t < start + 60_000_000)
                .count()
        })
        .max()
        .unwrap();
    println!("burst: {BURST} commands, at most {busiest} in any 60 s");
    assert!(
        busiest <= 118,
        "{busiest} commands in 60 s leave no room for heartbeats"
    );
    let stats = cluster.sim.stats();
    assert_eq!(
        stats.rate_limit_closes, 0,
        "the connection was closed with 4008"
    );
    assert_eq!(
        stats.connections, connections,
        "a connection was re-made (zombie or close)"
    );
    assert_eq!(stats.resumes, 0);
    sender.close().await;
    cluster.finish().await;
}
