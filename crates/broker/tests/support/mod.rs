//! The broker tests' own pieces on top of `shardmesh-harness`: configs with quick
//! reconnects, a proxied broker, a private broker node, and encoded batches.

#![allow(dead_code, clippy::missing_panics_doc)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use shardmesh_broker::{BrokerConfig, BrokerUrl, Outgoing, PublisherEvent, Topology};
// Each test binary uses its own share of these.
#[allow(unused_imports)]
pub use shardmesh_harness::{FaultProxy, unique_name, wait_for, within};
use shardmesh_harness::{broker_authority, require_broker};
use shardmesh_proto::{EventBatch, EventEnvelope};
use tokio_util::sync::CancellationToken;

/// A config for `url` with quick reconnects.
pub fn config_for(url: &str) -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(url),
        connect_timeout_ms: 3_000,
        backoff_min_ms: 20,
        backoff_max_ms: 500,
        ..BrokerConfig::default()
    }
}

/// The shared broker's config; panics with the reason if the broker is unreachable.
pub async fn shared_broker() -> BrokerConfig {
    config_for(&require_broker().await)
}

/// A fault proxy in front of the shared broker, and a config that reaches the broker
/// through it.
pub async fn proxied_broker() -> (FaultProxy, BrokerConfig) {
    let url = require_broker().await;
    let upstream = broker_authority(&url);
    let proxy = FaultProxy::start(&upstream).await;
    let proxied = config_for(&proxy.rewrite(&url, &upstream));
    (proxy, proxied)
}

/// A fresh topology of `partitions` streams on the cluster `unique_cluster(prefix)`.
pub fn topology(prefix: &str, partitions: u32, config: &BrokerConfig) -> Topology {
    Topology::new(&unique_name(prefix), partitions, config).unwrap()
}

/// An encoded one-event batch whose seq is `seq`, padded to about `size` bytes.
pub fn batch(seq: u64, size: usize) -> Vec<u8> {
    let envelope = EventEnvelope {
        shard: 0,
        shard_count: 1,
        epoch: 1,
        session: "s".into(),
        seq,
        event_type: "MESSAGE_CREATE".into(),
        guild_id: None,
        received_at_ms: 0,
        payload: format!("{{\"pad\":\"{}\"}}", "x".repeat(size.saturating_sub(120))),
    };
    shardmesh_proto::encode(&EventBatch::new(0, "test", vec![envelope])).unwrap()
}

/// The seq of a batch made by [`batch`].
pub fn seq_of(batch: &EventBatch) -> u64 {
    batch.events[0].seq
}

/// A RabbitMQ node of the test's own, on its own ports and data directory, so that
/// restarting it disturbs no other test. Stopped (and its directory removed) on drop.
pub struct PrivateBroker {
    dir: tempfile::TempDir,
    node: String,
    port: u16,
    dist_port: u16,
    server: Option<tokio::process::Child>,
}

impl PrivateBroker {
    /// Starts a node and waits until it accepts AMQP connections.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sm-broker-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("rabbitmq.conf"), "loopback_users = none\n").unwrap();
        std::fs::write(dir.path().join("env.conf"), "").unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let port = free_port();
        let dist_port = free_port();
        let node = format!("sm-test-{}-{port}@localhost", std::process::id());
        let mut broker = Self {
            dir,
            node,
            port,
            dist_port,
            server: None,
        };
        broker.boot().await;
        broker
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the node gracefully and waits for it to exit.
    pub async fn stop(&mut self) {
        let status = self
            .command("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "rabbitmqctl stop failed: {status}");
        if let Some(mut server) = self.server.take() {
            let exited = tokio::time::timeout(Duration::from_secs(30), server.wait()).await;
            if exited.is_err() {
                let _ = server.kill().await;
            }
        }
    }

    /// Starts the node again on the same ports and data.
    pub async fn restart(&mut self) {
        self.boot().await;
    }

    async fn boot(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.out")).unwrap();
        let server = self
            .command("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start rabbitmq-server (apt-get install rabbitmq-server)");
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if lapin::Connection::connect(&self.url(), lapin::ConnectionProperties::default())
                .await
                .is_ok()
            {
                return;
            }
            let exited = self.server.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "private broker {} did not start; see {}",
                self.node,
                self.dir.path().join("server.out").display()
            );
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
        // A graceful stop, bounded: a test that failed must not hang in its clean-up.
        let stopping = std::process::Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
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
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Queues handed-back messages for re-publishing, oldest first.
fn collect(
    events: Vec<PublisherEvent>,
    retry: &mut std::collections::VecDeque<Outgoing>,
    run: &mut PublishRun,
) {
    for event in events {
        let messages = match event {
            PublisherEvent::Unconfirmed { messages, .. } => messages,
            PublisherEvent::Returned { message, .. } | PublisherEvent::Nacked { message } => {
                vec![message]
            }
            other => panic!("unexpected event {other:?}"),
        };
        // Handed-back messages are older than anything still waiting for a retry.
        for message in messages.into_iter().rev() {
            run.handed_back.insert(message.seq);
            retry.push_front(message);
        }
    }
}

/// What [`publish_all`] observed.
#[derive(Debug, Default)]
pub struct PublishRun {
    /// Seqs handed back (unconfirmed, returned or nacked) at least once.
    pub handed_back: std::collections::HashSet<u64>,
    /// Connection losses reported through errors.
    pub losses: usize,
    /// Seqs published (`0..published`), all confirmed.
    pub published: u64,
}

/// Publishes seqs `0..count` of source 0 to partition 0, re-publishing everything the
/// publisher hands back before anything new, until all are confirmed. `before(seq)`
/// runs before a new seq is published for the first time; when it returns false, no
/// new seqs are published from there on.
pub async fn publish_all(
    publisher: &mut shardmesh_broker::Publisher,
    count: u64,
    size: usize,
    mut before: impl FnMut(u64) -> bool,
) -> PublishRun {
    use shardmesh_broker::StreamId;
    let mut run = PublishRun::default();
    let mut retry = std::collections::VecDeque::new();
    let mut next = 0;
    loop {
        let message = if let Some(message) = retry.pop_front() {
            message
        } else if next < count && before(next) {
            next += 1;
            Outgoing {
                stream: StreamId::Events(0),
                source: 0,
                seq: next - 1,
                payload: batch(next - 1, size),
            }
        } else {
            let flushed = publisher.flush().await;
            collect(publisher.take_events(), &mut retry, &mut run);
            match flushed {
                Ok(()) if retry.is_empty() => break,
                Ok(()) => continue,
                Err(error) => {
                    assert!(error.is_retryable(), "flush failed: {error}");
                    run.losses += 1;
                    continue;
                }
            }
        };
        let result = publisher.publish(message).await;
        collect(publisher.take_events(), &mut retry, &mut run);
        if let Err(error) = result {
            assert!(error.is_retryable(), "publish failed: {error}");
            run.losses += 1;
        }
    }
    run.published = next;
    assert_eq!(publisher.confirmed(0), next.checked_sub(1));
    run
}

/// Reads partition 0 from the first offset until seq `last` arrives, counting how often
/// each seq occurs.
pub async fn read_until(
    config: &BrokerConfig,
    topology: &Topology,
    last: u64,
    timeout: Duration,
) -> std::collections::HashMap<u64, u32> {
    use shardmesh_broker::{StartAt, StreamId, StreamReader};
    let mut reader = StreamReader::connect(
        config,
        topology,
        StreamId::Events(0),
        StartAt::First,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut seen = std::collections::HashMap::new();
    tokio::time::timeout(timeout, async {
        loop {
            let (_, batch) = reader.next_batch().await.unwrap();
            let seq = seq_of(&batch);
            *seen.entry(seq).or_insert(0) += 1;
            if seq == last {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("seq {last} not read within {timeout:?}"));
    reader.close().await;
    seen
}
