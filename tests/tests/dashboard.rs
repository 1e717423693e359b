//! `shardmesh dashboard` in a real headless browser: 2 gateway nodes and a consumer
//! node on the simulator, the dashboard as its own process, Debian's chromium showing
//! the page. The grid shows every shard with the owner the store names; after one
//! gateway node is killed (SIGKILL) the same page (no reload) shows the survivor owning
//! every shard, each active again as g1 reports it. The page's control actions are
//! refused without the admin token and done with it, in the action log under the
//! dashboard's name. Screenshots go to `target/dashboard.png` (after the crash) and
//! `target/dashboard-before.png`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use shardmesh_sim::SimConfig;
use shardmesh_tests::browser::Browser;
use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{
    ConsumerTuning, NodeProcess, TestCluster, Timings, broker_url, eventually, post_json,
    sim_config,
};
use tokio::time::Instant;

const SHARDS: u32 = 8;
const PARTITIONS: u32 = 2;
const WAIT: Duration = Duration::from_secs(60);
/// From SIGKILL to the page showing the survivor with every shard: lease expiry and
/// settle (3.6 s with the fast timings), the take-over, and a poll or two.
const FOLLOW: Duration = Duration::from_secs(30);
const TOKEN: &str = "dashboard-test-token";

/// Each shard cell's `data-owner` and `data-lease`, by `data-shard`.
const READ_GRID: &str = "[...document.querySelectorAll('#grid .shard')].map(cell => \
    ({ shard: Number(cell.dataset.shard), owner: cell.dataset.owner, lease: cell.dataset.lease }))";
/// What the nodes reported per shard: `data-phase` and whether `data-latency` is set.
const READ_LIVE: &str = "[...document.querySelectorAll('#grid .shard')].map(cell => \
    [cell.dataset.phase, cell.dataset.latency !== ''])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, told in order
async fn the_page_shows_every_shard_and_follows_a_killed_node_without_a_reload() {
    let started = Instant::now();
    // Heartbeats every second, so the nodes have a latency to report soon.
    let sim = SimConfig {
        heartbeat_interval_ms: 1_000,
        ..sim_config(SHARDS, SHARDS, 50.0)
    };
    let mut cluster = TestCluster::start("dash", sim, PARTITIONS, Timings::FAST).await;
    // The consumer group's dead-letter stream goes with the cluster's topology.
    cluster.topology = cluster.topology.clone().with_dead_letters("bot");
    cluster.start_nodes(&["g1", "g2"]).await;
    cluster.wait_settled(SHARDS as usize / 2, WAIT).await;
    let mut consumers = ConsumerNodes::new(
        &cluster,
        Sink::start(None).await,
        ConsumerTuning::DEFAULT,
        &broker_url(),
    );
    consumers.start(&[("c1", "bot")]).await;
    consumers.wait_settled("bot", WAIT).await;

    let token_file = cluster.dir().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write the token file");
    let token_arg = token_file.to_str().expect("a UTF-8 path");
    let dashboard =
        start_dashboard(&cluster, "dashboard", &["--admin-token-file", token_arg]).await;
    let read_only = start_dashboard(&cluster, "dashboard-ro", &[]).await;

    // Without the token nothing is done, and the caller is told why.
    let drain = r#"{"node": "g1"}"#;
    let refused = post_json(
        read_only.http_addr(),
        "/api/actions/drain",
        drain,
        Some(TOKEN),
    )
    .await
    .expect("POST to the read-only dashboard");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused
            .body
            .contains("control actions are disabled: start the dashboard with --admin-token-file"),
        "{refused:?}"
    );
    for bearer in [None, Some("not-the-token")] {
        let refused = post_json(
            dashboard.http_addr(),
            "/api/actions/restart-shard",
            r#"{"shard": 3}"#,
            bearer,
        )
        .await
        .expect("POST to the dashboard");
        assert_eq!(refused.status, 401, "bearer {bearer:?}: {refused:?}");
        assert!(refused.body.contains("admin token"), "{refused:?}");
    }
    let unknown = post_json(
        dashboard.http_addr(),
        "/api/actions/drain",
        r#"{"node": "g9"}"#,
        Some(TOKEN),
    )
    .await
    .expect("POST to the dashboard");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.body.contains("no node g9"), "{unknown:?}");

    let url = format!("http://{}/", dashboard.http_addr());
    let mut browser = Browser::open(&url).await;
    let shown = eventually(
        "the page showing every shard held by the owner the store names",
        WAIT,
        async || {
            let store = cluster.owners().await?;
            let grid = read_grid(&mut browser).await?;
            let expected: BTreeMap<u32, (String, String)> = store
                .into_iter()
                .map(|(shard, owner)| (shard, (owner, "held".to_owned())))
                .collect();
            if grid == expected && grid.len() == SHARDS as usize {
                Ok(grid)
            } else {
                Err(format!("page {grid:?}, store {expected:?}"))
            }
        },
    )
    .await;
    assert!(
        shown.values().any(|(owner, _)| owner == "g1")
            && shown.values().any(|(owner, _)| owner == "g2"),
        "both nodes hold shards: {shown:?}"
    );
    eventually("the page listing the nodes and the group's partitions", WAIT, async || {
        let seen = browser
            .evaluate(
                "({ nodes: [...document.querySelectorAll('#nodes tr[data-node]')].map(r => r.dataset.node).sort(), \
                   partitions: [...document.querySelectorAll('#groups tr[data-group=\"bot\"]')].length, \
                   actions: document.querySelectorAll('#actions tbody tr').length, \
                   buttons: document.querySelectorAll('#grid button[data-restart]').length })",
            )
            .await?;
        let nodes: Vec<&str> = seen["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let done = nodes == ["c1", "g1", "g2"]
            && seen["partitions"] == PARTITIONS
            && seen["actions"].as_u64() > Some(0)
            && seen["buttons"] == SHARDS;
        if done { Ok(()) } else { Err(seen.to_string()) }
    })
    .await;
    // What only the nodes know arrives over the control exchange.
    eventually(
        "every shard active with a heartbeat latency, as its node reports",
        WAIT,
        async || {
            let live = browser.evaluate(READ_LIVE).await?;
            let expected = json!(vec![json!(["active", true]); SHARDS as usize]);
            if live == expected {
                Ok(())
            } else {
                Err(live.to_string())
            }
        },
    )
    .await;

    // An action with the token is done, and logged with the dashboard as its actor.
    let restarted = post_json(
        dashboard.http_addr(),
        "/api/actions/restart-shard",
        r#"{"shard": 0}"#,
        Some(TOKEN),
    )
    .await
    .expect("POST to the dashboard");
    assert_eq!(restarted.status, 200, "{restarted:?}");
    assert!(restarted.body.contains(r#""ok":true"#), "{restarted:?}");
    eventually(
        "the page's action log naming the dashboard's restart",
        WAIT,
        async || {
            let rows = browser
                .evaluate(
                    "[...document.querySelectorAll('#actions tbody tr')].map(r => \
                   [...r.cells].map(c => c.textContent).slice(1, 4).join(' '))",
                )
                .await?;
            let logged = rows
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|row| row.starts_with("dashboard@") && row.contains("restart_shard shard/0"));
            if logged {
                Ok(())
            } else {
                Err(rows.to_string())
            }
        },
    )
    .await;

    browser
        .screenshot(&target_dir().join("dashboard-before.png"))
        .await
        .expect("a screenshot");

    // Marks this page load: a reload would lose it.
    browser
        .evaluate("window.sameLoad = 'yes'")
        .await
        .expect("mark the page");
    let renders_before = renders(&mut browser).await;
    let killed = Instant::now();
    cluster.fleet.kill("g2").await;
    eventually(
        "the same page showing every shard held by g1 and g2 gone",
        FOLLOW,
        async || {
            let grid = read_grid(&mut browser).await?;
            let left = browser
                .evaluate(
                    "[window.sameLoad, !!document.querySelector('#nodes tr[data-node=\"g2\"]')]",
                )
                .await?;
            let on_g1 = grid.len() == SHARDS as usize
                && grid
                    .values()
                    .all(|(owner, lease)| owner == "g1" && lease == "held");
            if on_g1 && left == serde_json::json!(["yes", false]) {
                Ok(())
            } else {
                Err(format!("grid {grid:?}; [mark, g2 listed] {left}"))
            }
        },
    )
    .await;
    println!(
        "dashboard: the page showed g2's shards on g1 {:?} after SIGKILL",
        killed.elapsed()
    );
    let renders_after = renders(&mut browser).await;
    assert!(
        renders_after > renders_before,
        "the page redrew by itself ({renders_before} -> {renders_after} renders)"
    );
    let store = cluster.owners().await.expect("read the owners");
    assert!(store.values().all(|owner| owner == "g1"), "{store:?}");
    browser
        .screenshot(&target_dir().join("dashboard.png"))
        .await
        .expect("a screenshot");

    drop(browser);
    drop(read_only);
    drop(dashboard);
    consumers.fleet.kill_all().await;
    cluster.finish().await;
    println!("dashboard: scenario took {:?}", started.elapsed());
}

/// `shardmesh dashboard --bind 127.0.0.1:0 <flags>` with the cluster's settings,
/// once it says where it listens.
async fn start_dashboard(cluster: &TestCluster, id: &str, flags: &[&str]) -> NodeProcess {
    let config = cluster.write_config(&cluster.node_config(id));
    let log = cluster.dir().join(format!("{id}.log"));
    let mut command = vec!["dashboard", "--bind", "127.0.0.1:0"];
    command.extend_from_slice(flags);
    NodeProcess::start(id, &command, &config, &log, &[]).await
}

/// The grid as the page shows it: (owner, lease) by shard.
async fn read_grid(browser: &mut Browser) -> Result<BTreeMap<u32, (String, String)>, String> {
    let cells = browser.evaluate(READ_GRID).await?;
    cells
        .as_array()
        .ok_or_else(|| format!("not a list: {cells}"))?
        .iter()
        .map(|cell| {
            let shard = cell["shard"]
                .as_u64()
                .and_then(|shard| u32::try_from(shard).ok());
            let owner = cell["owner"].as_str();
            let lease = cell["lease"].as_str();
            match (shard, owner, lease) {
                (Some(shard), Some(owner), Some(lease)) => {
                    Ok((shard, (owner.to_owned(), lease.to_owned())))
                }
                _ => Err(format!("a cell without its data attributes: {cell}")),
            }
        })
        .collect()
}

/// How many times the page has drawn a state (its `data-renders`).
async fn renders(browser: &mut Browser) -> u64 {
    browser
        .evaluate("Number(document.body.dataset.renders)")
        .await
        .expect("read the render count")
        .as_u64()
        .expect("a count")
}

/// The workspace's `target` directory (`$CARGO_TARGET_DIR` when set).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}
