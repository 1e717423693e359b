//! A consumer group's dead-letter stream `shardmesh.<cluster>.dlq.<group>`, read back
//! from its first offset and decoded.

use std::collections::BTreeSet;
use std::time::Duration;

use shardmesh_broker::{BrokerConfig, StartAt, StreamId, StreamReader, Topology};
use shardmesh_proto::DeadLetter;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use shardmesh_harness::Id;

/// How long the stream may stay quiet, once every expected letter was read, before
/// the reader concludes nothing more is in it.
const QUIET: Duration = Duration::from_millis(500);

/// Reads `group`'s dead-letter stream from its first offset until it has yielded a
/// letter for each of `expected` (and then until it stays quiet), and returns every
/// letter with its offset, in stream order.
///
/// # Panics
///
/// When the reader fails or a message is not a [`DeadLetter`], or after `timeout`,
/// with the expected ids not seen.
pub async fn read_dead_letters(
    broker: &BrokerConfig,
    topology: &Topology,
    group: &str,
    expected: &BTreeSet<Id>,
    timeout: Duration,
) -> Vec<(u64, DeadLetter)> {
    let topology = topology.clone().with_dead_letters(group);
    let token = CancellationToken::new();
    let mut reader = StreamReader::connect(
        broker,
        &topology,
        StreamId::DeadLetter(group.to_owned()),
        StartAt::First,
        token.clone(),
    )
    .await
    .unwrap_or_else(|error| panic!("cannot read the dead letters of group {group}: {error}"));
    let deadline = Instant::now() + timeout;
    let mut letters = Vec::new();
    let mut waiting = expected.clone();
    loop {
        let wait = if waiting.is_empty() {
            QUIET
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        let Ok(message) = tokio::time::timeout(wait, reader.next()).await else {
            assert!(
                waiting.is_empty(),
                "after {timeout:?} the dead-letter stream of group {group} holds {} letters and \
                 misses {} of the {} expected; first missing: {:?}",
                letters.len(),
                waiting.len(),
                expected.len(),
                waiting.iter().take(10).collect::<Vec<_>>()
            );
            break;
        };
        let message = message
            .unwrap_or_else(|error| panic!("reading the dead letters of group {group}: {error}"));
        let letter: DeadLetter =
            shardmesh_proto::decode(&message.payload).unwrap_or_else(|error| {
                panic!(
                    "dead letter at offset {} of group {group} does not decode: {error}",
                    message.offset
                )
            });
        if let Some(event) = &letter.event {
            waiting.remove(&(event.shard, event.session.clone(), event.seq));
        }
        letters.push((message.offset, letter));
    }
    token.cancel();
    reader.close().await;
    letters
}
