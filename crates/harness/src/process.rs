//! A `shardmesh` node (`gateway`, `consumer`) as a real process: started from a config
//! file, its stderr (the logs) captured to a file, its HTTP endpoints read, stopped by
//! SIGTERM or SIGKILL. The scenarios' fleets and the demo's nodes are all this type.

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
    built(
        Path::new("shardmesh"),
        "run `cargo build -p shardmesh-cli` first (`cargo test --workspace` builds it), \
         or set SHARDMESH_BIN",
    )
}

/// Example `name` of crate `package`: `target/<profile>/examples/<name>`.
///
/// # Panics
///
/// When it is not there, saying how to build it.
pub fn example(package: &str, name: &str) -> PathBuf {
    built(
        &Path::new("examples").join(name),
        &format!(
            "run `cargo build -p {package} --example {name}` first \
             (`cargo test --workspace` builds it)"
        ),
    )
}

/// `relative` under `target/<profile>`, found from the running test executable
/// (`target/<profile>/deps/...`).
fn built(relative: &Path, how_to_build: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join(relative))
        .expect("the test executable lives in target/<profile>/deps");
    assert!(
        path.is_file(),
        "{} is not built: {how_to_build}",
        path.display()
    );
    path
}

/// A running (or ended) `shardmesh --config <file> <command ...>` node process: a
/// gateway or a consumer, from a test's fleet or the demo's.
#[derive(Debug)]
pub struct NodeProcess {
    id: String,
    /// How messages name it: the subcommand (`gateway`, `consumer`).
    role: String,
    /// The consumer group, for a consumer.
    group: Option<String>,
    child: Child,
    pid: u32,
    http: SocketAddr,
    log: PathBuf,
    exit: Option<ExitStatus>,
    /// When it was killed with SIGKILL, if it was.
    killed_at: Option<Instant>,
    /// How it was started, to start it again as a supervisor would.
    launched: Relaunch,
}

/// An owned copy of a node's [`Launch`] and binary.
#[derive(Debug, Clone)]
struct Relaunch {
    binary: PathBuf,
    command: Vec<String>,
    config: PathBuf,
    env: Vec<(String, String)>,
    /// How many times it was started before: names the next life's log.
    lives: u32,
}

/// What to start: `<binary> --config <config> <command ...>`, named `id`, its stderr (the
/// logs) to `log`, with `env` added to an environment from which inherited
/// `SHARDMESH__…` variables are removed (the file is the whole configuration).
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The node's name in messages (and usually its `node.id`).
    pub id: &'a str,
    /// The subcommand and its flags, e.g. `["gateway"]`.
    pub command: &'a [&'a str],
    /// The config file.
    pub config: &'a Path,
    /// Where its stderr goes.
    pub log: &'a Path,
    /// Variables added to its environment.
    pub env: &'a [(&'a str, &'a str)],
}

impl NodeProcess {
    /// Starts `shardmesh --config <config> gateway` and waits for its
    /// `listening on http://ADDR` line.
    ///
    /// # Panics
    ///
    /// When the process cannot be spawned, exits, or prints no such line within 30 s;
    /// the message carries the end of its log.
    pub async fn gateway(id: &str, config: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        Self::start(id, &["gateway"], config, log, env).await
    }

    /// Starts consumer node `id` of `group` posting to `sink` (an `http://` URL).
    ///
    /// # Panics
    ///
    /// As [`NodeProcess::gateway`].
    pub async fn consumer(id: &str, group: &str, sink: &str, config: &Path, log: &Path) -> Self {
        let command = ["consumer", "--group", group, "--sink", sink];
        let mut node = Self::start(id, &command, config, log, &[]).await;
        node.group = Some(group.to_owned());
        node
    }

    /// Starts `shardmesh --config <config> <command...>` of [`binary`] and waits for
    /// its `listening on http://ADDR` line on stdout.
    ///
    /// # Panics
    ///
    /// As [`NodeProcess::gateway`].
    pub async fn start(
        id: &str,
        command: &[&str],
        config: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let launch = Launch {
            id,
            command,
            config,
            log,
            env,
        };
        Self::spawn(&binary(), launch)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Starts `launch` of the `shardmesh` binary at `binary` and waits (up to 30 s) for
    /// its `listening on http://ADDR` line on stdout. The log level is
    /// `$SHARDMESH_TEST_LOG`, else `$RUST_LOG`, else `info`.
    ///
    /// # Errors
    ///
    /// When the process cannot be spawned, exits, or prints no such line in time; the
    /// message carries the end of its log.
    pub async fn spawn(binary: &Path, launch: Launch<'_>) -> Result<Self, String> {
        let Launch {
            id,
            command,
            config,
            log,
            env,
        } = launch;
        let role = command.first().copied().unwrap_or("node").to_owned();
        let stderr = std::fs::File::create(log)
            .map_err(|error| format!("cannot create {}: {error}", log.display()))?;
        let mut process = Command::new(binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SHARDMESH__") {
                process.env_remove(key);
            }
        }
        let log_level = std::env::var("SHARDMESH_TEST_LOG")
            .or_else(|_| std::env::var("RUST_LOG"))
            .unwrap_or_else(|_| DEFAULT_LOG.into());
        let mut child = process
            .arg("--config")
            .arg(config)
            .args(command)
            .env("RUST_LOG", log_level)
            .env_remove("RUST_BACKTRACE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Whatever ends the test or the demo (an error, a panic) takes its nodes along.
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let pid = child.id().ok_or("a running child has a pid")?;
        let http = listening_addr(&mut child, &format!("{role} {id}"), log).await?;
        Ok(Self {
            id: id.to_owned(),
            role,
            group: None,
            child,
            pid,
            http,
            log: log.to_owned(),
            exit: None,
            killed_at: None,
            launched: Relaunch {
                binary: binary.to_owned(),
                command: command.iter().map(|part| (*part).to_owned()).collect(),
                config: config.to_owned(),
                env: env
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect(),
                lives: 1,
            },
        })
    }

    /// Starts the same node again (binary, command, config, environment), as a
    /// supervisor restarts a process that ended; its log goes to `<log>.<life>`.
    ///
    /// # Errors
    ///
    /// As [`NodeProcess::spawn`].
    pub async fn start_again(&self) -> Result<Self, String> {
        let launched = &self.launched;
        let command: Vec<&str> = launched.command.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = launched
            .env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let life = launched.lives + 1;
        let log = PathBuf::from(format!("{}.{life}", self.log.display()));
        let launch = Launch {
            id: &self.id,
            command: &command,
            config: &launched.config,
            log: &log,
            env: &env,
        };
        let mut node = Self::spawn(&launched.binary, launch).await?;
        node.group.clone_from(&self.group);
        node.launched.lives = life;
        Ok(node)
    }

    /// The subcommand it runs (`gateway`, `consumer`).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// How it ended, if it has (as last seen by [`NodeProcess::try_exit`] or a stop).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// The consumer group, for a consumer started with [`NodeProcess::consumer`].
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// When it was killed with SIGKILL, if it was.
    pub fn killed_at(&self) -> Option<Instant> {
        self.killed_at
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
        self.try_terminate(timeout)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Sends SIGTERM (drain) unless it has ended already, and waits up to `timeout`.
    ///
    /// # Errors
    ///
    /// When the signal cannot be sent, or the process outlives `timeout` (it is then
    /// killed), with the end of its log.
    pub async fn try_terminate(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.try_exit() {
            return Ok(status);
        }
        self.signal("TERM")?;
        let Ok(status) = tokio::time::timeout(timeout, self.child.wait()).await else {
            let _ = self.child.kill().await;
            return Err(format!(
                "{} {} did not exit within {timeout:?} of SIGTERM\n{}",
                self.role,
                self.id,
                self.log_tail(30)
            ));
        };
        let status =
            status.map_err(|error| format!("waiting for {} {}: {error}", self.role, self.id))?;
        self.exit = Some(status);
        Ok(status)
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
        self.killed_at = Some(Instant::now());
    }

    /// Sends SIGSTOP: the process is frozen where it stands (no renewal, no handler
    /// call, no checkpoint) until [`NodeProcess::thaw`] or a kill, so a test can look
    /// at what it left in the store knowing it cannot change under the look.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent.
    pub fn freeze(&self) {
        self.signal("STOP")
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Sends SIGCONT: a frozen process runs on.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent.
    pub fn thaw(&self) {
        self.signal("CONT")
            .unwrap_or_else(|error| panic!("{error}"));
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
            file_tail(&self.log, lines)
        )
    }

    /// `kill -<signal> <pid>` (the `kill` tool: the workspace forbids `unsafe`, and std
    /// sends no signal but SIGKILL).
    fn signal(&self, signal: &str) -> Result<(), String> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .map_err(|error| format!("the kill tool does not run: {error}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {} failed: {status}", self.pid))
        }
    }
}

/// Reads the piped stdout of `child` (called `name` in messages) until its
/// `listening on http://ADDR` line, for up to 30 s, and returns ADDR; whatever it
/// prints after that is appended to `log`, where its stderr goes too. Every process
/// the tests start that serves HTTP on a port of its choosing says so this way.
///
/// # Errors
///
/// When stdout is not piped, closes first or stays silent too long, or the address
/// does not parse; the message carries the end of `log`.
pub async fn listening_addr(
    child: &mut Child,
    name: &str,
    log: &Path,
) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            () = tokio::time::sleep_until(deadline) => {
                return Err(format!(
                    "{name} printed no `listening on` line within {START_TIMEOUT:?}\n{}",
                    file_tail(log, 30)
                ));
            }
        };
        if let Ok(Some(line)) = line {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr
                    .trim()
                    .parse::<SocketAddr>()
                    .map_err(|error| format!("{name}: bad address in {line:?}: {error}"))?;
            }
        } else {
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            return Err(format!(
                "{name} closed stdout before `listening on` (exit: {status:?})\n{}",
                file_tail(log, 30)
            ));
        }
    };
    // Whatever else it prints goes to the log too, so a full pipe never blocks it
    // (rare, short lines: a blocking append is fine).
    let mut copy = std::fs::OpenOptions::new()
        .append(true)
        .open(log)
        .map_err(|error| format!("cannot reopen {}: {error}", log.display()))?;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(copy, "[stdout] {line}");
        }
    });
    Ok(addr)
}

/// The last `lines` lines of the file at `path`.
pub fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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
    finish(spawn_command(config, &["gateway"], env), timeout).await
}

/// Starts `shardmesh --config <config> <command...>` (`ctl drain g2`, ...) with
/// `RUST_LOG=off`, stdout and stderr piped, killed when dropped.
///
/// # Panics
///
/// When it cannot be spawned.
pub fn spawn_command(config: &Path, command: &[&str], env: &[(&str, &str)]) -> Child {
    let mut process = Command::new(binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHARDMESH__") {
            process.env_remove(key);
        }
    }
    process
        .arg("--config")
        .arg(config)
        .args(command)
        .env("RUST_LOG", "off")
        .env_remove("RUST_BACKTRACE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary().display()))
}

/// Waits for `child` (from [`spawn_command`]) to end and collects what it printed.
///
/// # Panics
///
/// When it runs longer than `timeout` (it is then killed).
pub async fn finish(child: Child, timeout: Duration) -> Finished {
    let started = Instant::now();
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`shardmesh` still runs after {timeout:?}"))
        .expect("waiting for shardmesh");
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}
