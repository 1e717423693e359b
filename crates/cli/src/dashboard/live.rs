//! What only the nodes know (connection phase, heartbeat latency, last event, session
//! age, publisher backlog), asked over the control exchange every [`ASK_EVERY`], and
//! the consumer groups' lag, measured every [`LAG_EVERY`], both in the background and
//! kept for the page. Asking is kept off the request path: a round waits for silent
//! nodes up to its deadline, a lag measure reads the streams' tails, and the page must
//! not wait with either.
//!
//! The two run apart because they differ in cost: a diagnostics round is one broadcast
//! on a session kept open between rounds, cheap enough every second or two, while lag
//! reads every partition's stream and may take seconds; measuring it in the same round
//! (as `ctl diag` does once) would leave the shards' data that much older.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use shardmesh_proto::{NodeDiag, NodeRole};

use super::App;
use super::state::{Lag, Live, ShardLive};
use crate::ops::Control;
use crate::text::unix_ms;

/// How long after one round of questions the next begins.
pub const ASK_EVERY: Duration = Duration::from_secs(1);
/// How long the nodes have to answer a round: a node silent for this long is shown as
/// silent; short, so a dead node shows within a couple of seconds.
pub const ANSWER_DEADLINE: Duration = Duration::from_millis(1_500);
/// How long after one lag measure the next begins.
pub const LAG_EVERY: Duration = Duration::from_secs(5);
/// How long one lag measure may take.
const LAG_DEADLINE: Duration = Duration::from_secs(5);

/// Asks the nodes every [`ASK_EVERY`] on one control session (made again after a
/// failure) and keeps what they said in `app.live`, until aborted. A failing round
/// (broker down) is one WARN when it starts failing and one INFO when it works again,
/// not a line every round.
pub(super) async fn ask_nodes(app: Arc<App>) {
    let mut session: Option<Control> = None;
    let mut failing = false;
    loop {
        let asked = match &session {
            Some(control) => round(control).await,
            None => match Control::connect(&app.settings, &app.actor).await {
                Ok(control) => {
                    let asked = round(&control).await;
                    session = Some(control);
                    asked
                }
                Err(error) => Err(error),
            },
        };
        let now = SystemTime::now();
        let failed = asked.is_err();
        match asked {
            Ok(answers) => {
                if failing {
                    tracing::info!("the nodes answer again");
                }
                record_answers(&mut lock(&app), &answers, now);
            }
            Err(error) => {
                let error = format!("{error:#}");
                if !failing {
                    tracing::warn!(%error, "cannot ask the nodes; the page shows the store only");
                }
                record_failure(&mut lock(&app), error, now);
            }
        }
        failing = failed;
        // A session that failed is made again: its connection may be what broke.
        if failed && let Some(control) = session.take() {
            control.close().await;
        }
        tokio::time::sleep(ASK_EVERY).await;
    }
}

fn lock(app: &App) -> std::sync::MutexGuard<'_, Live> {
    app.live.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Measures every group's lag every [`LAG_EVERY`] and keeps it in `app.live`, until
/// aborted.
pub(super) async fn measure_lag(app: Arc<App>) {
    loop {
        let measured = match app.store().await {
            Ok(store) => crate::lag::measure(store, &app.settings.broker, None, LAG_DEADLINE)
                .await
                .map_err(|error| format!("{error:#}")),
            Err(error) => Err(error),
        };
        {
            let mut live = lock(&app);
            match measured {
                Ok(partitions) => {
                    live.lag = partitions
                        .into_iter()
                        .map(|partition| {
                            let lag = Lag {
                                behind: partition.behind,
                                behind_ms: partition.behind_ms,
                            };
                            ((partition.group, partition.partition), lag)
                        })
                        .collect();
                    live.status.lag_error = None;
                }
                Err(error) => {
                    live.lag.clear();
                    live.status.lag_error = Some(error);
                }
            }
        }
        tokio::time::sleep(LAG_EVERY).await;
    }
}

/// One round's answers: each answering node's report, and the nodes that were
/// expected to answer and did not.
#[derive(Debug, Default)]
pub struct Answers {
    /// (node id, its report), by node id.
    pub nodes: Vec<(String, NodeDiag)>,
    /// Expected nodes that did not answer within [`ANSWER_DEADLINE`].
    pub silent: Vec<String>,
}

/// Asks every node for its diagnostics (see [`crate::diag::ask_all`] for who is
/// expected to answer).
async fn round(control: &Control) -> anyhow::Result<Answers> {
    let round = crate::diag::ask_all(control, ANSWER_DEADLINE).await?;
    Ok(Answers {
        nodes: round
            .nodes
            .into_iter()
            .map(|answer| (answer.node, answer.diag))
            .collect(),
        silent: round.silent.into_iter().map(|silent| silent.node).collect(),
    })
}

/// Writes a round's answers into `live`, replacing the last round's (lag is kept).
pub fn record_answers(live: &mut Live, answers: &Answers, now: SystemTime) {
    live.status.at_ms = Some(unix_ms(now));
    live.status.silent.clone_from(&answers.silent);
    live.status.error = None;
    live.shards.clear();
    live.backlog.clear();
    for (node, diag) in &answers.nodes {
        if diag.role == NodeRole::Gateway {
            live.backlog
                .insert(node.clone(), diag.work.publisher_backlog);
        }
        for shard in &diag.work.shards {
            live.shards.entry(shard.shard).or_default().push(ShardLive {
                phase: shard.phase.clone(),
                node: node.clone(),
                latency_ms: shard.latency_ms,
                last_event_at_ms: shard.last_event_at_ms,
                active_since_ms: shard.active_since_ms,
            });
        }
    }
}

/// A round that failed as a whole: nothing live to show but why.
fn record_failure(live: &mut Live, error: String, now: SystemTime) {
    live.status.at_ms = Some(unix_ms(now));
    live.status.silent.clear();
    live.status.error = Some(error);
    live.shards.clear();
    live.backlog.clear();
}

#[cfg(test)]
mod tests {
    use shardmesh_proto::{NodeState, ShardDiag, WorkDiag};

    use super::*;

    fn gateway(shards: &[(u32, &str)], backlog: u64) -> NodeDiag {
        NodeDiag {
            role: NodeRole::Gateway,
            group: None,
            state: NodeState::Ready,
            uptime_ms: 1_000,
            owns: Vec::new(),
            work: WorkDiag {
                shards: shards
                    .iter()
                    .map(|(shard, phase)| ShardDiag {
                        shard: *shard,
                        phase: (*phase).into(),
                        session_id: "s".into(),
                        seq: 1,
                        latency_ms: Some(40),
                        last_event_at_ms: Some(5),
                        active_since_ms: Some(2),
                    })
                    .collect(),
                publisher_backlog: backlog,
                partitions: Vec::new(),
            },
        }
    }

    #[test]
    fn a_round_replaces_the_last_one_and_keeps_the_lag() {
        let mut live = Live::default();
        live.lag.insert(
            ("bot".into(), 0),
            Lag {
                behind: 1,
                behind_ms: 2,
            },
        );
        record_failure(&mut live, "broker down".into(), SystemTime::UNIX_EPOCH);
        assert_eq!(live.status.error.as_deref(), Some("broker down"));
        let answers = Answers {
            nodes: vec![
                ("g1".into(), gateway(&[(0, "active"), (1, "draining")], 7)),
                ("g2".into(), gateway(&[(1, "resuming")], 0)),
            ],
            silent: vec!["g3".into()],
        };
        record_answers(&mut live, &answers, SystemTime::UNIX_EPOCH);
        assert_eq!(live.status.error, None);
        assert_eq!(live.status.silent, ["g3"]);
        assert_eq!(live.backlog.get("g1"), Some(&7));
        let shard1: Vec<(&str, &str)> = live.shards[&1]
            .iter()
            .map(|report| (report.node.as_str(), report.phase.as_str()))
            .collect();
        assert_eq!(shard1, [("g1", "draining"), ("g2", "resuming")]);
        assert_eq!(live.shards[&0][0].latency_ms, Some(40));
        assert_eq!(live.lag.len(), 1, "lag is measured on its own");
    }
}
