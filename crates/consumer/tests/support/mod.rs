//! Test harness: a real RabbitMQ topology and a real SQLite store per test under a
//! unique cluster name, consumer nodes run in-process as [`ConsumerNode`]s started from
//! plain settings (the way `shardmesh consumer` starts one), and a recording handler.

#![allow(dead_code, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardmesh_broker::{
    BrokerConfig, BrokerUrl, Outgoing, Publisher, StartAt, StreamId, StreamReader, Topology,
};
use shardmesh_consumer::{
    ConsumerConfig, ConsumerCounters, ConsumerNode, ConsumerSettings, Delivery, Handler,
};
use shardmesh_harness::{broker_url, require_broker, unique_name, wait_for};
use shardmesh_mesh::{ClusterSettings, LeaseConfig, MembershipConfig, MeshSettings, NodeSettings};
use shardmesh_proto::{DeadLetter, EventBatch, EventEnvelope, EventId};
use shardmesh_store::{SqliteConfig, SqliteStore, Store, StoreConfig};
use tokio_util::sync::CancellationToken;

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn broker() -> BrokerConfig {
    BrokerConfig {
        url: BrokerUrl::new(broker_url()),
        connect_timeout_ms: 3_000,
        backoff_min_ms: 20,
        backoff_max_ms: 500,
        ..BrokerConfig::default()
    }
}

/// Quick leases, so hand-overs and take-overs happen within a test's patience.
pub fn lease() -> LeaseConfig {
    LeaseConfig {
        duration_ms: 3_000,
        renew_interval_ms: 500,
        fence_margin_ms: 500,
    }
}

pub fn membership() -> MembershipConfig {
    MembershipConfig {
        announce_interval_ms: 100,
        node_timeout_ms: 1_000,
        settle_delay_ms: 300,
    }
}

/// A consumer config for `group` with quick retries.
pub fn consumer(group: &str) -> ConsumerConfig {
    ConsumerConfig {
        group: group.into(),
        checkpoint_every_events: 20,
        checkpoint_every_ms: 200,
        handler_attempts: 3,
        handler_backoff_min_ms: 1,
        handler_backoff_max_ms: 10,
        ..ConsumerConfig::default()
    }
}

/// A `MESSAGE_CREATE` envelope as a gateway publishes it, with a payload twilight-model
/// parses.
pub fn message_create(
    shard: u32,
    shard_count: u32,
    epoch: u64,
    session: &str,
    seq: u64,
) -> EventEnvelope {
    let guild = 81_384_788_765_712_384_u64 + u64::from(shard);
    let id = 1_100_000_000_000_000_000_u64 + u64::from(shard) * 1_000_000 + seq;
    let payload = format!(
        r#"{{"t":"MESSAGE_CREATE","s":{seq},"op":0,"d":{{"id":"{id}","type":0,"channel_id":"{channel}","guild_id":"{guild}","author":{{"id":"80351110224678912","username":"nelly","discriminator":"0","global_name":"Nelly","avatar":null}},"member":{{"roles":[],"joined_at":"2024-01-01T00:00:00.000000+00:00","deaf":false,"mute":false,"flags":0,"nick":null}},"content":"message {session}/{seq} on shard {shard}","timestamp":"2024-05-01T12:00:00.000000+00:00","edited_timestamp":null,"tts":false,"mention_everyone":false,"mentions":[],"mention_roles":[],"attachments":[],"embeds":[],"components":[],"pinned":false,"flags":0}}}}"#,
        channel = guild + 1,
    );
    EventEnvelope {
        shard,
        shard_count,
        epoch,
        session: session.into(),
        seq,
        event_type: "MESSAGE_CREATE".into(),
        guild_id: Some(guild),
        received_at_ms: unix_ms(),
        payload,
    }
}

pub use shardmesh_harness::unix_ms;

/// One test's cluster: its streams, its store file, and a publisher standing in for
/// the gateway nodes.
pub struct Cluster {
    pub name: String,
    pub topology: Topology,
    pub store_config: SqliteConfig,
    publisher: Publisher,
    seq: u64,
    groups: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A fresh cluster of `partitions` streams whose dead-letter streams for `groups`
    /// are deleted at the end. Panics if RabbitMQ is not there.
    pub async fn new(prefix: &str, partitions: u32, groups: &[&str]) -> Self {
        require_broker().await;
        let name = unique_name(prefix);
        let mut topology = Topology::new(&name, partitions, &broker()).unwrap();
        for group in groups {
            topology = topology.with_dead_letters(group);
        }
        let publisher = Publisher::connect(&broker(), &topology, CancellationToken::new())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        Self {
            name,
            topology,
            store_config: SqliteConfig {
                path: dir.path().join("store.sqlite"),
                ..SqliteConfig::default()
            },
            publisher,
            seq: 0,
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            _dir: dir,
        }
    }

    pub async fn store(&self) -> Arc<SqliteStore> {
        Arc::new(
            SqliteStore::open(&self.store_config, &self.name)
                .await
                .unwrap(),
        )
    }

    /// Publishes one batch of `events` to the partition of their shard, confirmed.
    pub async fn publish(&mut self, events: Vec<EventEnvelope>) {
        let partition = events[0].shard % self.topology.partitions();
        let batch = EventBatch::new(partition, "gateway-test", events);
        self.publish_raw(partition, shardmesh_proto::encode(&batch).unwrap())
            .await;
    }

    /// Publishes `bytes` as one message of `partition`, confirmed.
    pub async fn publish_raw(&mut self, partition: u32, bytes: Vec<u8>) {
        self.seq += 1;
        self.publisher
            .publish(Outgoing {
                stream: StreamId::Events(partition),
                source: partition,
                seq: self.seq,
                payload: bytes,
            })
            .await
            .unwrap();
        self.publisher.flush().await.unwrap();
        let handed_back = self.publisher.take_events();
        assert!(handed_back.is_empty(), "not stored: {handed_back:?}");
    }

    /// Publishes `per_shard` events of each of `shards` shards (session `s<shard>`,
    /// seq 1..), in batches of 1 to 4 events.
    pub async fn publish_traffic(&mut self, shards: u32, per_shard: u64) -> u64 {
        for shard in 0..shards {
            let mut seq = 1;
            while seq <= per_shard {
                let size = (seq % 4 + 1).min(per_shard - seq + 1);
                let events = (seq..seq + size)
                    .map(|seq| message_create(shard, shards, 1, &format!("s{shard}"), seq))
                    .collect();
                self.publish(events).await;
                seq += size;
            }
        }
        u64::from(shards) * per_shard
    }

    /// Everything in `group`'s dead-letter stream, waiting until there are `count`.
    pub async fn dead_letters(&self, group: &str, count: usize) -> Vec<(u64, DeadLetter)> {
        let mut reader = StreamReader::connect(
            &broker(),
            &self.topology,
            StreamId::DeadLetter(group.into()),
            StartAt::First,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let mut letters = Vec::new();
        while letters.len() < count {
            let message = tokio::time::timeout(DEADLINE, reader.next())
                .await
                .expect("dead letters missing")
                .unwrap();
            letters.push((
                message.offset,
                shardmesh_proto::decode::<DeadLetter>(&message.payload).unwrap(),
            ));
        }
        reader.close().await;
        letters
    }

    /// Starts consumer node `name` of `config.group` with `handler`: the cluster's
    /// partitions, store, broker and quick timings, no HTTP face.
    pub fn start<H: Handler>(&self, name: &str, config: ConsumerConfig, handler: H) -> Node<H> {
        let settings = ConsumerSettings {
            mesh: MeshSettings {
                cluster: ClusterSettings {
                    name: self.name.clone(),
                    partitions: self.topology.partitions(),
                    ..ClusterSettings::default()
                },
                node: NodeSettings {
                    id: name.into(),
                    capacity: 1,
                    http_bind: String::new(),
                },
                store: StoreConfig {
                    sqlite: self.store_config.clone(),
                    ..StoreConfig::default()
                },
                broker: broker(),
                lease: lease(),
                membership: membership(),
            },
            role: config,
        };
        Node {
            name: name.into(),
            node: ConsumerNode::spawn(settings, handler, &CancellationToken::new()),
        }
    }

    /// Deletes the cluster's streams and store rows.
    pub async fn finish(self) {
        self.store().await.delete_cluster().await.unwrap();
        self.publisher.close().await;
        let mut topology = self.topology.clone();
        for group in &self.groups {
            topology = topology.with_dead_letters(group);
        }
        topology.delete(&broker()).await.unwrap();
    }
}

/// A consumer node running in this process.
pub struct Node<H> {
    pub name: String,
    node: ConsumerNode<H>,
}

impl<H: Handler> Node<H> {
    /// How many partitions the node holds, by its mesh status.
    pub fn owns(&self) -> usize {
        self.node.status().borrow().owns.len()
    }

    /// The node's counters since start.
    pub fn counters(&self) -> ConsumerCounters {
        self.node.counters()
    }

    /// Drains the node (as on SIGTERM): the mesh hands every partition over, then the
    /// node leaves.
    pub async fn drain(mut self) {
        tokio::time::timeout(DEADLINE, self.node.stop())
            .await
            .expect("node did not drain")
            .expect("node stopped cleanly");
    }

    /// Waits until `expected` events were delivered or dead-lettered, drains the node,
    /// and returns its counters as they were when the last one was settled.
    pub async fn settle_then_drain(self, expected: u64) -> ConsumerCounters {
        wait_for("every event delivered or dead-lettered", DEADLINE, || {
            let counters = self.node.counters();
            counters.delivered + counters.dead_lettered >= expected
        })
        .await;
        let counters = self.node.counters();
        self.drain().await;
        counters
    }

    /// Ends the node as a crash would: no hand-over, no leaving announcement, its
    /// partitions stopped mid-event, its leases left to expire.
    pub async fn kill(self) {
        tokio::time::timeout(DEADLINE, self.node.crash())
            .await
            .expect("partitions did not stop");
    }
}

/// One handler call as the recorder saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub node: String,
    pub id: EventId,
    pub epoch: u64,
    pub partition: u32,
    pub offset: u64,
}

/// Every handler call of a test, across nodes, in call order. A std Mutex: never held
/// across an await.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<Seen>>,
}

impl Recorder {
    pub fn record(&self, node: &str, delivery: &Delivery) {
        self.calls.lock().unwrap().push(Seen {
            node: node.into(),
            id: delivery.id(),
            epoch: delivery.epoch(),
            partition: delivery.partition(),
            offset: delivery.offset(),
        });
    }

    pub fn calls(&self) -> Vec<Seen> {
        self.calls.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Calls per event id.
    pub fn counts(&self) -> HashMap<EventId, usize> {
        let mut counts = HashMap::new();
        for seen in self.calls() {
            *counts.entry(seen.id).or_default() += 1;
        }
        counts
    }

    /// Asserts every shard's events came in seq order, and returns the seqs per
    /// `(shard, session)`.
    pub fn assert_in_order(&self) -> BTreeMap<(u32, String), Vec<u64>> {
        let mut per_shard: BTreeMap<(u32, String), Vec<u64>> = BTreeMap::new();
        for seen in self.calls() {
            per_shard
                .entry((seen.id.shard, seen.id.session.clone()))
                .or_default()
                .push(seen.id.seq);
        }
        for (shard, seqs) in &per_shard {
            assert!(
                seqs.windows(2).all(|pair| pair[0] < pair[1]),
                "shard {shard:?} out of order: {seqs:?}"
            );
        }
        per_shard
    }
}

/// A handler that records every call and succeeds, optionally after a pause.
pub fn recording(
    node: &str,
    recorder: &Arc<Recorder>,
    pause: Duration,
) -> impl Handler<Error = String> {
    let node = node.to_owned();
    let recorder = Arc::clone(recorder);
    move |delivery: Delivery| {
        recorder.record(&node, &delivery);
        async move {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            // A real handler would read the typed event; so does this one.
            delivery
                .event()
                .map(drop)
                .map_err(|error| error.to_string())
        }
    }
}

impl Recorder {
    /// Like [`Recorder::assert_in_order`], with an event's retries right after it.
    pub fn assert_in_order_allowing_retries(&self) {
        let mut last: BTreeMap<(u32, String), u64> = BTreeMap::new();
        for seen in self.calls() {
            let key = (seen.id.shard, seen.id.session.clone());
            if let Some(previous) = last.get(&key) {
                assert!(
                    *previous <= seen.id.seq,
                    "shard {key:?}: {} after {previous}",
                    seen.id.seq
                );
            }
            last.insert(key, seen.id.seq);
        }
    }
}
