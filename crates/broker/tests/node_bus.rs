//! Announcements reach every node, node queues go with their nodes, control RPC works.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardmesh_broker::{BrokerConfig, Error, Incoming, NodeBus, Topology};
use shardmesh_proto::{Announcement, ControlCommand, ControlOutcome, NodeRole, NodeState};
use support::{proxied_broker, shared_broker, topology, wait_for};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

fn announcement(node: &str) -> Announcement {
    Announcement::new(
        node,
        NodeRole::Consumer,
        Some("bots".into()),
        NodeState::Ready,
        1,
        vec![],
        0,
    )
}

/// Answers pings with pong unless `silent`; records the announcements it sees.
fn serve(
    bus: Arc<NodeBus>,
    mut inbox: UnboundedReceiver<Incoming>,
    silent: bool,
    seen: Arc<Mutex<BTreeSet<String>>>,
) {
    tokio::spawn(async move {
        while let Some(incoming) = inbox.recv().await {
            match incoming {
                Incoming::Announcement(announcement) => {
                    seen.lock().unwrap().insert(announcement.node);
                }
                Incoming::Request(request) if !silent && !request.is_expired() => {
                    bus.reply(&request, ControlOutcome::Pong).await.unwrap();
                }
                _ => {}
            }
        }
    });
}

type Node = (
    Arc<NodeBus>,
    Arc<Mutex<BTreeSet<String>>>,
    CancellationToken,
);

async fn start_nodes(
    config: &BrokerConfig,
    topology: &Topology,
    ids: &[String],
    silent: &str,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for id in ids {
        let stop = CancellationToken::new();
        let (bus, inbox) = NodeBus::connect(config, topology, id, stop.clone())
            .await
            .unwrap();
        let bus = Arc::new(bus);
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        serve(bus.clone(), inbox, id == silent, seen.clone());
        nodes.push((bus, seen, stop));
    }
    nodes
}

/// Stops every node and waits until the broker has deleted their queues.
async fn stop_nodes(config: &BrokerConfig, topology: &Topology, nodes: Vec<Node>) {
    for (bus, _, stop) in nodes {
        stop.cancel();
        wait_for_queue_deletion(config, &topology.node_queue(bus.node())).await;
    }
}

async fn wait_for_queue_deletion(config: &BrokerConfig, queue: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Topology::queue_exists(config, queue).await {
            Err(Error::NotFound { .. }) => return,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "{queue} still there: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_from_five_nodes_reach_all_five_and_queues_go_with_their_nodes() {
    let config = shared_broker().await;
    let topology = topology("announce", 1, &config);
    let ids: Vec<String> = (0..5).map(|n| format!("n{n}")).collect();
    let mut nodes = start_nodes(&config, &topology, &ids[..4], "").await;
    // n4 reaches the broker through a proxy, so it can vanish like a crashed host.
    let (proxy, proxied) = proxied_broker().await;
    nodes.extend(start_nodes(&proxied, &topology, &ids[4..], "").await);
    for (bus, _, _) in &nodes {
        bus.announce(&announcement(bus.node())).await.unwrap();
    }
    let everyone: BTreeSet<String> = ids.iter().cloned().collect();
    wait_for(
        "every node sees every announcement",
        Duration::from_secs(10),
        || {
            nodes
                .iter()
                .all(|(_, seen, _)| *seen.lock().unwrap() == everyone)
        },
    )
    .await;

    // The queue exists while its node lives (exclusive: another connection is refused).
    let queue = topology.node_queue("n4");
    assert!(matches!(
        Topology::queue_exists(&config, &queue).await,
        Err(Error::Refused { .. })
    ));
    let (_, _, stop) = nodes.pop().unwrap();
    // The host goes away: the connection drops and nothing gets through any more.
    drop(proxy);
    wait_for_queue_deletion(&config, &queue).await;
    stop.cancel();
    stop_nodes(&config, &topology, nodes).await;
    topology.delete(&config).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_replies_time_out_and_broadcasts_name_the_silent_node() {
    let config = shared_broker().await;
    let topology = topology("rpc", 1, &config);
    let ids: Vec<String> = (0..5).map(|n| format!("n{n}")).collect();
    let nodes = start_nodes(&config, &topology, &ids, "n3").await;
    let (ctl, ctl_inbox) = NodeBus::connect(&config, &topology, "ctl", CancellationToken::new())
        .await
        .unwrap();
    drop(ctl_inbox);

    let reply = ctl
        .request("n1", ControlCommand::Ping, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (reply.node.as_str(), reply.outcome),
        ("n1", ControlOutcome::Pong)
    );

    let started = std::time::Instant::now();
    match ctl
        .request("n3", ControlCommand::Ping, Duration::from_millis(300))
        .await
    {
        Err(Error::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(300)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    let outcome = ctl
        .broadcast(ControlCommand::Ping, &ids, Duration::from_millis(1_500))
        .await
        .unwrap();
    let repliers: BTreeSet<_> = outcome.replies.iter().map(|r| r.node.clone()).collect();
    assert_eq!(repliers, ["n0", "n1", "n2", "n4"].map(String::from).into());
    assert_eq!(outcome.silent, ["n3"]);

    // Dropping a request cancels it; the bus keeps working.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        ctl.request("n3", ControlCommand::Ping, Duration::from_secs(30)),
    )
    .await;
    assert!(cancelled.is_err());
    // Concurrent requests are told apart by their correlation ids.
    let repliers: BTreeSet<_> = futures_util::future::join_all(
        ["n0", "n1", "n2"].map(|n| ctl.request(n, ControlCommand::Ping, Duration::from_secs(5))),
    )
    .await
    .into_iter()
    .map(|reply| reply.unwrap().node)
    .collect();
    assert_eq!(repliers, ["n0", "n1", "n2"].map(String::from).into());

    ctl.shutdown().await;
    stop_nodes(&config, &topology, nodes).await;
    topology.delete(&config).await.unwrap();
}
