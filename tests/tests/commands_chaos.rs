//! Gateway commands at a steady rate to every shard, half from the library and half over
//! `POST /commands` on a consumer node, while a gateway node is killed (SIGKILL), a new
//! one joins, another drains, and the gateways' broker connections are cut. The
//! simulator's record holds every accepted command in order per shard, none twice
//! beyond the one in flight per shard of the killed node, no connection closed with
//! 4008, and the faults cost no IDENTIFY.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardmesh_consumer::{CommandRequest, Commands};
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{
    ConsumerTuning, FaultProxy, Fleet, NodeProcess, TestCluster, Timings, broker_authority,
    broker_url, eventually, post_json, presence_d, presence_markers, sim_config, wait_until,
    within,
};
use tokio_util::sync::CancellationToken;

const SHARDS: u32 = 32;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);
/// Commands per second across all shards: about 75 per shard per minute, well inside
/// the budget, so every shard always has some queued while the faults happen.
const RATE: u64 = 40;
const OUTAGE: Duration = Duration::from_secs(5);

/// The markers sent so far, per shard, in the order they were accepted.
type Sent = Arc<Mutex<BTreeMap<u32, Vec<u64>>>>;

fn presence(marker: u64, shard: u32) -> CommandRequest {
    CommandRequest {
        op: 3,
        d: presence_d(marker),
        shard: Some(shard),
        id: Some(format!("presence-{marker}")),
        ..CommandRequest::default()
    }
}

/// Sends presence updates round-robin over the shards at [`RATE`] until `stop`, even
/// markers through the library, odd ones over HTTP; records each accepted one.
async fn send_steadily(commands: Commands, api: SocketAddr, sent: Sent, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(1_000 / RATE));
    for marker in 0.. {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let shard = u32::try_from(marker % u64::from(SHARDS)).unwrap();
        let request = presence(marker, shard);
        if marker % 2 == 0 {
            commands
                .submit(request)
                .await
                .expect("the library's command is accepted");
        } else {
            let body = serde_json::to_string(&request).unwrap();
            let response = post_json(api, "/commands", &body, Some("test-token"))
                .await
                .expect("POST /commands answers");
            assert_eq!(response.status, 202, "POST /commands: {}", response.body);
            assert!(
                response.body.contains(&format!("\"shard\":{shard}")),
                "{}",
                response.body
            );
        }
        sent.lock().unwrap().entry(shard).or_default().push(marker);
    }
}

fn without_consecutive_repeats(markers: &[u64]) -> Vec<u64> {
    let mut once = markers.to_vec();
    once.dedup();
    once
}

/// Starts a consumer node of group `bots` serving `POST /commands` on a port it picks,
/// and returns that address (from the `commands on http://ADDR` line of its log).
async fn start_command_api(cluster: &TestCluster, sink: &Sink, fleet: &mut Fleet) -> SocketAddr {
    let mut config = cluster.node_config("c1");
    config.consumer = Some(ConsumerTuning::PER_EVENT);
    let text =
        config.to_toml() + "commands_bind = \"127.0.0.1:0\"\ncommands_token = \"test-token\"\n";
    let path = cluster.dir().join("c1.toml");
    std::fs::write(&path, text).unwrap();
    let log = cluster.dir().join("c1.log");
    let node = NodeProcess::consumer("c1", "bots", &sink.url("bots", "c1"), &path, &log).await;
    let address = wait_until("c1 serves POST /commands", WAIT, || {
        node.log()
            .lines()
            .find_map(|line| line.strip_prefix("commands on http://"))
            .and_then(|address| address.trim().parse().ok())
            .ok_or_else(|| "no `commands on` line yet".to_owned())
    })
    .await;
    fleet.add(node);
    address
}

/// Waits until the simulator holds `expected` per shard (consecutive repeats aside) and
/// checks the repeats stay within `bound`, no connection went over its rate budget and
/// nothing cost an IDENTIFY.
async fn assert_received_once_in_order(
    cluster: &TestCluster,
    expected: &BTreeMap<u32, Vec<u64>>,
    bound: usize,
) {
    let total: usize = expected.values().map(Vec::len).sum();
    wait_until(
        "the simulator received every accepted command",
        WAIT,
        || {
            let got: BTreeMap<u32, Vec<u64>> = presence_markers(&cluster.sim)
                .into_iter()
                .map(|(shard, markers)| (shard, without_consecutive_repeats(&markers)))
                .collect();
            if got == *expected {
                return Ok(());
            }
            let count: usize = got.values().map(Vec::len).sum();
            let wrong: Vec<u32> = expected
                .iter()
                .filter(|(shard, markers)| {
                    let arrived = got.get(shard).map_or(&[][..], Vec::as_slice);
                    !markers.starts_with(arrived)
                })
                .map(|(shard, _)| *shard)
                .collect();
            Err(format!(
                "{count} of {total}; shards out of order or with strangers: {wrong:?}"
            ))
        },
    )
    .await;
    let got = presence_markers(&cluster.sim);
    let repeats: usize = got
        .values()
        .map(|markers| markers.len() - without_consecutive_repeats(markers).len())
        .sum();
    let stats = cluster.sim.stats();
    println!(
        "commands: {total} accepted, all received in order; {repeats} repeats (bound {bound}, \
         the killed node's shards); {} resumes",
        stats.resumes
    );
    assert!(
        repeats <= bound,
        "{repeats} repeated commands, more than one per shard of the killed node"
    );
    assert_eq!(
        stats.rate_limit_closes, 0,
        "a connection went over 120 per 60 s"
    );
    assert_eq!(
        stats.identifies,
        u64::from(SHARDS),
        "the faults cost IDENTIFYs"
    );
}

/// The surviving gateway nodes' `/metrics` show each shard's commands: every shard
/// sent some since its last move (the run's last 200 went to the final owners), and
/// none is held once all have arrived.
async fn assert_per_shard_metrics(cluster: &TestCluster, survivors: &[&str]) {
    let metrics = eventually("the nodes hold no command", WAIT, async || {
        let mut metrics = Vec::new();
        for id in survivors {
            metrics.push(cluster.fleet.node(id).metrics().await?);
        }
        let held: f64 = metrics
            .iter()
            .map(|m| m.value("shardmesh_gateway_shard_commands_held"))
            .sum();
        if held.abs() < f64::EPSILON {
            Ok(metrics)
        } else {
            Err(format!("{held} commands still held"))
        }
    })
    .await;
    for shard in 0..SHARDS {
        let label = format!("shard=\"{shard}\"");
        let sent: f64 = metrics
            .iter()
            .map(|m| m.sum_where("shardmesh_gateway_shard_commands_sent_total", &label))
            .sum();
        assert!(sent >= 1.0, "shard {shard} shows no command sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_discord_once_in_order_through_kills_drains_joins_and_broker_cuts() {
    let sim = sim_config(SHARDS, SHARDS, 100.0);
    let mut cluster = TestCluster::start("cmd-chaos", sim, PARTITIONS, Timings::FAST).await;
    let upstream = broker_authority(&broker_url());
    let proxy = FaultProxy::start(&upstream).await;
    let through_proxy = |cluster: &TestCluster, id: &str| {
        let mut config = cluster.node_config(id);
        config.broker_url = proxy.rewrite(&config.broker_url, &upstream);
        config
    };
    let configs = ["g1", "g2", "g3"]
        .iter()
        .map(|id| through_proxy(&cluster, id))
        .collect();
    cluster.start_nodes_with(configs).await;
    let owners = cluster.wait_settled(11, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    let killed_shards = owners.values().filter(|owner| *owner == "g2").count();

    let sink = Sink::start(None).await;
    let mut consumers = Fleet::default();
    let api = start_command_api(&cluster, &sink, &mut consumers).await;
    let commands = Commands::connect(
        &cluster.broker,
        &cluster.name,
        SHARDS,
        "test",
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let sent = Sent::default();
    let stop = CancellationToken::new();
    let sending = tokio::spawn(send_steadily(commands, api, sent.clone(), stop.clone()));
    let accepted = |count: usize| {
        let sent = sent.clone();
        move || {
            let now: usize = sent.lock().unwrap().values().map(Vec::len).sum();
            if now >= count {
                Ok(())
            } else {
                Err(format!("{now} accepted"))
            }
        }
    };
    wait_until("200 commands accepted", WAIT, accepted(200)).await;

    cluster.fleet.kill("g2").await;
    cluster.wait_settled(16, WAIT).await;
    wait_until("400 commands accepted", WAIT, accepted(400)).await;

    let joiner = through_proxy(&cluster, "g4");
    cluster.start_nodes_with(vec![joiner]).await;
    cluster.wait_settled(11, WAIT).await;
    let drained = cluster.fleet.terminate("g3", WAIT).await;
    assert!(drained.success(), "g3 did not drain cleanly: {drained}");
    cluster.wait_settled(16, WAIT).await;
    wait_until("600 commands accepted", WAIT, accepted(600)).await;

    proxy.take_down();
    // The fault itself lasts a fixed time: this sleep is the outage, not a wait.
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();
    wait_until("800 commands accepted", WAIT, accepted(800)).await;
    stop.cancel();
    within("the sender stops", WAIT, sending).await.unwrap();

    let expected = sent.lock().unwrap().clone();
    assert_received_once_in_order(&cluster, &expected, killed_shards).await;
    assert_per_shard_metrics(&cluster, &["g1", "g4"]).await;

    // A caller that waits learns that its command went out, and from which node.
    let body = serde_json::to_string(&presence(1_000_000, 5)).unwrap();
    let response = post_json(api, "/commands?wait_ms=2500", &body, Some("test-token"))
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let outcome: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(outcome["status"], "sent", "{outcome}");
    assert!(
        ["g1", "g4"].contains(&outcome["node"].as_str().unwrap()),
        "{outcome}"
    );
    assert_bad_requests_refused(api).await;
    consumers.kill_all().await;
    cluster.finish().await;
}

/// What `POST /commands` refuses, with the field and the reason, before anything
/// reaches the broker.
async fn assert_bad_requests_refused(api: SocketAddr) {
    let good = r#"{"op":3,"d":{},"shard":1}"#;
    let unauthorized = post_json(api, "/commands", good, None).await.unwrap();
    assert_eq!(unauthorized.status, 401, "{}", unauthorized.body);
    let wrong_token = post_json(api, "/commands", good, Some("guess"))
        .await
        .unwrap();
    assert_eq!(wrong_token.status, 401, "{}", wrong_token.body);
    let cases = [
        (
            "/commands",
            r#"{"op":2,"d":{},"shard":1}"#,
            Some("op"),
            "not a gateway command",
        ),
        (
            "/commands",
            r#"{"op":3,"d":[1],"shard":1}"#,
            Some("d"),
            "JSON object",
        ),
        (
            "/commands",
            r#"{"op":3,"d":{},"shard":32}"#,
            Some("shard"),
            "outside",
        ),
        (
            "/commands",
            r#"{"op":4,"d":{"guild_id":"x"}}"#,
            Some("d.guild_id"),
            "not a snowflake",
        ),
        (
            "/commands?wait_ms=soon",
            good,
            Some("wait_ms"),
            "milliseconds",
        ),
        ("/commands", "op=3", None, "not a command"),
    ];
    for (path, body, field, reason) in cases {
        let response = post_json(api, path, body, Some("test-token"))
            .await
            .unwrap();
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        let refusal: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(refusal["field"].as_str(), field, "{body}: {refusal}");
        assert!(
            refusal["error"].as_str().unwrap().contains(reason),
            "{body}: {refusal}"
        );
    }
}
