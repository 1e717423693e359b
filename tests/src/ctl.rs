//! `shardmesh ctl` as an operator runs it: a process of its own with the cluster's
//! config, run to its end; and under a supervisor that restarts the nodes it makes
//! exit, as compose's restart policy would.

use std::path::Path;
use std::time::Duration;

use shardmesh_harness::{Finished, Fleet, finish, spawn_command};
use tokio::time::Instant;

/// Runs `shardmesh --config <config> ctl <args...>` to its end (at most `timeout`).
///
/// # Panics
///
/// When it cannot be started or outlives `timeout`.
pub async fn ctl(config: &Path, args: &[&str], timeout: Duration) -> Finished {
    let command: Vec<&str> = std::iter::once("ctl").chain(args.iter().copied()).collect();
    finish(spawn_command(config, &command, &[]), timeout).await
}

/// Runs `ctl <args...>` while restarting, every 100 ms, each node of `fleet` that
/// exited by itself. Returns what ctl printed and the ids restarted, in order.
///
/// # Panics
///
/// When ctl cannot be started or outlives `timeout`, or a node does not start again.
pub async fn ctl_supervised(
    config: &Path,
    args: &[&str],
    fleet: &mut Fleet,
    timeout: Duration,
) -> (Finished, Vec<String>) {
    let started = Instant::now();
    let command: Vec<&str> = std::iter::once("ctl").chain(args.iter().copied()).collect();
    let mut child = spawn_command(config, &command, &[]);
    let mut restarted = Vec::new();
    let mut supervise = tokio::time::interval(Duration::from_millis(100));
    let deadline = started + timeout;
    loop {
        tokio::select! {
            exited = child.wait() => {
                exited.expect("waiting for ctl");
                break;
            }
            _ = supervise.tick() => {
                restarted.extend(fleet.restart_exited().await);
                assert!(
                    Instant::now() < deadline,
                    "`ctl {}` still runs after {timeout:?}",
                    args.join(" ")
                );
            }
        }
    }
    let mut finished = finish(child, Duration::from_secs(5)).await;
    finished.took = started.elapsed();
    (finished, restarted)
}
