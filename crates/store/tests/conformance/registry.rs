//! Cluster spec, node registry, action log, and cluster isolation checks.

use std::time::{Duration, SystemTime};

use shardmesh_proto::{NodeRole, NodeState};
use shardmesh_store::{
    Action, ClusterSpec, ErrorKind, IdentifyBudget, IdentifyGrant, LeaseKey, NodeRecord, Store,
};

use super::{LONG, OpenStore, SHORT, clean_up, fresh, now_ms, unique_cluster, wait_until};

const SPEC: ClusterSpec = ClusterSpec {
    shard_count: 32,
    partitions: 16,
    max_concurrency: 1,
};

fn node(id: &str, role: NodeRole) -> NodeRecord {
    NodeRecord {
        node: id.into(),
        role,
        group: (role == NodeRole::Consumer).then(|| "bots".to_owned()),
        state: NodeState::Ready,
        address: Some("127.0.0.1:9100".into()),
        started_at: now_ms() - Duration::from_secs(30),
        seen_at: now_ms(),
    }
}

fn action(actor: &str, what: &str, seconds_ago: u64) -> Action {
    Action {
        actor: actor.into(),
        action: what.into(),
        args: "shard/3 to n2".into(),
        result: "ok".into(),
        at: now_ms() - Duration::from_secs(seconds_ago),
    }
}

async fn sorted_nodes(store: &impl Store) -> Vec<NodeRecord> {
    let mut nodes = store.nodes().await.expect("nodes");
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes
}

/// The first spec recorded is the cluster's; the same spec is agreed again from any
/// handle, and a different one is refused naming the cluster and each differing field
/// with both values.
pub async fn first_spec_wins_and_a_different_one_is_refused(open: impl OpenStore) {
    let cluster = unique_cluster("spec");
    let first = open.open(cluster.clone()).await;
    let second = open.open(cluster.clone()).await;
    assert_eq!(first.spec().await.expect("spec"), None);
    assert_eq!(first.agree_spec(SPEC).await.expect("agree"), SPEC);
    assert_eq!(second.agree_spec(SPEC).await.expect("agree again"), SPEC);
    assert_eq!(second.spec().await.expect("spec"), Some(SPEC));

    let different = ClusterSpec {
        shard_count: 64,
        partitions: 8,
        ..SPEC
    };
    let error = second
        .agree_spec(different)
        .await
        .expect_err("a different spec is refused");
    assert_eq!(error.kind(), ErrorKind::SpecConflict);
    assert!(!error.is_retryable());
    let message = error.to_string();
    for part in [
        cluster.as_str(),
        "shard_count",
        "32",
        "64",
        "partitions",
        "16",
        "8",
    ] {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part}"
        );
    }
    assert!(!message.contains("max_concurrency"), "{message:?}");
    assert_eq!(
        first.spec().await.expect("spec"),
        Some(SPEC),
        "spec unchanged"
    );
    clean_up(&first).await;
}

/// The first handle to ask creates the cluster's identity; every handle, at once or
/// later, reads the same one; another cluster has its own; deleting the cluster
/// deletes it, so the next node creates a new one.
pub async fn one_identity_per_cluster_whoever_asks_first(open: impl OpenStore) {
    let cluster = unique_cluster("identity");
    let handles = [
        open.open(cluster.clone()).await,
        open.open(cluster.clone()).await,
        open.open(cluster.clone()).await,
    ];
    let before = SystemTime::now() - Duration::from_secs(1);
    let asked = tokio::join!(
        handles[0].cluster_identity(),
        handles[1].cluster_identity(),
        handles[2].cluster_identity(),
    );
    let identities: Vec<_> = [asked.0, asked.1, asked.2]
        .into_iter()
        .map(|id| id.expect("identity"))
        .collect();
    assert!(
        identities.iter().all(|identity| *identity == identities[0]),
        "{identities:?}"
    );
    let identity = &identities[0];
    assert!(uuid::Uuid::parse_str(&identity.id).is_ok(), "{identity:?}");
    assert!(identity.created_at >= before, "{identity:?}");
    assert_eq!(
        &handles[0].cluster_identity().await.expect("again"),
        identity
    );
    let other = fresh(&open, "identity-other").await;
    assert_ne!(
        other.cluster_identity().await.expect("other").id,
        identity.id
    );
    assert!(!handles[0].location().is_empty());

    handles[0].delete_cluster().await.expect("delete");
    let renewed = handles[1].cluster_identity().await.expect("after delete");
    assert_ne!(
        renewed.id, identity.id,
        "a deleted cluster keeps its identity"
    );
    clean_up(&handles[0]).await;
    clean_up(&other).await;
}

/// Registry rows read back as written, are replaced by a newer write, and disappear
/// once their TTL has passed.
pub async fn node_rows_expire(open: impl OpenStore) {
    let store = fresh(&open, "nodes").await;
    let gateway = node("n1", NodeRole::Gateway);
    let consumer = NodeRecord {
        state: NodeState::Draining,
        address: None,
        ..node("n2", NodeRole::Consumer)
    };
    store.register_node(&gateway, LONG).await.expect("register");
    store
        .register_node(&consumer, LONG)
        .await
        .expect("register");
    assert_eq!(
        sorted_nodes(&store).await,
        [gateway.clone(), consumer.clone()]
    );

    let leaving = NodeRecord {
        state: NodeState::Leaving,
        ..gateway
    };
    store
        .register_node(&leaving, SHORT)
        .await
        .expect("register");
    let nodes = sorted_nodes(&store).await;
    assert!(
        nodes == [leaving, consumer.clone()] || nodes == [consumer.clone()],
        "the newer write replaces the row: {nodes:?}"
    );
    wait_until("n1's row expires", async || {
        (sorted_nodes(&store).await == [consumer.clone()]).then_some(())
    })
    .await;
    clean_up(&store).await;
}

/// The action log returns the newest entries first, at most `limit` of them.
pub async fn action_log_lists_newest_first_up_to_the_limit(open: impl OpenStore) {
    let store = fresh(&open, "actions").await;
    let actions: Vec<Action> = (0..5)
        .map(|n| action("n1", &format!("step{n}"), 50 - n * 10))
        .collect();
    for action in &actions {
        store.log_action(action).await.expect("log");
    }
    let newest_first: Vec<Action> = actions.iter().rev().cloned().collect();
    assert_eq!(
        store.recent_actions(3).await.expect("recent"),
        newest_first[..3]
    );
    assert_eq!(
        store.recent_actions(10).await.expect("recent"),
        newest_first
    );
    assert_eq!(store.recent_actions(0).await.expect("recent"), []);
    clean_up(&store).await;
}

/// Two clusters in one store share nothing, and deleting one leaves the other whole.
pub async fn clusters_do_not_see_each_other(open: impl OpenStore) {
    let doomed = fresh(&open, "doomed").await;
    let kept = fresh(&open, "kept").await;
    let key = LeaseKey::Shard(0);
    let budget = IdentifyBudget {
        remaining: 10,
        total: 10,
        resets_at: now_ms() + Duration::from_secs(3_600),
    };
    for (store, shards, owner) in [(&doomed, 4, "d"), (&kept, 8, "k")] {
        let spec = ClusterSpec {
            shard_count: shards,
            ..SPEC
        };
        assert_eq!(store.agree_spec(spec).await.expect("agree"), spec);
        let lease = store.acquire(&key, owner, LONG).await.expect("acquire");
        assert_eq!(lease.expect("free in this cluster").epoch, 1);
        store
            .register_node(&node(owner, NodeRole::Gateway), LONG)
            .await
            .expect("register");
        store
            .log_action(&action(owner, "start", 0))
            .await
            .expect("log");
        store.set_identify_budget(budget).await.expect("budget");
        let answer = store.grant_identify(0).await.expect("grant");
        assert_eq!(
            answer,
            IdentifyGrant::Granted,
            "{owner}: buckets per cluster"
        );
    }
    let kept_nodes = kept.nodes().await.expect("nodes");
    assert_eq!(kept_nodes.len(), 1);
    assert_eq!(kept_nodes[0].node, "k");
    let kept_actions = kept.recent_actions(10).await.expect("actions");
    assert_eq!(kept_actions.len(), 1);
    assert_eq!(kept_actions[0].actor, "k");

    doomed.delete_cluster().await.expect("delete");
    assert_eq!(doomed.spec().await.expect("spec"), None);
    assert_eq!(doomed.leases().await.expect("leases"), []);
    assert_eq!(doomed.nodes().await.expect("nodes"), []);
    assert_eq!(doomed.recent_actions(10).await.expect("actions"), []);
    assert_eq!(doomed.identify_budget().await.expect("budget"), None);
    let again = doomed.acquire(&key, "d2", LONG).await.expect("acquire");
    assert_eq!(again.expect("free after delete").epoch, 1);

    assert_eq!(
        kept.spec().await.expect("spec").expect("kept").shard_count,
        8
    );
    let leases = kept.leases().await.expect("leases");
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (leases[0].owner.as_deref(), leases[0].epoch),
        (Some("k"), 1)
    );
    assert_eq!(kept.nodes().await.expect("nodes"), kept_nodes);
    assert_eq!(
        kept.recent_actions(10).await.expect("actions"),
        kept_actions
    );
    let spent = IdentifyBudget {
        remaining: 9,
        ..budget
    };
    assert_eq!(kept.identify_budget().await.expect("budget"), Some(spent));
    assert!(matches!(
        kept.grant_identify(0).await.expect("grant"),
        IdentifyGrant::RetryAfter(_)
    ));
    clean_up(&doomed).await;
    clean_up(&kept).await;
}
