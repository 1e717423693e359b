//! The channel mirror example (`crates/consumer/examples/mirror.rs`) as a real service:
//! a gateway node and mirror processes against the simulator. Every message people post
//! in the source channel is reposted once in the target channel, under its author's name
//! and avatar: across a drain and restart (which repeats no event at all) and across a
//! SIGKILL (whose repeated events the mirror recognises by their delivery ids).

use std::collections::BTreeMap;
use std::time::Duration;

use shardmesh_harness::{Launch, example};
use shardmesh_sim::UserPost;
use shardmesh_tests::{
    ConsumerTuning, NodeProcess, TestCluster, Timings, eventually, holds_for, sim_config,
};

const SHARDS: u32 = 2;
const PARTITIONS: u32 = 2;
const WAIT: Duration = Duration::from_secs(60);
/// A valid avatar hash: twilight-model refuses an author whose avatar is not one.
const AVATAR: &str = "0123456789abcdef0123456789abcdef";
/// What the mirror prints when it recognises a repeated event.
const SKIPPED: &str = "already mirrored, not posted again";

/// Checkpoints so rare that a killed mirror leaves every event it handled to repeat.
const RARE_CHECKPOINTS: ConsumerTuning = ConsumerTuning {
    checkpoint_every_events: 1_000,
    checkpoint_every_ms: 600_000,
    ..ConsumerTuning::PER_EVENT
};

struct Channels {
    source: u64,
    target: u64,
}

/// Starts mirror process `id` of the cluster's `mirror` group.
async fn start_mirror(cluster: &mut TestCluster, id: &str, channels: &Channels) {
    let mut config = cluster.node_config(id);
    config.consumer = Some(RARE_CHECKPOINTS);
    let path = cluster.write_config(&config);
    let log = cluster.dir().join(format!("{id}.log"));
    let (source, target) = (channels.source.to_string(), channels.target.to_string());
    // The bot token and the simulator's REST address come from `[gateway]` of the
    // node's file, as for the gateway nodes.
    let env = [
        ("SHARDMESH__CONSUMER__GROUP", "mirror"),
        ("MIRROR_SOURCE", source.as_str()),
        ("MIRROR_TARGET", target.as_str()),
    ];
    let launch = Launch {
        id,
        command: &[],
        config: &path,
        log: &log,
        env: &env,
    };
    let binary = example("shardmesh-consumer", "mirror");
    let node = NodeProcess::spawn(&binary, launch)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    cluster.fleet.add(node);
}

/// Posts `count` messages by people in the source channel, numbered from `first`.
fn post(cluster: &TestCluster, channels: &Channels, first: usize, count: usize) {
    for n in first..first + count {
        let post = UserPost {
            content: format!("message {n}"),
            username: format!("person{}", n % 3),
            avatar: Some(AVATAR.to_owned()),
        };
        cluster
            .sim
            .post_as_user(channels.source, &post)
            .expect("the source channel exists");
    }
}

/// Waits until the target channel holds `count` messages.
async fn wait_mirrored(cluster: &TestCluster, channels: &Channels, count: usize) {
    eventually(&format!("{count} mirrored messages"), WAIT, || async {
        let held = cluster.sim.messages(channels.target).len();
        if held >= count {
            Ok(())
        } else {
            Err(format!("the target channel holds {held}"))
        }
    })
    .await;
}

/// How many repeated events `mirror` recognised and did not post again.
fn skipped(mirror: &NodeProcess) -> usize {
    let log = mirror.log();
    log.lines().filter(|line| line.contains(SKIPPED)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_mirrored_once_across_a_drain_and_a_kill() {
    let sim = sim_config(SHARDS, SHARDS, 0.0);
    let mut cluster = TestCluster::start("mirror", sim, PARTITIONS, Timings::FAST).await;
    cluster.start_nodes(&["g1"]).await;
    cluster.wait_settled(SHARDS as usize, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    let guild = cluster.sim.guilds()[0].clone();
    let channels = Channels {
        source: guild.channels[0],
        target: guild.channels[1],
    };

    start_mirror(&mut cluster, "m1", &channels).await;
    post(&cluster, &channels, 0, 4);
    wait_mirrored(&cluster, &channels, 4).await;

    // A drain hands over with a final checkpoint: its successor repeats nothing, not
    // even an event it would recognise. Messages posted while no mirror runs wait in
    // the streams.
    let status = cluster.fleet.terminate("m1", WAIT).await;
    assert!(status.success(), "the drained mirror exited with {status}");
    post(&cluster, &channels, 4, 4);
    start_mirror(&mut cluster, "m2", &channels).await;
    wait_mirrored(&cluster, &channels, 8).await;

    // SIGKILL after events handled but not checkpointed: its successor reads them again.
    post(&cluster, &channels, 8, 4);
    wait_mirrored(&cluster, &channels, 12).await;
    cluster.fleet.kill("m2").await;
    start_mirror(&mut cluster, "m3", &channels).await;
    post(&cluster, &channels, 12, 4);
    wait_mirrored(&cluster, &channels, 16).await;
    eventually("m3 recognised m2's reposts", WAIT, || async {
        match skipped(cluster.fleet.node("m3")) {
            8 => Ok(()),
            n => Err(format!("m3 skipped {n} repeated events, expected 8")),
        }
    })
    .await;
    holds_for("no late double post", Duration::from_secs(2), || async {
        match cluster.sim.messages(channels.target).len() {
            16 => Ok(()),
            n => Err(format!("the target channel holds {n}")),
        }
    })
    .await;
    assert_eq!(
        skipped(cluster.fleet.ended("m2")),
        0,
        "a drain repeats nothing"
    );

    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for message in cluster.sim.messages(channels.target) {
        let content = message["content"].as_str().unwrap_or_default().to_owned();
        let n: usize = content["message ".len()..]
            .parse()
            .expect("a mirrored post");
        assert_eq!(message["author"]["username"], format!("person{}", n % 3));
        assert!(message["webhook_id"].is_string(), "posted by the webhook");
        let avatar = message["author"]["avatar"].to_string();
        assert!(avatar.contains(AVATAR), "the author's avatar, got {avatar}");
        *copies.entry(content).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = (0..16).map(|n| (format!("message {n}"), 1)).collect();
    assert_eq!(copies, expected, "each message mirrored exactly once");
    cluster.finish().await;
}
