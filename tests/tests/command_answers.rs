//! Discord's answers to gateway commands reach the consumer group as ordinary events: a
//! member request's `GUILD_MEMBERS_CHUNK`s carry its nonce (the command id), a second
//! full request within 30 s yields `RATE_LIMITED` with its own nonce, and a voice join
//! yields `VOICE_STATE_UPDATE` and `VOICE_SERVER_UPDATE`.

use std::time::Duration;

use shardmesh_broker::CommandSender;
use shardmesh_consumer::{CommandRequest, Commands};
use shardmesh_proto::CommandStatus;
use shardmesh_tests::sink::{Post, Sink};
use shardmesh_tests::{
    ConsumerTuning, Fleet, NodeProcess, TestCluster, Timings, sim_config, wait_until,
};
use tokio_util::sync::CancellationToken;

const SHARDS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);
/// `GUILDS | GUILD_MEMBERS | GUILD_VOICE_STATES | GUILD_MESSAGES`.
const INTENTS: u64 = 1 | 2 | 128 | 512;

fn members_request(guild: u64, nonce: &str) -> CommandRequest {
    CommandRequest {
        op: 8,
        d: serde_json::json!({"guild_id": guild.to_string(), "query": "", "limit": 0, "nonce": nonce}),
        id: Some(nonce.to_owned()),
        ..CommandRequest::default()
    }
}

/// The posts of `event_type` whose payload's `d` has `pointer` equal to `value`.
fn posts_with(sink: &Sink, event_type: &str, pointer: &str, value: &str) -> Vec<Post> {
    sink.posts()
        .into_iter()
        .filter(|post| post.event.event_type == event_type)
        .filter(|post| {
            post.event.payload["d"]
                .pointer(pointer)
                .and_then(|v| v.as_str())
                == Some(value)
        })
        .collect()
}

/// The sender learns each command's outcome: sent by which node, or rejected and why.
async fn assert_outcomes_reported(cluster: &TestCluster, commands: &Commands, guild: u64) {
    let (_, outcome) = commands
        .submit_and_wait(members_request(guild, "members-3"), WAIT)
        .await
        .unwrap();
    let outcome = outcome.expect("an outcome in time");
    assert_eq!(
        (outcome.status, outcome.node.as_str()),
        (CommandStatus::Sent, "g1")
    );
    let mut sender =
        CommandSender::connect(&cluster.broker, &cluster.topology, CancellationToken::new())
            .await
            .unwrap();
    let mut wrong_count = members_request(guild, "members-4")
        .envelope(SHARDS, "test", 0)
        .unwrap();
    wrong_count.shard_count = SHARDS * 2;
    let outcome = sender.send_for_outcome(&wrong_count).await.unwrap();
    let outcome = tokio::time::timeout(WAIT, outcome).await.unwrap().unwrap();
    assert_eq!(outcome.status, CommandStatus::Rejected);
    assert!(
        outcome.reason.contains("shard count 8"),
        "{}",
        outcome.reason
    );
    sender.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_commands_reach_the_consumer_group_with_their_nonce() {
    let sim = sim_config(SHARDS, SHARDS, 0.0);
    let mut cluster = TestCluster::start("cmd-answers", sim, 2, Timings::FAST).await;
    cluster.template.intents = INTENTS;
    cluster.start_nodes(&["g1"]).await;
    cluster.wait_settled(4, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;

    let sink = Sink::start(None).await;
    let mut config = cluster.node_config("c1");
    config.consumer = Some(ConsumerTuning::PER_EVENT);
    let path = cluster.write_config(&config);
    let log = cluster.dir().join("c1.log");
    let mut consumers = Fleet::default();
    consumers.add(NodeProcess::consumer("c1", "bots", &sink.url("bots", "c1"), &path, &log).await);

    let commands = Commands::connect(
        &cluster.broker,
        &cluster.name,
        SHARDS,
        "test",
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let guild = cluster.sim.guilds()[0].clone();
    commands
        .submit(members_request(guild.id, "members-1"))
        .await
        .unwrap();
    let chunks = wait_until(
        "every member chunk of the first request at the sink",
        WAIT,
        || {
            let chunks = posts_with(&sink, "GUILD_MEMBERS_CHUNK", "/nonce", "members-1");
            let expected = chunks
                .first()
                .and_then(|post| post.event.payload["d"]["chunk_count"].as_u64())
                .ok_or_else(|| "no chunk yet".to_owned())?;
            if chunks.len() as u64 == expected {
                Ok(chunks)
            } else {
                Err(format!("{} of {expected} chunks", chunks.len()))
            }
        },
    )
    .await;
    assert!(chunks.iter().all(|post| post.event.shard == guild.shard));

    commands
        .submit(members_request(guild.id, "members-2"))
        .await
        .unwrap();
    wait_until(
        "RATE_LIMITED for the second request at the sink",
        WAIT,
        || {
            let limited = posts_with(&sink, "RATE_LIMITED", "/meta/nonce", "members-2");
            if limited.len() == 1 {
                Ok(())
            } else {
                Err(format!("{} so far", limited.len()))
            }
        },
    )
    .await;
    assert!(posts_with(&sink, "GUILD_MEMBERS_CHUNK", "/nonce", "members-2").is_empty());

    let join = twilight_model::gateway::payload::outgoing::UpdateVoiceState::new(
        twilight_model::id::Id::new(guild.id),
        twilight_model::id::Id::new(guild.channels[0]),
        false,
        true,
    );
    let accepted = commands.send(&join).await.unwrap();
    assert_eq!(accepted.shard, guild.shard);
    let guild_id = guild.id.to_string();
    wait_until("the voice join's answers at the sink", WAIT, || {
        let state = posts_with(&sink, "VOICE_STATE_UPDATE", "/guild_id", &guild_id).len();
        let server = posts_with(&sink, "VOICE_SERVER_UPDATE", "/guild_id", &guild_id).len();
        if (state, server) == (1, 1) {
            Ok(())
        } else {
            Err(format!("{state} state, {server} server updates"))
        }
    })
    .await;

    assert_outcomes_reported(&cluster, &commands, guild.id).await;
    consumers.kill_all().await;
    cluster.finish().await;
}
