//! The demo's nodes: `shardmesh gateway` and `shardmesh consumer` processes of this same
//! binary, configured through one file, logging to files, read through `/metrics`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long a node may take from spawn to its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// `GUILDS`, `GUILD_MEMBERS`, `GUILD_PRESENCES`, `GUILD_MESSAGES`, `GUILD_MESSAGE_TYPING`: every
/// kind of event the simulator generates, so what it dispatches is the rate asked for.
const INTENTS: u64 = 1 | (1 << 1) | (1 << 8) | (1 << 9) | (1 << 11);
/// How long one `/metrics` request may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(2);

/// What every node of the demo cluster shares, written once as `node.toml`.
#[derive(Debug, Clone)]
pub struct ClusterFile {
    pub cluster: String,
    pub partitions: u32,
    pub shards: u32,
    pub max_concurrency: u16,
    pub store_path: PathBuf,
    pub broker_url: String,
    pub token: String,
    pub sim_addr: String,
    pub group: String,
}

impl ClusterFile {
    /// The TOML text. Leases and membership are short so a killed node's shards move
    /// within seconds; consumers checkpoint often so a restart repeats nothing.
    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "[cluster]\nname = {}\npartitions = {}\nshard_count = {}\nmax_concurrency = {}\n",
            quote(&self.cluster),
            self.partitions,
            self.shards,
            self.max_concurrency
        );
        text.push_str("[node]\nhttp_bind = \"127.0.0.1:0\"\n\n");
        let _ = writeln!(
            text,
            "[store]\nbackend = \"sqlite\"\n\n[store.sqlite]\npath = {}\n",
            quote(&self.store_path.display().to_string())
        );
        let _ = writeln!(
            text,
            "[broker]\nurl = {}\nconnect_timeout_ms = 3000\nbackoff_min_ms = 50\nbackoff_max_ms = 1000\n",
            quote(&self.broker_url)
        );
        text.push_str(
            "[lease]\nduration_ms = 3000\nrenew_interval_ms = 900\nfence_margin_ms = 300\n\n\
             [membership]\nannounce_interval_ms = 300\nnode_timeout_ms = 1500\nsettle_delay_ms = 600\n\n",
        );
        let _ = writeln!(
            text,
            "[gateway]\ntoken = {}\nintents = {INTENTS}\ngateway_url = {}\napi_url = {}\n",
            quote(&self.token),
            quote(&format!("ws://{}", self.sim_addr)),
            quote(&format!("http://{}", self.sim_addr))
        );
        let _ = writeln!(
            text,
            "[consumer]\ngroup = {}\ncheckpoint_every_events = 100\ncheckpoint_every_ms = 200\n\
             handler_attempts = 10\nhandler_backoff_min_ms = 50\nhandler_backoff_max_ms = 1000",
            quote(&self.group)
        );
        text
    }
}

fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// The two roles the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Consumer,
}

/// A running (or ended) node process.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub pid: u32,
    pub http: SocketAddr,
    pub log: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
}

impl Node {
    /// Starts `shardmesh --config <config> gateway` (or `consumer --group G --sink
    /// <sink>`) named `name`, logging to `<dir>/<name>.log`, and waits for its
    /// `listening on` line.
    pub async fn start(
        name: &str,
        role: Role,
        config: &Path,
        dir: &Path,
        sink: &str,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let exe = std::env::current_exe().context("locating the shardmesh binary")?;
        let mut command = Command::new(exe);
        command.arg("--config").arg(config);
        match role {
            Role::Gateway => command.arg("gateway"),
            Role::Consumer => command.args(["consumer", "--sink", sink]),
        };
        // The file is the whole configuration: variables meant for the user's own
        // nodes must not leak into the demo's.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SHARDMESH__") {
                command.env_remove(key);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .env("SHARDMESH__NODE__ID", name)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Whatever ends the demo (an error, a panic, Ctrl-C) takes its nodes along.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {name}"))?;
        let pid = child.id().context("a started node has a pid")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let http = match tokio::time::timeout(START_TIMEOUT, listening_line(&mut lines)).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(error)) => bail!(
                "node {name} did not start: {error} (log: {})",
                log.display()
            ),
            Err(_) => bail!(
                "node {name} printed no `listening on` line within {START_TIMEOUT:?} (log: {})",
                log.display()
            ),
        };
        // The rest of stdout goes to the log, so a full pipe never blocks the node
        // (rare, short lines: a blocking append is fine).
        let mut copy = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .with_context(|| format!("reopening {}", log.display()))?;
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = writeln!(copy, "[stdout] {line}");
            }
        });
        Ok(Self {
            name: name.to_owned(),
            role,
            pid,
            http,
            log,
            child,
            exit: None,
        })
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// How it ended, if it did.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// SIGKILL, and reap it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("killing node {}", self.name))?;
        self.exit = self.child.try_wait().ok().flatten();
        Ok(())
    }

    /// SIGTERM (the node drains), then waits up to `timeout`; a node still running
    /// then is killed. Returns whether it exited by itself, successfully.
    pub async fn terminate(&mut self, timeout: Duration) -> bool {
        if !self.is_running() {
            return self.exit.is_some_and(|status| status.success());
        }
        signal(self.pid, "TERM");
        if let Ok(Ok(status)) = tokio::time::timeout(timeout, self.child.wait()).await {
            self.exit = Some(status);
            status.success()
        } else {
            let _ = self.kill().await;
            false
        }
    }

    /// The sum of one metric's samples whose labels contain `labels` (empty: all).
    pub async fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let body = get(self.http, "/metrics").await.ok()?;
        Some(metric_sum(&body, name, labels))
    }
}

/// Sends `kill -<name> pid` through the `kill` tool: the workspace forbids `unsafe`,
/// and nothing else in std sends a signal other than SIGKILL.
fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

async fn listening_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> anyhow::Result<SocketAddr> {
    while let Some(line) = lines.next_line().await? {
        if let Some(addr) = line.trim().strip_prefix("listening on http://") {
            return addr
                .parse()
                .with_context(|| format!("bad address in {line:?}"));
        }
    }
    bail!("it exited")
}

/// `GET path` over HTTP/1.0, read to the end: enough for `/metrics` on loopback.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let request = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(METRICS_TIMEOUT, request).await??;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no end of headers");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// Sums the samples of `name` (Prometheus text format) whose label set contains
/// `labels`, e.g. `phase="active"`.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_set) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name && label_set.contains(labels))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_matching_label_sets_only() {
        let text = "# HELP shardmesh_gateway_shards shards by phase\n\
                    shardmesh_gateway_shards{phase=\"active\"} 5\n\
                    shardmesh_gateway_shards{phase=\"resuming\"} 2\n\
                    shardmesh_gateway_shards_owned 7\n";
        assert!(
            (metric_sum(text, "shardmesh_gateway_shards", "phase=\"active\"") - 5.0).abs() < 1e-9
        );
        assert!((metric_sum(text, "shardmesh_gateway_shards", "") - 7.0).abs() < 1e-9);
        assert!((metric_sum(text, "shardmesh_gateway_shards_owned", "") - 7.0).abs() < 1e-9);
        assert!(metric_sum(text, "missing", "").abs() < 1e-9);
    }

    #[test]
    fn cluster_file_is_valid_toml_with_every_section() {
        let file = ClusterFile {
            cluster: "demo-1".into(),
            partitions: 8,
            shards: 16,
            max_concurrency: 16,
            store_path: PathBuf::from("/tmp/a \"b\"/store.sqlite"),
            broker_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            token: "t".into(),
            sim_addr: "127.0.0.1:1".into(),
            group: "demo".into(),
        };
        let text = file.to_toml();
        for section in [
            "[cluster]",
            "[store.sqlite]",
            "[lease]",
            "[gateway]",
            "[consumer]",
        ] {
            assert!(text.contains(section), "{text}");
        }
        assert!(
            text.contains(r#"path = "/tmp/a \"b\"/store.sqlite""#),
            "{text}"
        );
    }
}
