//! The Grafana dashboard in `deploy/grafana/shardmesh.json` queries only metrics the
//! nodes really serve: a gateway node and a consumer node run under traffic, and every
//! metric name in every panel's query must be a sample name one of their `/metrics`
//! scrapes holds. A renamed or removed metric fails here instead of leaving an empty
//! panel in someone's Grafana.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use shardmesh_tests::consumers::ConsumerNodes;
use shardmesh_tests::sink::Sink;
use shardmesh_tests::{
    ConsumerTuning, NodeProcess, TestCluster, Timings, broker_url, eventually, sim_config,
};

const SHARDS: u32 = 4;
const PARTITIONS: u32 = 2;
/// Any single wait of the scenario.
const WAIT: Duration = Duration::from_secs(60);
/// Every metric the nodes serve carries this prefix; anything else in an expression is
/// the query language's (functions, label names) or Grafana's.
const METRIC_PREFIX: &str = "shardmesh_";

/// The dashboard as committed, relative to this package (`tests/`).
fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/shardmesh.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path} is not JSON: {error}"))
}

/// One Prometheus query of the dashboard and where it is, for failure messages.
struct Query {
    place: String,
    expr: String,
}

/// Every panel that is not a row, rows' folded panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    let mut pending: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("the dashboard has a panels array")
        .iter()
        .collect();
    while let Some(panel) = pending.pop() {
        if panel["type"] == "row" {
            // A collapsed row keeps its panels inside it.
            pending.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            found.push(panel);
        }
    }
    found
}

/// The panels' and the template variables' queries; panics on a panel without one.
fn queries(dashboard: &Value) -> Vec<Query> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default().trim();
            assert!(
                !expr.is_empty(),
                "panel {title:?} target {} has no expr",
                target["refId"]
            );
            queries.push(Query {
                place: format!("panel {title:?} target {}", target["refId"]),
                expr: expr.to_owned(),
            });
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("the dashboard has templating.list")
    {
        if variable["type"] == "query" {
            queries.push(Query {
                place: format!("variable {}", variable["name"]),
                expr: variable["query"]
                    .as_str()
                    .expect("a query variable's query is text")
                    .to_owned(),
            });
        }
    }
    queries
}

/// A Prometheus query with its string literals blanked out, so label values
/// (`phase="active"`, `instance=~"$gateway"`) are never taken for metric names.
fn outside_strings(expr: &str) -> String {
    let mut code = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == open {
                quote = None;
                code.push(c);
                continue;
            }
            code.push(' ');
        } else {
            if matches!(c, '"' | '\'' | '`') {
                quote = Some(c);
            }
            code.push(c);
        }
    }
    code
}

/// The identifiers of `code` (Prometheus metric names may hold `:`).
fn identifiers(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
}

/// The metric names `expr` queries.
fn metric_names(expr: &str) -> BTreeSet<String> {
    identifiers(&outside_strings(expr))
        .filter(|word| word.starts_with(METRIC_PREFIX))
        .map(str::to_owned)
        .collect()
}

/// The `$name` / `${name}` variables `text` uses, Grafana's own (`$__rate_interval`)
/// left out.
fn variables_used(text: &str) -> BTreeSet<String> {
    text.split('$')
        .skip(1)
        .map(|after| {
            let after = after.strip_prefix('{').unwrap_or(after);
            after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty() && !name.starts_with("__"))
        .collect()
}

/// The sample names of a Prometheus/OpenMetrics text scrape: what a query's selector can
/// match (`_total` on counters, `_bucket`/`_sum`/`_count` on histograms, as served).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Each sample name `nodes` serve right now, with the ids of the nodes serving it.
async fn served(nodes: &[&NodeProcess]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut served: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in nodes {
        let response = node.get("/metrics").await?;
        if response.status != 200 {
            return Err(format!(
                "{} /metrics answered {}",
                node.id(),
                response.status
            ));
        }
        for name in sample_names(&response.body) {
            served.entry(name).or_default().push(node.id().to_owned());
        }
    }
    Ok(served)
}

#[test]
fn the_dashboard_is_a_dashboard_whose_panels_all_query_something() {
    let dashboard = dashboard();
    for field in ["title", "uid"] {
        assert!(
            dashboard[field]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "the dashboard has no {field}"
        );
    }
    assert!(
        dashboard["schemaVersion"].as_u64().is_some(),
        "the dashboard has no schemaVersion"
    );
    let panels = panels(&dashboard);
    assert!(!panels.is_empty(), "the dashboard has no panels");

    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let id = panel["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel {title:?} reuses id {id}");
        // The datasource is the dashboard's variable, so the file imports into any
        // Grafana whatever its Prometheus datasource is called.
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {title:?} names a datasource of its own"
        );
    }

    let defined: BTreeSet<String> = dashboard["templating"]["list"]
        .as_array()
        .expect("the dashboard has templating.list")
        .iter()
        .filter_map(|variable| variable["name"].as_str().map(str::to_owned))
        .collect();
    for query in queries(&dashboard) {
        assert!(
            !metric_names(&query.expr).is_empty(),
            "{} queries no shardmesh metric: {}",
            query.place,
            query.expr
        );
        let undefined: Vec<String> = variables_used(&query.expr)
            .difference(&defined)
            .cloned()
            .collect();
        assert!(
            undefined.is_empty(),
            "{} uses undefined variables {undefined:?}: {}",
            query.place,
            query.expr
        );
    }
}

#[test]
fn the_extractor_reads_metric_names_and_not_label_values() {
    let names = metric_names(
        r#"sum by (phase) (shardmesh_gateway_shards{instance=~"shardmesh_x", phase="a\"b"})
           / ignoring(shard) rate(shardmesh_consumer_delivered_total[$__rate_interval])"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "shardmesh_consumer_delivered_total".to_owned(),
            "shardmesh_gateway_shards".to_owned(),
        ])
    );
    assert_eq!(
        variables_used(r#"x{a=~"$cluster", b=~"${gateway}"}[$__rate_interval]"#),
        BTreeSet::from(["cluster".to_owned(), "gateway".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_served_by_a_node() {
    let dashboard = dashboard();
    let wanted: Vec<(String, String)> = queries(&dashboard)
        .into_iter()
        .flat_map(|query| {
            metric_names(&query.expr)
                .into_iter()
                .map(move |name| (query.place.clone(), name))
        })
        .collect();

    // Heartbeats every second, so every shard reports a latency within the wait.
    let sim = shardmesh_sim::SimConfig {
        heartbeat_interval_ms: 1_000,
        ..sim_config(SHARDS, SHARDS, 100.0)
    };
    let mut cluster = TestCluster::start("grafana", sim, PARTITIONS, Timings::FAST).await;
    cluster.start_nodes(&["g1"]).await;
    cluster.wait_settled(SHARDS as usize, WAIT).await;
    cluster.wait_ready_at_sim(WAIT).await;
    let mut consumers = ConsumerNodes::new(
        &cluster,
        Sink::start(None).await,
        ConsumerTuning::PER_EVENT,
        &broker_url(),
    );
    consumers.start(&[("c1", "a")]).await;
    consumers.wait_settled("a", WAIT).await;

    let gateway = cluster.fleet.node("g1");
    let consumer = consumers.fleet.node("c1");
    let served = eventually(
        "every metric the dashboard queries served by g1 or c1, with traffic flowing",
        WAIT,
        async || {
            let served = served(&[gateway, consumer]).await?;
            let missing: Vec<String> = wanted
                .iter()
                .filter(|(_, name)| !served.contains_key(name))
                .map(|(place, name)| format!("{place}: {name}"))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "not served: {missing:#?}\nserved: {:#?}",
                    served.keys()
                ));
            }
            // Traffic end to end: the scrapes are of nodes doing the work the dashboard
            // shows, not of idle ones.
            let gateway_events = gateway
                .metrics()
                .await?
                .count("shardmesh_gateway_events_total");
            let delivered = consumer
                .metrics()
                .await?
                .count("shardmesh_consumer_delivered_total");
            if gateway_events == 0 || delivered == 0 {
                return Err(format!(
                    "g1 queued {gateway_events} events, c1 handled {delivered}"
                ));
            }
            Ok(served)
        },
    )
    .await;

    let queried: BTreeSet<&str> = wanted.iter().map(|(_, name)| name.as_str()).collect();
    let unused: Vec<&String> = served
        .keys()
        .filter(|name| !queried.contains(name.as_str()))
        .collect();
    println!(
        "grafana: the dashboard queries {} metrics, all served; served and not on the \
         dashboard: {unused:?}",
        queried.len()
    );
    drop(consumers);
    cluster.finish().await;
}
