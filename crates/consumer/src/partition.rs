//! One partition's task: read the stream from the checkpoint, drop what the group has
//! seen, hand the rest to the handler in order, dead-letter what fails, checkpoint.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use shardmesh_broker::{
    BrokerConfig, FailureRun, StartAt, StreamId, StreamMessage, StreamReader, Topology,
};
use shardmesh_mesh::{LeaseConfig, LeaseGuard};
use shardmesh_proto::{DeadLetter, EventBatch, EventEnvelope};
use shardmesh_store::{Checkpoint, LeaseGrant, LeaseState, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::counters::Counters;
use crate::dead_letters::DeadLetters;
use crate::dedup::{self, Verdict};
use crate::{ConsumerConfig, Delivery, Handler};

/// What every partition task of a node shares.
pub(crate) struct Shared<S, H> {
    pub config: ConsumerConfig,
    pub broker: BrokerConfig,
    pub topology: Topology,
    pub node: String,
    pub store: Arc<S>,
    pub lease: LeaseConfig,
    pub handler: H,
    pub dead_letters: DeadLetters,
    pub counters: Counters,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

/// The checkpoint as the task advances it; the holder reads it for renewals. A std
/// `Mutex`: never held across an `.await`.
pub(crate) type Progress = Arc<Mutex<Checkpoint>>;

pub(crate) fn lock(progress: &Mutex<Checkpoint>) -> MutexGuard<'_, Checkpoint> {
    progress.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a partition task is asked to stop.
#[derive(Clone)]
pub(crate) struct Stops {
    /// Finish the event in flight, then stop (hand-over). Also cancelled by `lost`.
    pub hand_over: CancellationToken,
    /// Stop at once, dropping a handler call in flight (lease lost, node shut down).
    pub lost: CancellationToken,
}

impl Stops {
    pub(crate) fn new(shutdown: &CancellationToken) -> Self {
        let lost = shutdown.child_token();
        Self {
            hand_over: lost.child_token(),
            lost,
        }
    }
}

/// An event or message the task could not finish: it stops without advancing past it,
/// and the next owner reads it again.
struct Interrupted;

pub(crate) struct PartitionTask<S, H> {
    pub partition: u32,
    pub guard: LeaseGuard,
    pub grant: LeaseGrant,
    pub shared: Arc<Shared<S, H>>,
    pub progress: Progress,
    pub stops: Stops,
    /// Events handled since the last checkpoint written here.
    pub unsaved: u64,
    /// When the first of them was handled.
    pub dirty_since: Option<Instant>,
    /// How old the last handled event was when its handler finished (since its gateway
    /// node received it from Discord), ms: the group's lag, for `/metrics`.
    pub event_age_ms: Arc<AtomicU64>,
}

impl<S: Store, H: Handler> PartitionTask<S, H> {
    pub(crate) async fn run(mut self) {
        let Some(mut reader) = self.connect().await else {
            return;
        };
        loop {
            let checkpoint_due = self
                .dirty_since
                .map(|since| since + self.shared.config.checkpoint_interval());
            let next = tokio::select! {
                biased;
                () = self.stops.hand_over.cancelled() => break,
                () = self.guard.lapsed() => break,
                () = sleep_until(checkpoint_due) => {
                    self.checkpoint().await;
                    continue;
                }
                next = reader.next() => next,
            };
            match next {
                Ok(message) => {
                    if self.message(message).await.is_err() {
                        break;
                    }
                }
                Err(shardmesh_broker::Error::Cancelled) => break,
                Err(error) => {
                    // The stream was deleted or re-declared with other arguments: keep
                    // the lease (and the checkpoint) and try again, loudly.
                    tracing::error!(partition = self.partition, %error, "cannot read the partition's stream, retrying");
                    if self.pause(self.broker_backoff()).await.is_err() {
                        break;
                    }
                }
            }
        }
        reader.close().await;
    }

    async fn connect(&mut self) -> Option<StreamReader> {
        let start = match lock(&self.progress).offset {
            Some(offset) => StartAt::Offset(offset + 1),
            None => StartAt::First,
        };
        tracing::info!(
            partition = self.partition,
            epoch = self.guard.epoch(),
            ?start,
            "reading partition"
        );
        // A broker outage while taking the partition is one WARN, not one per attempt.
        let mut failing = FailureRun::default();
        loop {
            let connected = StreamReader::connect(
                &self.shared.broker,
                &self.shared.topology,
                StreamId::Events(self.partition),
                start,
                self.stops.hand_over.clone(),
            )
            .await;
            match connected {
                Ok(reader) => {
                    if let Some(run) = failing.ended() {
                        tracing::info!(
                            partition = self.partition,
                            failures = run.failures,
                            outage_ms = run.millis(),
                            "subscribed to the partition's stream"
                        );
                    }
                    return Some(reader);
                }
                Err(shardmesh_broker::Error::Cancelled) => return None,
                Err(error) => {
                    let first = failing.failed();
                    if !error.is_retryable() {
                        // The stream was re-declared with other arguments, access refused:
                        // waiting does not fix it, a person must.
                        tracing::error!(partition = self.partition, %error, "cannot subscribe to the partition's stream, retrying");
                    } else if first {
                        tracing::warn!(partition = self.partition, %error, "cannot subscribe to the partition's stream yet, retrying");
                    } else {
                        tracing::debug!(partition = self.partition, %error, "cannot subscribe to the partition's stream yet, retrying");
                    }
                    self.pause(self.broker_backoff()).await.ok()?;
                }
            }
        }
    }

    /// Handles every event of one stream message, then moves the offset past it.
    async fn message(&mut self, message: StreamMessage) -> Result<(), Interrupted> {
        let StreamMessage { offset, payload } = message;
        match shardmesh_proto::decode::<EventBatch>(&payload) {
            Ok(batch) => {
                let count = batch.events.len();
                for (index, envelope) in batch.events.into_iter().enumerate() {
                    let handled = self.event(offset, envelope).await?;
                    if index + 1 == count {
                        // Before the checkpoint below, so it does not lag a message.
                        lock(&self.progress).offset = Some(offset);
                    }
                    if handled {
                        self.handled().await;
                    }
                }
            }
            Err(error) => {
                tracing::error!(partition = self.partition, offset, %error, "undecodable stream message, dead-lettering it");
                let letter = DeadLetter::for_raw(
                    self.shared.topology.cluster(),
                    &self.shared.config.group,
                    self.partition,
                    offset,
                    &self.shared.node,
                    error.to_string(),
                    unix_ms(),
                    payload,
                );
                self.dead_letter(&letter).await?;
                Counters::bump(&self.shared.counters.undecodable);
                lock(&self.progress).offset = Some(offset);
                self.handled().await;
                return Ok(());
            }
        }
        lock(&self.progress).offset = Some(offset);
        Ok(())
    }

    /// Drops `envelope` if the group has seen it, else hands it to the handler (and to
    /// the dead-letter stream if that fails). Returns whether it was handled.
    async fn event(&mut self, offset: u64, envelope: EventEnvelope) -> Result<bool, Interrupted> {
        let verdict = {
            let mut progress = lock(&self.progress);
            let mark = progress.marks.get_mut(&envelope.shard);
            let verdict = dedup::judge(mark.as_deref(), &envelope);
            if let (Verdict::Duplicate, Some(mark)) = (verdict, mark) {
                dedup::saw_duplicate(mark, &envelope);
            }
            verdict
        };
        match verdict {
            Verdict::Duplicate => {
                Counters::bump(&self.shared.counters.duplicates);
                return Ok(false);
            }
            Verdict::Stale => {
                Counters::bump(&self.shared.counters.stale);
                return Ok(false);
            }
            Verdict::New => {}
        }
        let delivery = Delivery::new(envelope, self.partition, offset);
        match self.call_handler(&delivery).await? {
            None => {
                Counters::bump(&self.shared.counters.delivered);
                let age = unix_ms().saturating_sub(delivery.envelope().received_at_ms);
                self.event_age_ms.store(age, Ordering::Relaxed);
            }
            Some((error, attempts)) => {
                tracing::warn!(partition = self.partition, offset, shard = delivery.shard(), seq = delivery.seq(), attempts, %error, "handler gave up, dead-lettering the event");
                let letter = DeadLetter::for_event(
                    self.shared.topology.cluster(),
                    &self.shared.config.group,
                    self.partition,
                    offset,
                    &self.shared.node,
                    error,
                    attempts,
                    unix_ms(),
                    delivery.envelope().clone(),
                );
                self.dead_letter(&letter).await?;
            }
        }
        lock(&self.progress)
            .marks
            .insert(delivery.shard(), dedup::handled(delivery.envelope()));
        Ok(true)
    }

    /// Calls the handler until it succeeds (`None`) or runs out of attempts (the last
    /// error and the attempts made).
    async fn call_handler(
        &mut self,
        delivery: &Delivery,
    ) -> Result<Option<(String, u32)>, Interrupted> {
        let attempts = self.shared.config.handler_attempts;
        let mut attempt = 0;
        loop {
            // Self-fence: past it, someone else may be handling this partition.
            if !self.guard.is_valid() || self.stops.lost.is_cancelled() {
                return Err(Interrupted);
            }
            attempt += 1;
            let call =
                AssertUnwindSafe(self.shared.handler.handle(delivery.clone())).catch_unwind();
            let outcome = tokio::select! {
                biased;
                () = self.stops.lost.cancelled() => return Err(Interrupted),
                () = self.guard.lapsed() => return Err(Interrupted),
                outcome = call => outcome,
            };
            let error = match outcome {
                Ok(Ok(())) => return Ok(None),
                Ok(Err(error)) => error.to_string(),
                Err(panic) => {
                    Counters::bump(&self.shared.counters.panics);
                    format!("handler panicked: {}", panic_message(panic.as_ref()))
                }
            };
            if attempt >= attempts {
                return Ok(Some((error, attempt)));
            }
            tracing::debug!(partition = self.partition, shard = delivery.shard(), seq = delivery.seq(), attempt, %error, "handler failed, retrying");
            Counters::bump(&self.shared.counters.retries);
            // A hand-over does not wait out retries: the event is not marked, so the
            // next owner calls the handler for it again.
            self.pause(self.shared.config.backoff(attempt)).await?;
        }
    }

    /// Publishes a dead letter, retrying until it is confirmed: the event is never
    /// passed over unless it is in the dead-letter stream.
    async fn dead_letter(&mut self, letter: &DeadLetter) -> Result<(), Interrupted> {
        let mut failures = 0;
        loop {
            if !self.guard.is_valid() {
                return Err(Interrupted);
            }
            match self.shared.dead_letters.publish(letter).await {
                Ok(()) => {
                    Counters::bump(&self.shared.counters.dead_lettered);
                    return Ok(());
                }
                Err(error) => {
                    failures += 1;
                    tracing::error!(
                        partition = self.partition,
                        offset = letter.offset,
                        failures,
                        %error,
                        "dead letter not published; the partition waits and retries rather than skip the event"
                    );
                    self.pause(self.broker_backoff()).await?;
                }
            }
        }
    }

    /// Counts one more handled event, and checkpoints every `checkpoint_every_events`
    /// of them: per event, not per message, so a batch's events count one by one (the
    /// offset stays before the batch until it is finished; the marks cover the part
    /// handled).
    async fn handled(&mut self) {
        self.unsaved += 1;
        self.dirty_since.get_or_insert_with(Instant::now);
        if self.unsaved >= self.shared.config.checkpoint_every_events {
            self.checkpoint().await;
        }
    }

    /// Saves the checkpoint now through a fenced renewal, as the keeper's renewals do.
    async fn checkpoint(&mut self) {
        self.unsaved = 0;
        self.dirty_since = None;
        if !self.guard.is_valid() {
            return;
        }
        // Under the lock the keeper's renewals take too: a renewal that read an older
        // checkpoint cannot land after this one.
        let _renewals_held = self.guard.hold_renewals().await;
        let state = LeaseState::Partition(lock(&self.progress).clone());
        match self
            .shared
            .store
            .renew(&self.grant, self.shared.lease.duration(), &state)
            .await
        {
            Ok(true) => Counters::bump(&self.shared.counters.checkpoints),
            // The keeper's next step finds out and stops this task through `lost`.
            Ok(false) => tracing::warn!(
                partition = self.partition,
                "checkpoint refused: the lease is held by someone else"
            ),
            Err(error) => tracing::warn!(
                partition = self.partition,
                %error,
                "checkpoint not written; the next renewal saves it"
            ),
        }
    }

    /// Waits `duration`, unless the task is stopped or fenced meanwhile.
    async fn pause(&mut self, duration: Duration) -> Result<(), Interrupted> {
        tokio::select! {
            biased;
            () = self.stops.hand_over.cancelled() => Err(Interrupted),
            () = self.guard.lapsed() => Err(Interrupted),
            () = tokio::time::sleep(duration) => Ok(()),
        }
    }

    fn broker_backoff(&self) -> Duration {
        Duration::from_millis(self.shared.broker.backoff_max_ms.min(1_000))
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Now, in Unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn panic_messages_are_read_from_str_and_string_payloads() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&7_u8), "(no message)");
    }
}
