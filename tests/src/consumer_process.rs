//! `shardmesh consumer` as a real process: started from a config file with a group and
//! an HTTP sink, its stderr (the logs) captured to a file, its HTTP endpoints read,
//! stopped by SIGTERM (drain) or SIGKILL (crash).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::http::{self, Metrics, Response};
use crate::process::binary;

/// How long a node may take from spawn to its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Log level of the nodes unless `SHARDMESH_TEST_LOG` says otherwise.
const DEFAULT_LOG: &str = "info";

/// A running (or ended) `shardmesh --config <file> consumer --group G --sink URL`.
#[derive(Debug)]
pub struct ConsumerProcess {
    id: String,
    group: String,
    child: Child,
    pid: u32,
    http: SocketAddr,
    log: PathBuf,
    exit: Option<ExitStatus>,
    /// When it was killed with SIGKILL, if it was.
    killed_at: Option<Instant>,
}

impl ConsumerProcess {
    /// Starts consumer node `id` of `group` posting to `sink` (an `http://` URL), and
    /// waits for its `listening on http://ADDR` line on stdout.
    ///
    /// # Panics
    ///
    /// When the process cannot be spawned, exits, or prints no such line within 30 s;
    /// the message carries the end of its log.
    pub async fn start(id: &str, group: &str, sink: &str, config: &Path, log: &Path) -> Self {
        let stderr = std::fs::File::create(log).expect("the node's log file");
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(config)
            .args(["consumer", "--group", group, "--sink", sink])
            .env(
                "RUST_LOG",
                std::env::var("SHARDMESH_TEST_LOG").unwrap_or_else(|_| DEFAULT_LOG.into()),
            )
            .env_remove("RUST_BACKTRACE")
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
                        "consumer {id} printed no `listening on` line within {START_TIMEOUT:?}\n{}",
                        tail(log, 30)
                    )
                }
            };
            if let Ok(Some(line)) = line {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    break addr.trim().parse::<SocketAddr>().unwrap_or_else(|error| {
                        panic!("consumer {id}: bad address in {line:?}: {error}")
                    });
                }
            } else {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                panic!(
                    "consumer {id} closed stdout before `listening on` (exit: {status:?})\n{}",
                    tail(log, 30)
                );
            }
        };
        // Whatever else it prints goes to the log too, so a full pipe never blocks it.
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
            group: group.to_owned(),
            child,
            pid,
            http,
            log: log.to_owned(),
            exit: None,
            killed_at: None,
        }
    }

    /// The node id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When it was killed with SIGKILL, if it was.
    pub fn killed_at(&self) -> Option<Instant> {
        self.killed_at
    }

    /// `GET path` on the node.
    ///
    /// # Errors
    ///
    /// What failed, as text.
    pub async fn get(&self, path: &str) -> Result<Response, String> {
        http::get(self.http, path)
            .await
            .map_err(|error| format!("consumer {}: {error}", self.id))
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
                "consumer {}: /metrics answered {}: {}",
                self.id, response.status, response.body
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
                "consumer {} not ready ({}): {}",
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
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .expect("the kill tool runs");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid);
        let Ok(status) = tokio::time::timeout(timeout, self.child.wait()).await else {
            let _ = self.child.kill().await;
            panic!(
                "consumer {} did not exit within {timeout:?} of SIGTERM\n{}",
                self.id,
                self.log_tail(30)
            );
        };
        let status = status.expect("waiting for the node");
        self.exit = Some(status);
        status
    }

    /// Sends SIGKILL (a crash: no hand-over, no final checkpoint) and reaps the process.
    ///
    /// # Panics
    ///
    /// When the process cannot be killed.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("SIGKILL the consumer");
        self.killed_at = Some(Instant::now());
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

    /// The last `lines` lines of the log, headed by the node id.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "----- consumer {} of group {} ({}) -----\n{}",
            self.id,
            self.group,
            self.log.display(),
            tail(&self.log, lines)
        )
    }
}

/// The last `lines` lines of the file at `path`.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
