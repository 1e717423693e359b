//! A RabbitMQ node of one's own: its own ports, data directory and node name, so that
//! restarting it disturbs nobody else (the broker-restart test), or so that a machine
//! with RabbitMQ installed but not running can still run the demo.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Where Debian's package puts the server and its control tool. The wrappers in
/// `/usr/sbin` switch to the `rabbitmq` user, which needs root; these run as the caller.
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CONTROL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// How long a node may take to accept connections (a cold Erlang start on a loaded
/// machine takes several seconds).
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A private RabbitMQ node, stopped (and its directory removed) on drop.
pub struct PrivateBroker {
    dir: tempfile::TempDir,
    node: String,
    port: u16,
    dist_port: u16,
    server: Option<tokio::process::Child>,
}

impl PrivateBroker {
    /// Whether RabbitMQ's server is installed where Debian's package puts it.
    pub fn installed() -> bool {
        Path::new(SERVER).exists()
    }

    /// Starts a node on free ports and waits until it accepts AMQP connections.
    ///
    /// # Errors
    ///
    /// Why it could not start: not installed, or it did not answer within a minute (its
    /// log's path is in the message).
    pub async fn start() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("sm-broker-")
            .tempdir()
            .map_err(|error| format!("creating the broker's directory: {error}"))?;
        for (file, text) in [
            ("rabbitmq.conf", "loopback_users = none\n"),
            ("env.conf", ""),
            ("enabled_plugins", "[].\n"),
        ] {
            std::fs::write(dir.path().join(file), text)
                .map_err(|error| format!("writing the broker's {file}: {error}"))?;
        }
        let port = free_port()?;
        let dist_port = free_port()?;
        let node = format!("sm-{}-{port}@localhost", std::process::id());
        let mut broker = Self {
            dir,
            node,
            port,
            dist_port,
            server: None,
        };
        broker.boot().await?;
        Ok(broker)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the node gracefully and waits for it to exit.
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl stop` fails.
    pub async fn stop(&mut self) -> Result<(), String> {
        let status = self
            .command(CONTROL)
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .map_err(|error| format!("running {CONTROL}: {error}"))?;
        if !status.success() {
            return Err(format!("rabbitmqctl stop failed: {status}"));
        }
        if let Some(mut server) = self.server.take() {
            let exited = tokio::time::timeout(Duration::from_secs(30), server.wait()).await;
            if exited.is_err() {
                let _ = server.kill().await;
            }
        }
        Ok(())
    }

    /// Starts the node again on the same ports and data.
    ///
    /// # Errors
    ///
    /// As [`PrivateBroker::start`].
    pub async fn restart(&mut self) -> Result<(), String> {
        self.boot().await
    }

    async fn boot(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("server.out");
        let log = std::fs::File::create(&log_path)
            .map_err(|error| format!("creating {}: {error}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("{}: {error}", log_path.display()))?;
        let server = self
            .command(SERVER)
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                format!("cannot start {SERVER} ({error}): apt-get install -y rabbitmq-server")
            })?;
        let server = self.server.insert(server);
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port);
            if lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                .await
                .is_ok()
            {
                return Ok(());
            }
            let exited = server.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                return Err(format!(
                    "private RabbitMQ {} did not start ({}); see {}",
                    self.node,
                    exited.map_or_else(|| "no answer within 60 s".into(), |s| s.to_string()),
                    log_path.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let dir: PathBuf = self.dir.path().into();
        let mut command = tokio::process::Command::new(program);
        command
            .env("HOME", &dir)
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("env.conf"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .current_dir(&dir);
        command
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // A graceful stop, bounded: a caller that failed must not hang in its clean-up.
        let stopping = std::process::Command::new(CONTROL)
            .env("HOME", self.dir.path())
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.path().join("env.conf"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut stopping) = stopping {
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(stopping.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = stopping.kill();
        }
        let _ = server.start_kill();
    }
}

/// A port that was free a moment ago (the OS picks it).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("finding a free port: {error}"))
}
