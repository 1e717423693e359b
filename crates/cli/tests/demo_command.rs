//! `shardmesh demo` as a user runs it: a real process with its own simulator, gateway
//! and consumer nodes, a gateway killed (SIGKILL) and a consumer restarted under traffic,
//! on the machine's RabbitMQ or, when none runs, on a private one it starts.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Start-up, 15 s of traffic, catch-up and stop fit well within this.
const DEADLINE: Duration = Duration::from_secs(120);

/// A finished demo: its output, and everything a failed assertion should show.
struct Run {
    output: Output,
    stdout: String,
    stderr: String,
    context: String,
}

/// Runs `shardmesh demo ARGS` with `env`, as a user at a shell would (no `RUST_LOG`).
async fn demo(args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardmesh"))
        .arg("demo")
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("shardmesh demo ran over {DEADLINE:?}"))
        .expect("shardmesh demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let context = format!(
        "exit {}, took {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
        started.elapsed()
    );
    Run {
        output,
        stdout,
        stderr,
        context,
    }
}

impl Run {
    /// Checks the run succeeded with nothing lost and nothing twice, its timeline
    /// happened, and only the demo's own lines were printed; returns the dispatches.
    fn assert_exactly_once(&self) -> u64 {
        let context = &self.context;
        assert!(self.output.status.success(), "{context}");
        let verdict = self
            .stdout
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
        // The timeline happened: a gateway killed, a consumer restarted.
        assert!(self.stderr.contains("SIGKILL gateway-2"), "{context}");
        assert!(self.stderr.contains("started consumer-3"), "{context}");
        // Only the demo's own lines: no log lines of its libraries, no colour codes.
        let stray: Vec<&str> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|line| {
                line.contains('\u{1b}')
                    || [" INFO ", " WARN ", " ERROR ", " DEBUG "]
                        .iter()
                        .any(|level| line.contains(level))
            })
            .collect();
        assert!(stray.is_empty(), "stray log lines: {stray:#?}\n{context}");
        dispatched
    }
}

#[tokio::test]
async fn demo_delivers_every_dispatch_exactly_once_through_a_kill_and_a_restart() {
    let broker = shardmesh_harness::require_broker().await;
    let run = demo(
        &[
            "--duration-secs",
            "15",
            "--rate",
            "300",
            "--broker-url",
            &broker,
        ],
        &[],
    )
    .await;
    let dispatched = run.assert_exactly_once();
    // Every shard's READY and 20 GUILD_CREATEs (336), then traffic: the simulator's rate
    // is a ceiling a loaded machine may not reach, so ask for a modest share of it.
    assert!(
        dispatched > 1_500,
        "too little traffic to prove much\n{}",
        run.context
    );
}

#[tokio::test]
async fn without_a_running_rabbitmq_the_demo_starts_a_private_one() {
    assert!(
        shardmesh_harness::PrivateBroker::installed(),
        "this test needs RabbitMQ installed (apt-get install -y rabbitmq-server)"
    );
    // Nothing listens on port 1: the default-style local broker is not running.
    let nowhere = [(
        "SHARDMESH__BROKER__URL",
        "amqp://guest:guest@127.0.0.1:1/%2f",
    )];
    let run = demo(&["--duration-secs", "6", "--rate", "100"], &nowhere).await;
    assert!(
        run.stderr
            .contains("RabbitMQ is not running at 127.0.0.1:1")
            && run.stderr.contains("starting a private one for this run"),
        "{}",
        run.context
    );
    run.assert_exactly_once();
}

#[tokio::test]
async fn a_remote_broker_that_does_not_answer_is_one_clear_line() {
    // 192.0.2.0/24 is reserved for documentation: nothing answers there.
    let remote = [(
        "SHARDMESH__BROKER__URL",
        "amqp://guest:guest@192.0.2.1:5672/%2f",
    )];
    let run = demo(&["--duration-secs", "6"], &remote).await;
    assert!(!run.output.status.success(), "{}", run.context);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.context);
    assert!(
        run.stderr.contains("192.0.2.1:5672") && run.stderr.contains("pass another --broker-url"),
        "{}",
        run.context
    );
}
