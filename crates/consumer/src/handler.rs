//! The bot's code, as the consumer calls it.

use std::fmt::Display;
use std::future::Future;

use crate::Delivery;

/// Handles one event at a time per partition, in stream order.
///
/// Return `Err` to have the event retried (with backoff, up to
/// [`handler_attempts`](crate::ConsumerConfig::handler_attempts)) and then dead-lettered
/// with the error's text; a panic counts as an error. The handler is never called for
/// an event the consumer group has already handled, except for events that were in
/// flight on a consumer that was killed: use [`Delivery::id`] to make those idempotent.
///
/// Implemented for closures `Fn(Delivery) -> impl Future<Output = Result<(), E>>`:
///
/// ```
/// use shardmesh_consumer::{Delivery, Handler};
///
/// fn assert_handler(_: impl Handler) {}
/// assert_handler(|delivery: Delivery| async move {
///     println!("{} seq {}", delivery.event_type(), delivery.seq());
///     Ok::<(), std::convert::Infallible>(())
/// });
/// ```
pub trait Handler: Send + Sync + 'static {
    /// What a failed call reports; its text goes into the dead letter.
    type Error: Display + Send + 'static;

    /// Handles `delivery`. The future is dropped unfinished only if the partition's
    /// lease is lost (someone else may be reading it already) or the node is stopped
    /// without a drain; a hand-over lets it finish.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether the handler writes to stdout, which then carries nothing else: the node's
    /// `listening on` line goes to stderr instead. Default `false`.
    fn writes_stdout(&self) -> bool {
        false
    }
}

impl<F, Fut, E> Handler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Display + Send + 'static,
{
    type Error = E;

    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), E>> + Send {
        self(delivery)
    }
}
