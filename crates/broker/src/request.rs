//! A control request as it arrives on a node's queue, where replies go, and the clock
//! deadlines are read on. The bus receives requests and consumes replies, the RPC side
//! sends requests: both need these, so they sit below both.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use shardmesh_proto::ControlRequest;

/// RabbitMQ's direct reply-to pseudo-queue.
pub(crate) const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// A control request that arrived on this node's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// The request.
    pub request: ControlRequest,
    reply_to: Option<String>,
    correlation_id: Option<String>,
}

impl IncomingRequest {
    pub(crate) fn new(request: ControlRequest, properties: &BasicProperties) -> Self {
        Self {
            request,
            reply_to: properties.reply_to().as_ref().map(ToString::to_string),
            correlation_id: properties
                .correlation_id()
                .as_ref()
                .map(ToString::to_string),
        }
    }

    /// Where the reply goes, with the properties that let the requester match it to
    /// this request; `None` when the requester wants no reply.
    pub(crate) fn reply_route(&self) -> Option<(&str, BasicProperties)> {
        let reply_to = self.reply_to.as_deref()?;
        let mut properties = BasicProperties::default();
        if let Some(id) = &self.correlation_id {
            properties = properties.with_correlation_id(id.as_str().into());
        }
        Some((reply_to, properties))
    }

    /// Whether the requester has stopped waiting; such a request should be skipped.
    pub fn is_expired(&self) -> bool {
        unix_ms() > self.request.deadline_ms
    }
}

/// The wall-clock deadline, in Unix milliseconds, of a request sent now that waits
/// `timeout`: wall clock, because the node that checks it is another process.
pub(crate) fn deadline_after(timeout: Duration) -> u64 {
    unix_ms().saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
