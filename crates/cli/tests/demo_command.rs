//! `shardmesh demo` as a user runs it: a real process with its own simulator, gateway
//! and consumer nodes, a gateway killed (SIGKILL) and a consumer restarted under traffic.

use std::process::Stdio;
use std::time::{Duration, Instant};

/// Start-up, 15 s of traffic, catch-up and stop fit well within this.
const DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn demo_delivers_every_dispatch_exactly_once_through_a_kill_and_a_restart() {
    let broker = shardmesh_harness::require_broker().await;
    let started = Instant::now();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardmesh"))
        .args([
            "demo",
            "--duration-secs",
            "15",
            "--rate",
            "300",
            "--broker-url",
        ])
        .arg(&broker)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("shardmesh demo ran over {DEADLINE:?}"))
        .expect("shardmesh demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!(
        "exit {}, took {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
        started.elapsed()
    );
    assert!(output.status.success(), "{context}");

    let verdict = stdout
        .lines()
        .find_map(|line| line.strip_prefix("verdict: "))
        .unwrap_or_else(|| panic!("no verdict line\n{context}"));
    let numbers: Vec<u64> = verdict
        .split(", ")
        .map(|part| {
            part.split_once(' ')
                .and_then(|(n, _)| n.parse().ok())
                .unwrap_or_else(|| panic!("unreadable verdict {verdict:?}"))
        })
        .collect();
    let [dispatched, delivered, lost, duplicates] = numbers[..] else {
        panic!(
            "verdict {verdict:?} is not `N dispatched, N delivered, N lost, N duplicates`\n{context}"
        );
    };
    assert!(verdict.ends_with(" 0 lost, 0 duplicates"), "{context}");
    assert_eq!((lost, duplicates), (0, 0), "{context}");
    assert_eq!(dispatched, delivered, "{context}");
    // Every shard's READY and 20 GUILD_CREATEs (336), then traffic: the simulator's rate
    // is a ceiling a loaded machine may not reach, so ask for a modest share of it.
    assert!(
        dispatched > 1_500,
        "too little traffic to prove much\n{context}"
    );
    // The timeline happened: a gateway killed, a consumer restarted.
    assert!(stderr.contains("SIGKILL gateway-2"), "{context}");
    assert!(stderr.contains("started consumer-3"), "{context}");
}
