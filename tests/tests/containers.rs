//! The mesh in containers, as README's container section runs it: the image built from
//! `Dockerfile`, `compose.yaml` with the SQLite and simulator overrides, RabbitMQ in a
//! container, 2 gateway and 2 consumer containers. Under traffic the gateways are
//! scaled to 3, one gateway container is killed (`docker kill`, SIGKILL), one consumer
//! is drained (`docker stop`), and the nodes are upgraded to a new image with `up -d`
//! (each container drains, its replacement resumes); the simulator's tally then judges
//! every dispatch against what the consumers delivered. Last, a bad setting: the nodes
//! stop with the host's one-line error, in `docker compose logs`, and restart with
//! Docker's growing delay rather than in a tight loop.
//!
//! Needs Docker (scripts/test installs docker.io and docker-compose, starts dockerd and
//! makes the Debian base image when run as root); fails, saying so, without it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use shardmesh_tests::compose::{self, ComposeProject};
use shardmesh_tests::{eventually, get, post_json, unique_name, wait_until};

const SHARDS: u64 = 16;
/// Long enough for a killed gateway's leases to lapse (10 s) and its shards to be
/// resumed elsewhere, with room for a loaded CI machine.
const MOVE_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_mesh_loses_nothing_across_scale_kill_stop_and_upgrade() {
    compose::require_docker();
    let name = unique_name("compose");
    // Dropped last: the project's containers go before the image they run.
    let image = compose::images(&name);
    let upgrade = compose::Image::tagged(&image, "upgrade");
    let project = ComposeProject::new(
        &name,
        &["compose.yaml", "compose.sqlite.yaml", "compose.sim.yaml"],
        &[
            ("SHARDMESH_IMAGE", &image.0),
            ("RABBITMQ_IMAGE", compose::RABBITMQ_IMAGE),
            ("SIM_SHARDS", &SHARDS.to_string()),
            ("SIM_RATE", "200"),
            // Empty: Docker picks free host ports (a test may run beside a user's mesh).
            ("SIM_PORT", ""),
            ("SIM_TALLY_PORT", ""),
        ],
    );
    scylla_services_are_valid(&project);

    project.ok(&["up", "-d", "--scale", "gateway=2", "--scale", "consumer=2"]);
    assert_eq!(
        project.containers("scylla"),
        Vec::<String>::new(),
        "the SQLite override starts no ScyllaDB"
    );
    let sim = project.published("sim", 7100);
    let tally = project.published("sim", 7101);
    let started = eventually(
        "16 sessions on the 2 gateways and events delivered",
        MOVE_TIMEOUT,
        async || {
            let stats = stats(sim).await?;
            let verdict = verdict(tally).await?;
            if stats["connections"] == SHARDS && verdict["delivered"].as_u64() > Some(200) {
                Ok(stats)
            } else {
                Err(format!("stats {stats}, tally {verdict}"))
            }
        },
    )
    .await;
    assert_eq!(started["identifies"], SHARDS, "{started}");

    // A third gateway: the assignment moves shards to it, each by RESUME.
    project.ok(&[
        "up",
        "-d",
        "--no-recreate",
        "--scale",
        "gateway=3",
        "--scale",
        "consumer=2",
    ]);
    let gateways = project.containers("gateway");
    assert_eq!(gateways.len(), 3, "{gateways:?}");
    let held = shards_spread_over(&gateways, "the third gateway took its share").await;
    // Whichever container is the new one, it holds at least the fewest shards.
    let fewest = held.iter().copied().min().unwrap_or(0);
    let scaled = resumed(sim, fewest, "the third gateway's shards were resumed").await;

    // SIGKILL the gateway container holding the most shards: they resume on the others.
    let (victim, lost_shards) = held
        .iter()
        .enumerate()
        .max_by_key(|&(_, &count)| count)
        .map(|(index, &count)| (gateways[index].clone(), count))
        .expect("three gateways");
    compose::run_ok("docker", &["kill", &victim], &[]);
    let survivors: Vec<String> = gateways.into_iter().filter(|id| *id != victim).collect();
    shards_spread_over(&survivors, "the killed gateway's shards moved").await;
    let after_kill = resumed(
        sim,
        scaled["resumes"].as_u64().unwrap_or(0) + lost_shards,
        "each of the killed gateway's shards was resumed",
    )
    .await;
    eprintln!(
        "scaled to 3 gateways {held:?}, killed one with {lost_shards} shards: {} resumes, {} identifies",
        after_kill["resumes"], after_kill["identifies"]
    );

    a_consumer_drains(&project, tally).await;
    the_nodes_are_upgraded(&project, &upgrade.0, sim, tally).await;
    every_dispatch_delivered_once(sim, tally).await;
    a_bad_setting_stops_the_nodes_with_one_line(&project).await;
}

/// `docker stop`s one consumer under traffic (SIGTERM: it drains and exits 0); the
/// other one carries on.
async fn a_consumer_drains(project: &ComposeProject, tally: SocketAddr) {
    let consumers = project.containers("consumer");
    compose::run_ok("docker", &["stop", "-t", "30", &consumers[0]], &[]);
    assert_eq!(
        compose::inspect(&consumers[0], "{{.State.ExitCode}}"),
        "0",
        "a stopped consumer drains and exits 0"
    );
    delivers_more(tally, "the remaining consumer delivers after the drain").await;
}

/// Upgrades the nodes as README says: a new image, then `up -d` for the node services,
/// which replaces each container (the old one drains, the new one resumes).
async fn the_nodes_are_upgraded(
    project: &ComposeProject,
    image: &str,
    sim: SocketAddr,
    tally: SocketAddr,
) {
    let before = stats(sim).await.expect("the simulator answers");
    project.ok_with(
        &[
            "up",
            "-d",
            "--no-deps",
            "--scale",
            "gateway=2",
            "--scale",
            "consumer=2",
            "gateway",
            "consumer",
        ],
        &[("SHARDMESH_IMAGE", image)],
    );
    for service in ["gateway", "consumer"] {
        for container in project.containers(service) {
            assert_eq!(
                compose::inspect(&container, "{{.Config.Image}}"),
                image,
                "{service} {container} runs the new image"
            );
        }
    }
    let gateways = project.containers("gateway");
    shards_spread_over(&gateways, "the upgraded gateways hold every shard").await;
    resumed(
        sim,
        before["resumes"].as_u64().unwrap_or(0) + SHARDS,
        "every shard was resumed on an upgraded gateway",
    )
    .await;
    delivers_more(tally, "the upgraded consumers deliver").await;
}

/// Waits until the tally has 400 more deliveries than now (2 s of traffic).
async fn delivers_more(tally: SocketAddr, what: &str) {
    let now = verdict(tally).await.expect("the tally answers")["delivered"]
        .as_u64()
        .unwrap_or(0);
    eventually(what, MOVE_TIMEOUT, async || {
        let delivered = verdict(tally).await?["delivered"].as_u64().unwrap_or(0);
        if delivered > now + 400 {
            Ok(())
        } else {
            Err(format!("{delivered} delivered, {now} before"))
        }
    })
    .await;
}

/// Stops the traffic and judges: every dispatch delivered once, no IDENTIFY beyond
/// the first ones.
async fn every_dispatch_delivered_once(sim: SocketAddr, tally: SocketAddr) {
    post_json(sim, "/_sim/traffic/stop", "", None)
        .await
        .expect("stopping the traffic");
    let verdict = eventually(
        "every dispatch delivered once traffic stopped",
        MOVE_TIMEOUT,
        async || {
            let verdict = verdict(tally).await?;
            if verdict["lost"] == 0 && verdict["dispatched"].as_u64() > Some(1_000) {
                Ok(verdict)
            } else {
                Err(verdict.to_string())
            }
        },
    )
    .await;
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert_eq!(verdict["duplicates"], 0, "{verdict}");
    let end = stats(sim).await.expect("the simulator answers");
    assert_eq!(
        end["identifies"], SHARDS,
        "every move was a RESUME, no IDENTIFY spent: {end}"
    );
    eprintln!("{}", verdict["line"]);
}

/// Waits until `gateways` hold every shard between them, each at least one, and
/// returns how many each holds.
async fn shards_spread_over(gateways: &[String], what: &str) -> Vec<u64> {
    eventually(what, MOVE_TIMEOUT, async || {
        let mut held = Vec::new();
        for gateway in gateways {
            let metrics = compose::node_metrics(gateway)?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            held.push(metrics.get("shardmesh_gateway_shards_owned").unwrap_or(0.0) as u64);
        }
        if held.iter().sum::<u64>() == SHARDS && held.iter().all(|&count| count > 0) {
            Ok(held)
        } else {
            Err(format!("shards held: {held:?}"))
        }
    })
    .await
}

/// Waits until every shard is connected and at least `resumes` RESUMEs were answered,
/// and checks that no IDENTIFY was spent beyond the first ones; returns the stats then.
async fn resumed(sim: SocketAddr, resumes: u64, what: &str) -> Value {
    let stats = eventually(what, MOVE_TIMEOUT, async || {
        let stats = stats(sim).await?;
        if stats["connections"] == SHARDS && stats["resumes"].as_u64() >= Some(resumes) {
            Ok(stats)
        } else {
            Err(format!("{stats}, waiting for {resumes} resumes"))
        }
    })
    .await;
    assert_eq!(
        stats["identifies"], SHARDS,
        "{what}, with no IDENTIFY: {stats}"
    );
    stats
}

/// The ScyllaDB services cannot run here (no image can be pulled, Debian has no
/// package), so they are checked as compose reads them: the base file runs ScyllaDB and
/// its schema before any node. (That the SQLite override leaves it out is checked on
/// the running project.)
fn scylla_services_are_valid(project: &ComposeProject) {
    let scylla = ComposeProject::reader(project.name(), &["compose.yaml"]);
    let services = scylla.ok(&["config", "--services"]);
    for service in ["rabbitmq", "scylla", "store-init", "gateway", "consumer"] {
        assert!(
            services.lines().any(|line| line == service),
            "{service} in {services}"
        );
    }
    let config = scylla.ok(&["config"]);
    for needed in [
        "SHARDMESH__STORE__BACKEND: scylla",
        "SHARDMESH__STORE__SCYLLA__NODES: scylla:9042",
        "condition: service_completed_successfully",
    ] {
        assert!(config.contains(needed), "{needed} in\n{config}");
    }
    eprintln!(
        "ScyllaDB cannot run on this machine (no image registry, no Debian package): its \
         services were checked with `config`, the scenario runs on the SQLite store"
    );
}

/// A cluster name the nodes refuse: each container prints the host's one-line error and
/// exits 1, and Docker restarts it after a delay that doubles (100 ms, 200 ms, ...).
async fn a_bad_setting_stops_the_nodes_with_one_line(project: &ComposeProject) {
    let bad = [("SHARDMESH_CLUSTER", "Not A Name")];
    let host = compose::run(
        shardmesh_tests::binary().to_str().expect("utf-8 path"),
        &["gateway"],
        &[("SHARDMESH__CLUSTER__NAME", "Not A Name")],
    );
    let host_error = String::from_utf8_lossy(&host.stderr).trim().to_owned();
    assert!(host_error.starts_with("error: "), "{host_error}");

    project.ok_with(
        &["up", "-d", "--no-deps", "--scale", "gateway=1", "gateway"],
        &bad,
    );
    let gateway = project.containers("gateway").remove(0);
    let starts = wait_until(
        "the misconfigured gateway restarted 4 times",
        Duration::from_secs(60),
        || {
            let count: u32 = compose::inspect(&gateway, "{{.RestartCount}}")
                .parse()
                .unwrap_or(0);
            if count >= 4 {
                Ok(count)
            } else {
                Err(format!("{count} restarts"))
            }
        },
    )
    .await;
    let logs = project.ok_with(&["logs", "--no-color", "gateway"], &bad);
    let errors: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("error: "))
        .collect();
    assert!(
        errors.len() >= 4 && errors.iter().all(|line| line.ends_with(&host_error)),
        "each start printed the host's error {host_error:?}:\n{logs}"
    );
    // Docker's delay before restart n is 100 ms * 2^n: 4 restarts take at least 1.5 s
    // (a tight loop of a process that fails at once would take a few hundred ms).
    let started = compose::inspect(&gateway, "{{.Created}} {{.State.StartedAt}}");
    let (created, last) = started.split_once(' ').expect("two timestamps");
    let span = seconds_between(created, last);
    assert!(
        span >= 1.5,
        "{starts} restarts in {span:.2} s: the restarts are not backed off"
    );
}

/// Seconds from RFC 3339 timestamp `from` to `to` (the same day, as Docker prints them).
fn seconds_between(from: &str, to: &str) -> f64 {
    let seconds = |stamp: &str| -> f64 {
        let time = stamp
            .split('T')
            .nth(1)
            .expect("a time")
            .trim_end_matches('Z');
        let mut parts = time.split(':');
        let mut total = 0.0;
        for scale in [3_600.0, 60.0, 1.0] {
            total += scale
                * parts
                    .next()
                    .and_then(|p| p.parse::<f64>().ok())
                    .unwrap_or(0.0);
        }
        total
    };
    let span = seconds(to) - seconds(from);
    if span < 0.0 { span + 86_400.0 } else { span }
}

async fn stats(sim: SocketAddr) -> Result<Value, String> {
    json(sim, "/_sim/stats").await
}

async fn verdict(tally: SocketAddr) -> Result<Value, String> {
    json(tally, "/verdict").await
}

async fn json(addr: SocketAddr, path: &str) -> Result<Value, String> {
    let response = get(addr, path).await?;
    if response.status != 200 {
        return Err(format!("{path}: {} {}", response.status, response.body));
    }
    serde_json::from_str(&response.body).map_err(|error| format!("{path}: {error}"))
}
