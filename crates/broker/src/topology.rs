//! A cluster's queues and exchanges, kept as data and declared idempotently on every
//! connect.

use std::sync::Arc;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use shardmesh_proto::InvalidConfig;
use tokio_util::sync::CancellationToken;

use crate::connection::Link;
use crate::{BrokerConfig, Error};

/// A stream of the cluster: an event partition or a consumer group's dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamId {
    /// `shardmesh.<cluster>.events.<partition>`.
    Events(u32),
    /// `shardmesh.<cluster>.dlq.<group>`.
    DeadLetter(String),
}

/// The names and arguments of one cluster's broker objects.
///
/// Everything is namespaced by the cluster name, so several clusters share a broker.
///
/// ```
/// use shardmesh_broker::{BrokerConfig, StreamId, Topology};
///
/// let topology = Topology::new("prod", 16, &BrokerConfig::default())?
///     .with_dead_letters("bots");
/// assert_eq!(topology.stream_name(&StreamId::Events(3)), "shardmesh.prod.events.3");
/// assert_eq!(topology.node_queue("n1"), "shardmesh.prod.node.n1");
/// # Ok::<(), shardmesh_broker::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    cluster: String,
    partitions: u32,
    dead_letter_groups: Vec<String>,
    command_shards: u32,
    max_age: String,
    max_length_bytes: i64,
}

impl Topology {
    /// The topology of cluster `cluster` with `partitions` event streams (from the
    /// store's cluster spec) and the retention of `config`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if the cluster name is empty, longer than 100 bytes or
    /// holds characters other than ASCII letters, digits, `-` and `_`, if `partitions`
    /// is 0, or if `config` is invalid.
    pub fn new(cluster: &str, partitions: u32, config: &BrokerConfig) -> Result<Self, Error> {
        config.validate()?;
        check_name("cluster.name", cluster)?;
        if partitions == 0 {
            return Err(InvalidConfig::new("cluster.partitions", "must be at least 1").into());
        }
        Ok(Self {
            cluster: cluster.to_owned(),
            partitions,
            dead_letter_groups: Vec::new(),
            command_shards: 0,
            max_age: config.max_age.clone(),
            max_length_bytes: i64::try_from(config.max_length_bytes).unwrap_or(i64::MAX),
        })
    }

    /// Adds the dead-letter stream of consumer group `group` to what is declared.
    #[must_use]
    pub fn with_dead_letters(mut self, group: &str) -> Self {
        if !self.dead_letter_groups.iter().any(|g| g == group) {
            self.dead_letter_groups.push(group.to_owned());
        }
        self
    }

    /// Adds the command queues of shards `0..shard_count` to what [`Topology::delete`]
    /// removes (senders and gateway nodes declare them as they use them).
    #[must_use]
    pub fn with_command_queues(mut self, shard_count: u32) -> Self {
        self.command_shards = shard_count;
        self
    }

    /// The command queue of `shard`: durable, single active consumer, read by the
    /// gateway node that holds the shard's lease.
    pub fn command_queue(&self, shard: u32) -> String {
        format!("shardmesh.{}.commands.{shard}", self.cluster)
    }

    /// How many shards' command queues [`Topology::with_command_queues`] added.
    pub fn command_shards(&self) -> u32 {
        self.command_shards
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Number of event partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The queue name of a stream.
    pub fn stream_name(&self, stream: &StreamId) -> String {
        match stream {
            StreamId::Events(partition) => format!("shardmesh.{}.events.{partition}", self.cluster),
            StreamId::DeadLetter(group) => format!("shardmesh.{}.dlq.{group}", self.cluster),
        }
    }

    /// Every stream this topology declares: the partitions, then the dead-letter streams.
    pub fn streams(&self) -> Vec<StreamId> {
        (0..self.partitions)
            .map(StreamId::Events)
            .chain(
                self.dead_letter_groups
                    .iter()
                    .cloned()
                    .map(StreamId::DeadLetter),
            )
            .collect()
    }

    /// The announce exchange (fanout).
    pub fn announce_exchange(&self) -> String {
        format!("shardmesh.{}.announce", self.cluster)
    }

    /// The control exchange (topic: `node.<id>` and `all`).
    pub fn control_exchange(&self) -> String {
        format!("shardmesh.{}.control", self.cluster)
    }

    /// A node's own queue (exclusive, auto-delete).
    pub fn node_queue(&self, node: &str) -> String {
        format!("shardmesh.{}.node.{node}", self.cluster)
    }

    /// The stream queue arguments: type and retention.
    pub(crate) fn stream_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("stream".into()),
        );
        arguments.insert(
            "x-max-age".into(),
            AMQPValue::LongString(self.max_age.as_str().into()),
        );
        arguments.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(self.max_length_bytes),
        );
        arguments
    }

    /// Declares one stream.
    ///
    /// # Errors
    ///
    /// [`Error::InequivalentArgument`] when it exists with other arguments (which also
    /// closes `channel`).
    pub(crate) async fn declare_stream(
        &self,
        channel: &Channel,
        stream: &StreamId,
    ) -> Result<(), Error> {
        let name = self.stream_name(stream);
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                self.stream_arguments(),
            )
            .await
            .map(drop)
            .map_err(|error| Error::amqp("queue.declare", &name, &error))
    }

    /// Declares the command queue of `shard`.
    ///
    /// Durable with a single active consumer: the broker delivers a shard's commands to
    /// one gateway node at a time, in order, and gives what it had not acknowledged to
    /// the next one when it goes.
    pub(crate) async fn declare_command_queue(
        &self,
        channel: &Channel,
        shard: u32,
    ) -> Result<String, Error> {
        let name = self.command_queue(shard);
        let mut arguments = FieldTable::default();
        arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .map_err(|error| Error::amqp("queue.declare", &name, &error))?;
        Ok(name)
    }

    /// Declares every stream of the topology.
    pub(crate) async fn declare_streams(&self, connection: &Connection) -> Result<(), Error> {
        let channel = open_channel(connection).await?;
        for stream in self.streams() {
            self.declare_stream(&channel, &stream).await?;
        }
        let _ = channel.close(200, "declared".into()).await;
        Ok(())
    }

    /// Declares the announce and control exchanges.
    pub(crate) async fn declare_exchanges(&self, channel: &Channel) -> Result<(), Error> {
        for (name, kind) in [
            (self.announce_exchange(), ExchangeKind::Fanout),
            (self.control_exchange(), ExchangeKind::Topic),
        ] {
            channel
                .exchange_declare(
                    name.as_str().into(),
                    kind,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|error| Error::amqp("exchange.declare", &name, &error))?;
        }
        Ok(())
    }

    /// Declares every stream and exchange of the topology on a connection of its own.
    ///
    /// Components declare what they use when they connect; this is for tools and tests.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] if the broker cannot be reached,
    /// [`Error::InequivalentArgument`] for a stream that exists with other arguments.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), shardmesh_broker::Error> {
    /// use shardmesh_broker::{BrokerConfig, Topology};
    ///
    /// let config = BrokerConfig::default();
    /// Topology::new("prod", 16, &config)?.declare(&config).await?;
    /// # Ok(()) }
    /// ```
    pub async fn declare(&self, config: &BrokerConfig) -> Result<(), Error> {
        let mut link = Link::new(
            Arc::new(config.clone()),
            "topology",
            CancellationToken::new(),
        );
        let connection = link.connection().await?;
        self.declare_streams(&connection).await?;
        let channel = open_channel(&connection).await?;
        self.declare_exchanges(&channel).await?;
        link.close().await;
        Ok(())
    }

    /// Deletes every stream and exchange of the topology (node queues go away with their
    /// nodes). Objects that do not exist are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] if the broker cannot be reached; [`Error::Refused`] if it
    /// refuses a delete.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), shardmesh_broker::Error> {
    /// use shardmesh_broker::{BrokerConfig, Topology};
    ///
    /// let config = BrokerConfig::default();
    /// Topology::new("old", 16, &config)?.delete(&config).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, config: &BrokerConfig) -> Result<(), Error> {
        let mut link = Link::new(
            Arc::new(config.clone()),
            "topology",
            CancellationToken::new(),
        );
        let connection = link.connection().await?;
        // queue.delete of a missing queue is a no-op in RabbitMQ; exchange.delete too.
        let channel = open_channel(&connection).await?;
        for stream in self.streams() {
            let name = self.stream_name(&stream);
            channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|error| Error::amqp("queue.delete", &name, &error))?;
        }
        for shard in 0..self.command_shards {
            let name = self.command_queue(shard);
            channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|error| Error::amqp("queue.delete", &name, &error))?;
        }
        for name in [self.announce_exchange(), self.control_exchange()] {
            channel
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(|error| Error::amqp("exchange.delete", &name, &error))?;
        }
        link.close().await;
        Ok(())
    }

    /// Checks whether a queue exists with a passive declare.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it does not; [`Error::Refused`] (resource locked) when it
    /// is another connection's exclusive queue, which means it exists.
    pub async fn queue_exists(config: &BrokerConfig, queue: &str) -> Result<(), Error> {
        let mut link = Link::new(
            Arc::new(config.clone()),
            "topology",
            CancellationToken::new(),
        );
        let connection = link.connection().await?;
        let channel = open_channel(&connection).await?;
        let result = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map(drop)
            .map_err(|error| Error::amqp("queue.declare", queue, &error));
        link.close().await;
        result
    }
}

pub(crate) async fn open_channel(connection: &Connection) -> Result<Channel, Error> {
    connection
        .create_channel()
        .await
        .map_err(|error| Error::ConnectionLost {
            operation: "channel.open",
            reason: error.to_string(),
        })
}

/// Names end up in queue names (at most 255 bytes) and routing keys.
pub(crate) fn check_name(key: &'static str, value: &str) -> Result<(), Error> {
    if value.is_empty()
        || value.len() > 100
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(InvalidConfig::new(
            key,
            format!("`{value}` must be 1-100 ASCII letters, digits, `-` or `_`"),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_namespaced_by_cluster() {
        let topology = Topology::new("c1", 2, &BrokerConfig::default())
            .unwrap()
            .with_dead_letters("bots")
            .with_dead_letters("bots");
        let names: Vec<_> = topology
            .streams()
            .iter()
            .map(|s| topology.stream_name(s))
            .collect();
        assert_eq!(
            names,
            [
                "shardmesh.c1.events.0",
                "shardmesh.c1.events.1",
                "shardmesh.c1.dlq.bots"
            ]
        );
        assert_eq!(topology.announce_exchange(), "shardmesh.c1.announce");
        assert_eq!(topology.control_exchange(), "shardmesh.c1.control");
    }

    #[test]
    fn stream_arguments_carry_retention() {
        let topology = Topology::new("c1", 1, &BrokerConfig::default()).unwrap();
        let arguments = topology.stream_arguments();
        let inner = arguments.inner();
        assert_eq!(
            inner["x-queue-type"],
            AMQPValue::LongString("stream".into())
        );
        assert_eq!(inner["x-max-age"], AMQPValue::LongString("24h".into()));
        assert_eq!(
            inner["x-max-length-bytes"],
            AMQPValue::LongLongInt(5_000_000_000)
        );
    }

    #[test]
    fn bad_cluster_names_are_refused() {
        for bad in ["", "a.b", "a b", "é", &"x".repeat(101)] {
            assert!(
                Topology::new(bad, 1, &BrokerConfig::default()).is_err(),
                "{bad}"
            );
        }
        assert!(Topology::new("ok", 0, &BrokerConfig::default()).is_err());
    }
}
