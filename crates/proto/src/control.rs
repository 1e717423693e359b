//! Control requests to nodes and their replies.
//!
//! Requests travel on the control exchange (routing key `node.<id>` or `all`); replies
//! go to the requester's direct reply-to address with the request's AMQP correlation id.

use serde::{Deserialize, Serialize};

use crate::{NodeState, WIRE_VERSION, WireMessage};

/// What a control request asks a node to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlCommand {
    /// Answer at once; measures reachability.
    Ping,
    /// Report state and owned keys.
    Status,
    /// Hand all work over and leave the assignment (the node keeps running).
    Drain,
    /// Hand one lease key over now, e.g. `shard/3`.
    Release {
        /// The lease key to hand over.
        key: String,
    },
}

/// A request to one node or to every node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// Wire version, [`WIRE_VERSION`] when written by this build.
    pub v: u16,
    /// Who asks: a node id, or `ctl` for the command-line tool.
    pub from: String,
    /// Unix milliseconds after which the requester no longer waits; a node that sees the
    /// request later skips it instead of acting on an answer nobody reads.
    pub deadline_ms: u64,
    /// What to do.
    pub command: ControlCommand,
}

impl ControlRequest {
    /// A request at the current wire version.
    pub fn new(from: impl Into<String>, deadline_ms: u64, command: ControlCommand) -> Self {
        Self {
            v: WIRE_VERSION,
            from: from.into(),
            deadline_ms,
            command,
        }
    }
}

/// How a node answered a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlOutcome {
    /// Answer to [`ControlCommand::Ping`].
    Pong,
    /// Answer to [`ControlCommand::Status`].
    Status {
        /// The node's life-cycle state.
        state: NodeState,
        /// Lease keys it holds.
        owns: Vec<String>,
    },
    /// The command was carried out.
    Done,
    /// The command could not be carried out.
    Failed {
        /// Why, in words for a person.
        error: String,
    },
}

/// A node's reply to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    /// Wire version, [`WIRE_VERSION`] when written by this build.
    pub v: u16,
    /// The answering node's id.
    pub node: String,
    /// What happened.
    pub outcome: ControlOutcome,
}

impl ControlReply {
    /// A reply at the current wire version.
    pub fn new(node: impl Into<String>, outcome: ControlOutcome) -> Self {
        Self {
            v: WIRE_VERSION,
            node: node.into(),
            outcome,
        }
    }
}

impl WireMessage for ControlRequest {
    const NAME: &'static str = "control request";

    fn version(&self) -> u16 {
        self.v
    }
}

impl WireMessage for ControlReply {
    const NAME: &'static str = "control reply";

    fn version(&self) -> u16 {
        self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::to_hex;
    use crate::{decode, encode};

    #[test]
    fn request_bytes_match_the_documented_layout() {
        let request = ControlRequest::new(
            "ctl",
            1_700_000_000_000,
            ControlCommand::Release {
                key: "shard/3".into(),
            },
        );
        let bytes = encode(&request).unwrap();
        assert_eq!(to_hex(&bytes), GOLDEN_REQUEST);
        assert_eq!(decode::<ControlRequest>(&bytes).unwrap(), request);
    }

    #[test]
    fn every_outcome_round_trips() {
        for outcome in [
            ControlOutcome::Pong,
            ControlOutcome::Done,
            ControlOutcome::Status {
                state: NodeState::Draining,
                owns: vec!["shard/1".into()],
            },
            ControlOutcome::Failed {
                error: "no such key".into(),
            },
        ] {
            let reply = ControlReply::new("n1", outcome);
            assert_eq!(
                decode::<ControlReply>(&encode(&reply).unwrap()).unwrap(),
                reply
            );
        }
    }

    #[test]
    fn reply_bytes_match_the_documented_layout() {
        let reply = ControlReply::new("n1", ControlOutcome::Pong);
        assert_eq!(to_hex(&encode(&reply).unwrap()), GOLDEN_REPLY);
    }

    const GOLDEN_REQUEST: &str = concat!(
        "84a17601a466726f6da363746cab646561646c696e655f6d73cf0000018bcfe5",
        "6800a7636f6d6d616e6482a46b696e64a772656c65617365a36b6579a7736861",
        "72642f33"
    );
    const GOLDEN_REPLY: &str = "83a17601a46e6f6465a26e31a76f7574636f6d6581a46b696e64a4706f6e67";
}
