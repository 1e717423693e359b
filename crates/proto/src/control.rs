//! Control requests to nodes and their replies.
//!
//! Requests travel on the control exchange (routing key `node.<id>` or `all`); replies
//! go to the requester's direct reply-to address with the request's AMQP correlation id.

use serde::{Deserialize, Serialize};

use crate::{NodeDiag, NodeState, WIRE_VERSION, WireMessage};

/// What a control request asks a node to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlCommand {
    /// Answer at once; measures reachability.
    Ping,
    /// Report state and owned keys.
    Status,
    /// Hand all work over and leave the assignment; with `exit`, end the process once
    /// everything is handed over (for its supervisor to start a fresh one), else stay
    /// up as draining until [`ControlCommand::Undrain`].
    Drain {
        /// End the process after the hand-over.
        #[serde(default)]
        exit: bool,
    },
    /// Take work again after a drain that did not exit.
    Undrain,
    /// Reconnect one owned shard: a fresh connection that RESUMEs its session, or with
    /// `new_session` a new IDENTIFY (which spends one of the day's session starts).
    RestartShard {
        /// The shard id.
        shard: u32,
        /// Start a new session instead of resuming.
        #[serde(default)]
        new_session: bool,
    },
    /// Report uptime, owned keys and how each piece of work is doing.
    Diag,
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
    /// Answer to [`ControlCommand::Diag`].
    Diag(Box<NodeDiag>),
    /// The command was carried out (or, for a drain, begun).
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
            ControlOutcome::Diag(Box::new(NodeDiag {
                role: crate::NodeRole::Gateway,
                group: None,
                state: NodeState::Ready,
                uptime_ms: 12_000,
                owns: vec!["shard/1".into()],
                work: crate::WorkDiag {
                    shards: vec![crate::ShardDiag {
                        shard: 1,
                        phase: "active".into(),
                        session_id: "s1".into(),
                        seq: 40,
                        latency_ms: Some(41),
                        last_event_at_ms: Some(1_700_000_000_000),
                        active_since_ms: None,
                    }],
                    publisher_backlog: 3,
                    partitions: vec![],
                },
            })),
        ] {
            let reply = ControlReply::new("n1", outcome);
            assert_eq!(
                decode::<ControlReply>(&encode(&reply).unwrap()).unwrap(),
                reply
            );
        }
    }

    #[test]
    fn every_command_round_trips() {
        for command in [
            ControlCommand::Ping,
            ControlCommand::Status,
            ControlCommand::Drain { exit: true },
            ControlCommand::Undrain,
            ControlCommand::RestartShard {
                shard: 7,
                new_session: false,
            },
            ControlCommand::Diag,
        ] {
            let request = ControlRequest::new("ctl", 1, command);
            assert_eq!(
                decode::<ControlRequest>(&encode(&request).unwrap()).unwrap(),
                request
            );
        }
    }

    /// A drain written by a build before `exit` existed (`{kind: "drain"}`) still reads,
    /// as a drain that stays up.
    #[test]
    fn a_drain_without_exit_stays_up() {
        #[derive(serde::Serialize)]
        struct OldDrain {
            kind: &'static str,
        }
        #[derive(serde::Serialize)]
        struct OldRequest {
            v: u16,
            from: &'static str,
            deadline_ms: u64,
            command: OldDrain,
        }
        let old = OldRequest {
            v: 1,
            from: "ctl",
            deadline_ms: 5,
            command: OldDrain { kind: "drain" },
        };
        let request: ControlRequest = decode(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
        assert_eq!(request.command, ControlCommand::Drain { exit: false });
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
