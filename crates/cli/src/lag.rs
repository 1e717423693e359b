//! How far each consumer group is behind: per group and partition, the stream's last
//! offset (from the broker) against the group's checkpoint (from the store), in stream
//! messages and in seconds.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde::Serialize;

use crate::text::{row, span, table, unix_ms};
use shardmesh_broker::{BrokerConfig, StartAt, StreamId, StreamReader, Topology};
use shardmesh_store::{LeaseKey, LeaseState, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a stream's last chunk is read (from its first message) before the last
/// offset seen counts as the tail; also how long an empty stream is given.
const QUIET: Duration = Duration::from_millis(300);

/// One partition of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    /// The consumer group.
    pub group: String,
    /// The partition (stream number).
    pub partition: u32,
    /// The node holding the partition's lease, if any holds it.
    pub owner: Option<String>,
    /// The last offset the group checkpointed; `None` before its first checkpoint.
    pub checkpoint: Option<u64>,
    /// The stream's last offset; `None` for an empty stream.
    pub tail: Option<u64>,
    /// Stream messages after the checkpoint (each holds one or more events).
    pub behind: u64,
    /// Age of the oldest event after the checkpoint, in ms (when its gateway node
    /// received it from Discord); 0 when nothing is behind.
    pub behind_ms: u64,
}

/// Every partition of every group that has a lease row (or of `only`).
///
/// # Errors
///
/// No spec recorded yet, a store that cannot be read, or a broker that cannot be read
/// within `timeout`.
pub async fn measure(
    store: &impl Store,
    broker: &BrokerConfig,
    only: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Vec<PartitionLag>> {
    let spec = store
        .spec()
        .await
        .context("reading the cluster spec")?
        .context("no cluster spec recorded yet: no node has started")?;
    let topology = Topology::new(store.cluster(), spec.partitions, broker)?;
    let mut rows = Vec::new();
    for lease in store.leases().await.context("reading the lease rows")? {
        let LeaseKey::Partition { group, partition } = &lease.key else {
            continue;
        };
        if only.is_some_and(|only| only != group) {
            continue;
        }
        let checkpoint = match &lease.state {
            LeaseState::Partition(checkpoint) => checkpoint.offset,
            _ => None,
        };
        let live = lease.lease_until > SystemTime::now();
        rows.push(PartitionLag {
            group: group.clone(),
            partition: *partition,
            owner: lease.owner.clone().filter(|_| live),
            checkpoint,
            tail: None,
            behind: 0,
            behind_ms: 0,
        });
    }
    if let Some(only) = only
        && rows.is_empty()
    {
        anyhow::bail!("no consumer group {only:?} has partitions in the store");
    }
    let deadline = Instant::now() + timeout;
    let tails = stream_tails(broker, &topology, spec.partitions, deadline).await?;
    for row in &mut rows {
        row.tail = tails.get(&row.partition).copied().flatten();
        let next = row.checkpoint.map_or(0, |checkpoint| checkpoint + 1);
        row.behind = row.tail.map_or(0, |tail| (tail + 1).saturating_sub(next));
        if row.behind > 0 {
            row.behind_ms = oldest_age_ms(broker, &topology, row.partition, next, deadline)
                .await
                .with_context(|| format!("reading partition {} at offset {next}", row.partition))?;
        }
    }
    Ok(rows)
}

/// Each stream's last offset, read at once.
async fn stream_tails(
    broker: &BrokerConfig,
    topology: &Topology,
    partitions: u32,
    deadline: Instant,
) -> anyhow::Result<BTreeMap<u32, Option<u64>>> {
    let reads = (0..partitions).map(|partition| async move {
        let tail = tokio::time::timeout_at(deadline, stream_tail(broker, topology, partition))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "broker {} did not give stream {partition}'s tail in time",
                    broker.url
                )
            })??;
        Ok::<_, anyhow::Error>((partition, tail))
    });
    futures_util::future::try_join_all(reads)
        .await
        .map(|tails| tails.into_iter().collect())
}

/// The last offset of partition `partition`'s stream: the last chunk's messages read
/// until the stream goes quiet.
async fn stream_tail(
    broker: &BrokerConfig,
    topology: &Topology,
    partition: u32,
) -> anyhow::Result<Option<u64>> {
    let mut reader = StreamReader::connect(
        broker,
        topology,
        StreamId::Events(partition),
        StartAt::LastChunk,
        CancellationToken::new(),
    )
    .await?;
    // The last chunk comes at once; under traffic new messages follow without a
    // pause, so reading stops QUIET after the first message whatever comes.
    let mut tail = None;
    let mut until = Instant::now() + QUIET;
    while let Ok(message) = tokio::time::timeout_at(until, reader.next()).await {
        if tail.is_none() {
            until = Instant::now() + QUIET;
        }
        tail = Some(message?.offset);
    }
    reader.close().await;
    Ok(tail)
}

/// How long ago the first event at `offset` was received from Discord.
async fn oldest_age_ms(
    broker: &BrokerConfig,
    topology: &Topology,
    partition: u32,
    offset: u64,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let mut reader = StreamReader::connect(
        broker,
        topology,
        StreamId::Events(partition),
        StartAt::Offset(offset),
        CancellationToken::new(),
    )
    .await?;
    let read = tokio::time::timeout_at(deadline, reader.next_batch()).await;
    reader.close().await;
    let (_, batch) = read.map_err(|_| anyhow::anyhow!("no message within the deadline"))??;
    let received = batch.events.first().map_or(0, |event| event.received_at_ms);
    Ok(unix_ms(SystemTime::now()).saturating_sub(received))
}

/// The partitions as a table; `handled` adds the offset each partition's node reports
/// having handled (newer than the checkpoint between checkpoints), when known.
pub fn render_rows(
    rows: &[PartitionLag],
    handled: &BTreeMap<(String, u32), Option<u64>>,
) -> String {
    let with_handled = !handled.is_empty();
    let offset = |offset: Option<u64>| offset.map_or_else(|| "-".into(), |o| o.to_string());
    let mut lines = vec![row(["GROUP", "PARTITION", "NODE", "CHECKPOINT"])];
    if with_handled {
        lines[0].push("HANDLED".into());
    }
    lines[0].extend(["TAIL", "BEHIND", "OLDEST"].map(str::to_owned));
    for lag in rows {
        let mut line = vec![
            lag.group.clone(),
            lag.partition.to_string(),
            lag.owner.clone().unwrap_or_else(|| "-".into()),
            offset(lag.checkpoint),
        ];
        if with_handled {
            line.push(offset(
                handled
                    .get(&(lag.group.clone(), lag.partition))
                    .copied()
                    .flatten(),
            ));
        }
        line.extend([
            offset(lag.tail),
            lag.behind.to_string(),
            if lag.behind == 0 {
                "-".into()
            } else {
                span(Duration::from_millis(lag.behind_ms))
            },
        ]);
        lines.push(line);
    }
    let mut out = String::new();
    table(&mut out, &lines);
    out
}
