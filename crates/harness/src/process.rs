//! A `shardmesh` node (`gateway`, `consumer`) as a real process: started from a config
//! file, its stderr (the logs) captured to a file, its HTTP endpoints read, stopped by
//! SIGTERM or SIGKILL.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::http::{self, Metrics, Response};

/// How long a node may take from spawn to its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Log level of the nodes unless `SHARDMESH_TEST_LOG` says otherwise.
const DEFAULT_LOG: &str = "info";

/// The `shardmesh` binary: `$SHARDMESH_BIN`, else `target/<profile>/shardmesh` next to
/// the directory of the running test executable (`target/<profile>/deps`).
///
/// # Panics
///
/// When the binary is not there, saying how to build it.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHARDMESH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("shardmesh"))
        .expect("the test executable lives in target/<profile>/deps");
    assert!(
        path.is_file(),
        "the shardmesh binary is not at {}: run `cargo build -p shardmesh-cli` first \
         (`cargo test --workspace` builds it), or set SHARDMESH_BIN",
        path.display()
    );
    path
}

/// A running (or ended) `shardmesh --config <file> <subcommand ...>` node process.
#[derive(Debug)]
pub struct NodeProcess {
    id: String,
    /// How messages name it: `node` for gateways, `consumer` for consumers.
    role: &'static str,
    child: Child,
    pid: u32,
    http: SocketAddr,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl NodeProcess {
    /// Starts `shardmesh --config <config> gateway` and waits for its
    /// `listening on http://ADDR` line.
    ///
    /// Its stderr goes to `log`; `env` is added to its environment.
    ///
    /// # Panics
    ///
    /// When the process cannot be spawned, exits, or prints no such line within 30 s;
    /// the message carries the end of its log.
    pub async fn gateway(id: &str, config: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        Self::start(id, "node", &["gateway"], config, log, env).await
    }

    /// Starts `shardmesh --config <config> <command...>` (called `role` in messages) and
    /// waits for its `listening on http://ADDR` line on stdout.
    ///
    /// # Panics
    ///
    /// As [`NodeProcess::gateway`].
    pub async fn start(
        id: &str,
        role: &'static str,
        command: &[&str],
        config: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let stderr = std::fs::File::create(log).expect("the node's log file");
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(config)
            .args(command)
            .env(
                "RUST_LOG",
                std::env::var("SHARDMESH_TEST_LOG").unwrap_or_else(|_| DEFAULT_LOG.into()),
            )
            .env_remove("RUST_BACKTRACE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary().display()));
        let pid = child.id().expect("a running child has a pid");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + START_TIMEOUT;
        let http = loop {
            let line = tokio::select! {
                line = lines.next_line() => line,
                () = tokio::time::sleep_until(deadline) => {
                    panic!(
                        "{role} {id} printed no `listening on` line within {START_TIMEOUT:?}\n{}",
                        tail(log, 30)
                    )
                }
            };
            if let Ok(Some(line)) = line {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    break addr.trim().parse::<SocketAddr>().unwrap_or_else(|error| {
                        panic!("{role} {id}: bad address in {line:?}: {error}")
                    });
                }
            } else {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                panic!(
                    "{role} {id} closed stdout before `listening on` (exit: {status:?})\n{}",
                    tail(log, 30)
                );
            }
        };
        // Whatever else it prints goes to the log too, so a full pipe never blocks it
        // (rare, short lines: a blocking append is fine).
        let mut copy = std::fs::OpenOptions::new()
            .append(true)
            .open(log)
            .expect("the node's log file reopens");
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = writeln!(copy, "[stdout] {line}");
            }
        });
        Self {
            id: id.to_owned(),
            role,
            child,
            pid,
            http,
            log: log.to_owned(),
            exit: None,
        }
    }

    /// The node id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where `/health`, `/ready` and `/metrics` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// `GET path` on the node.
    ///
    /// # Errors
    ///
    /// What failed, as text.
    pub async fn get(&self, path: &str) -> Result<Response, String> {
        http::get(self.http, path)
            .await
            .map_err(|error| format!("{} {}: {error}", self.role, self.id))
    }

    /// `GET /metrics`, parsed.
    ///
    /// # Errors
    ///
    /// A failed request or a status other than 200.
    pub async fn metrics(&self) -> Result<Metrics, String> {
        let response = self.get("/metrics").await?;
        if response.status != 200 {
            return Err(format!(
                "{} {}: /metrics answered {}: {}",
                self.role, self.id, response.status, response.body
            ));
        }
        Ok(Metrics::parse(&response.body))
    }

    /// Whether `GET /ready` answers 200; `Err` holds the answer otherwise.
    ///
    /// # Errors
    ///
    /// The status and reason the node gave, or why the request failed.
    pub async fn ready(&self) -> Result<(), String> {
        let response = self.get("/ready").await?;
        if response.status == 200 {
            Ok(())
        } else {
            Err(format!(
                "{} {} not ready ({}): {}",
                self.role,
                self.id,
                response.status,
                response.body.trim()
            ))
        }
    }

    /// Sends SIGTERM (drain) and waits up to `timeout` for the process to exit.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent or the process outlives `timeout` (it is then
    /// killed), with the end of its log.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        let Ok(status) = tokio::time::timeout(timeout, self.child.wait()).await else {
            let _ = self.child.kill().await;
            panic!(
                "{} {} did not exit within {timeout:?} of SIGTERM\n{}",
                self.role,
                self.id,
                self.log_tail(30)
            );
        };
        let status = status.expect("waiting for the node");
        self.exit = Some(status);
        status
    }

    /// Sends SIGKILL (a crash: no hand-over, no goodbye) and reaps the process.
    ///
    /// # Panics
    ///
    /// When the process cannot be killed.
    pub async fn kill(&mut self) {
        self.child
            .kill()
            .await
            .unwrap_or_else(|error| panic!("SIGKILL {} {}: {error}", self.role, self.id));
        self.exit = self.child.try_wait().ok().flatten();
    }

    /// The exit status, once the process has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's lines at level ERROR: a clean run and a clean stop have none.
    pub fn error_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| line.split_whitespace().nth(1) == Some("ERROR"))
            .map(str::to_owned)
            .collect()
    }

    /// Where the log is written.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log, headed by the node id.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "----- {} {} ({}) -----\n{}",
            self.role,
            self.id,
            self.log.display(),
            tail(&self.log, lines)
        )
    }

    /// `kill -<signal> <pid>` (the `kill` tool, since this crate forbids `unsafe`).
    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("the kill tool runs");
        assert!(
            status.success(),
            "kill -{signal} {} failed: {status}",
            self.pid
        );
    }
}

/// What a process that is expected to stop by itself did.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// From spawn to exit.
    pub took: Duration,
}

/// Runs `shardmesh --config <config> gateway` to its end, with `RUST_LOG=off` so that
/// stderr holds only what the binary prints itself.
///
/// # Panics
///
/// When it cannot be spawned, or runs longer than `timeout` (it is then killed).
pub async fn run_to_exit(config: &Path, env: &[(&str, &str)], timeout: Duration) -> Finished {
    let started = Instant::now();
    let child = Command::new(binary())
        .arg("--config")
        .arg(config)
        .arg("gateway")
        .env("RUST_LOG", "off")
        .env_remove("RUST_BACKTRACE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary().display()));
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`shardmesh gateway` still runs after {timeout:?}"))
        .expect("waiting for shardmesh");
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// The last `lines` lines of the file at `path`.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
