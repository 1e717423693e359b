//! Control RPC over the node bus: requests with direct reply-to, correlation ids and a
//! deadline; broadcasts that collect replies until the deadline; and replying.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lapin::BasicProperties;
use shardmesh_proto::{ControlCommand, ControlOutcome, ControlReply, ControlRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::announce::Shared;
use crate::request::{REPLY_TO, deadline_after};
use crate::{Error, IncomingRequest, NodeBus};

/// What a broadcast collected before its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastOutcome {
    /// Replies in arrival order (one per node; later duplicates are dropped).
    pub replies: Vec<ControlReply>,
    /// Expected nodes that did not reply in time, sorted.
    pub silent: Vec<String>,
}

/// Removes a request's reply route when the request ends, however it ends.
struct Route<'a> {
    shared: &'a Shared,
    id: String,
}

impl Drop for Route<'_> {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .expect("pending lock")
            .remove(&self.id);
    }
}

impl NodeBus {
    /// Sends `command` to node `node` and waits for its reply until `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no reply arrives in time (including when the node does
    /// not exist); [`Error::ConnectionLost`] if the bus connection goes meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future cancels the request; a reply arriving later is
    /// discarded. To cancel with a token, `select!` on it.
    ///
    /// ```no_run
    /// # async fn example(bus: shardmesh_broker::NodeBus) -> Result<(), shardmesh_broker::Error> {
    /// use std::time::Duration;
    /// use shardmesh_proto::ControlCommand;
    ///
    /// let reply = bus.request("n2", ControlCommand::Ping, Duration::from_secs(2)).await?;
    /// println!("{} answered {:?}", reply.node, reply.outcome);
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        node: &str,
        command: ControlCommand,
        timeout: Duration,
    ) -> Result<ControlReply, Error> {
        let deadline = Instant::now() + timeout;
        let key = format!("node.{node}");
        let (mut replies, _route) = self.send_request(&key, command, timeout).await?;
        match tokio::time::timeout_at(deadline, replies.recv()).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(Error::ConnectionLost {
                operation: "control request",
                reason: "node bus connection lost while waiting for the reply".into(),
            }),
            Err(_) => Err(Error::Timeout {
                operation: format!("control request to {key}"),
                after: timeout,
            }),
        }
    }

    /// Sends `command` to every node and collects replies until `timeout`, or until
    /// every node of `expected` has answered.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] if the bus is not connected when sending. A connection
    /// lost while collecting ends the collection early with what arrived.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`NodeBus::request`]; the replies collected so far are lost.
    ///
    /// ```no_run
    /// # async fn example(bus: shardmesh_broker::NodeBus) -> Result<(), shardmesh_broker::Error> {
    /// use std::time::Duration;
    /// use shardmesh_proto::ControlCommand;
    ///
    /// let expected = vec!["n1".to_owned(), "n2".to_owned()];
    /// let outcome = bus.broadcast(ControlCommand::Status, &expected, Duration::from_secs(2)).await?;
    /// println!("{} replies, silent: {:?}", outcome.replies.len(), outcome.silent);
    /// # Ok(()) }
    /// ```
    pub async fn broadcast(
        &self,
        command: ControlCommand,
        expected: &[String],
        timeout: Duration,
    ) -> Result<BroadcastOutcome, Error> {
        let deadline = Instant::now() + timeout;
        let (mut replies, _route) = self.send_request("all", command, timeout).await?;
        let mut missing: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        let mut collected = Vec::new();
        while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.recv()).await {
            if !seen.insert(reply.node.clone()) {
                continue;
            }
            missing.remove(reply.node.as_str());
            collected.push(reply);
            if missing.is_empty() && !expected.is_empty() {
                break;
            }
        }
        Ok(BroadcastOutcome {
            replies: collected,
            silent: missing.into_iter().map(str::to_owned).collect(),
        })
    }

    /// Answers a request received in the inbox.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] while the bus is reconnecting (the requester then times
    /// out); [`Error::Encode`] if the reply cannot be encoded. A request without a
    /// reply address is answered by doing nothing.
    pub async fn reply(
        &self,
        request: &IncomingRequest,
        outcome: ControlOutcome,
    ) -> Result<(), Error> {
        let Some((reply_to, properties)) = request.reply_route() else {
            return Ok(());
        };
        let reply = ControlReply::new(self.node(), outcome);
        let payload = shardmesh_proto::encode(&reply).map_err(Error::Encode)?;
        self.shared
            .publish("", reply_to, &payload, properties, None)
            .await
    }

    async fn send_request(
        &self,
        routing_key: &str,
        command: ControlCommand,
        timeout: Duration,
    ) -> Result<(mpsc::UnboundedReceiver<ControlReply>, Route<'_>), Error> {
        let shared = &*self.shared;
        let request = ControlRequest::new(shared.node.clone(), deadline_after(timeout), command);
        let payload = shardmesh_proto::encode(&request).map_err(Error::Encode)?;
        let id = format!(
            "{}-{}",
            shared.node,
            shared.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (sender, receiver) = mpsc::unbounded_channel();
        shared
            .pending
            .lock()
            .expect("pending lock")
            .insert(id.clone(), sender);
        let route = Route {
            shared,
            id: id.clone(),
        };
        let properties = BasicProperties::default()
            .with_reply_to(REPLY_TO.into())
            .with_correlation_id(id.as_str().into())
            .with_expiration(timeout.as_millis().max(1).to_string().into());
        let deadline = tokio::time::Instant::now() + timeout;
        shared
            .publish(
                &shared.topology.control_exchange(),
                routing_key,
                &payload,
                properties,
                Some(deadline),
            )
            .await?;
        Ok((receiver, route))
    }
}
