//! `shardmesh ctl rolling-restart`: one node at a time, drain it and let it exit, wait
//! until whatever supervises the nodes (compose's restart policy, systemd, Kubernetes)
//! has started its replacement and ownership has settled, then the next; stop at the
//! first trouble and say what was done and what was not.

use std::time::Duration;

use anyhow::{Context as _, bail};
use shardmesh_proto::{ControlCommand, ControlOutcome, NodeRole};
use shardmesh_store::{LeaseKey, Store as _};
use tokio::time::Instant;

use crate::ops::Control;

/// Which nodes, and how long each step may take.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Gateway or consumer nodes.
    pub role: NodeRole,
    /// For consumers, the group; `None`: every group, one after the other.
    pub group: Option<String>,
    /// How long a drain, a replacement and the settling may each take.
    pub step_timeout: Duration,
}

/// Restarts every node of the plan, printing each step as it completes. Returns the
/// number of nodes restarted.
///
/// # Errors
///
/// At the first trouble (ownership not settled before starting, a drain that fails, a
/// replacement that never comes, ownership that does not settle), naming the nodes
/// left unrestarted; every step and the outcome are in the action log.
pub async fn run(control: &Control, plan: &Plan) -> anyhow::Result<usize> {
    let began = Instant::now();
    let args = match (&plan.role, &plan.group) {
        (NodeRole::Consumer, Some(group)) => format!("consumer nodes of group {group}"),
        (NodeRole::Consumer, None) => "consumer nodes".to_owned(),
        (NodeRole::Gateway, _) => "gateway nodes".to_owned(),
    };
    let outcome = restart_all(control, plan).await;
    let result = match &outcome {
        Ok(restarted) => format!(
            "ok: {restarted} nodes restarted in {:.1} s",
            began.elapsed().as_secs_f64()
        ),
        Err(error) => format!("stopped: {error:#}"),
    };
    control.record("rolling_restart", &args, &result).await;
    outcome
}

async fn restart_all(control: &Control, plan: &Plan) -> anyhow::Result<usize> {
    // The registry may list a node this session has not heard announcing yet: wait
    // (at most a node timeout) to hear each, so the ownership check knows them all.
    let registered = control.live_nodes().await?;
    let heard = control
        .wait(Instant::now() + control.silence(), || {
            let view = control.view();
            registered
                .keys()
                .all(|node| view.member(node).is_some())
                .then_some(())
        })
        .await;
    if heard.is_none() {
        let view = control.view();
        let unheard: Vec<&str> = registered
            .keys()
            .filter(|node| view.member(node).is_none())
            .map(String::as_str)
            .collect();
        bail!(
            "nodes in the registry are not announcing: {}; nothing restarted",
            unheard.join(", ")
        );
    }
    let nodes = control.live_nodes().await?;
    let groups: Vec<Option<String>> = match (plan.role, &plan.group) {
        (NodeRole::Gateway, _) => vec![None],
        (NodeRole::Consumer, Some(group)) => vec![Some(group.clone())],
        (NodeRole::Consumer, None) => {
            let mut groups: Vec<Option<String>> = nodes
                .values()
                .filter(|node| node.role == NodeRole::Consumer)
                .map(|node| node.group.clone())
                .collect();
            groups.sort();
            groups.dedup();
            groups
        }
    };
    if groups.is_empty() {
        bail!("no live {} node to restart", describe(plan.role, None));
    }
    let mut restarted = 0;
    for group in groups {
        let members: Vec<String> = nodes
            .values()
            .filter(|node| node.role == plan.role && node.group == group)
            .map(|node| node.node.clone())
            .collect();
        if members.is_empty() {
            bail!(
                "no live {} node to restart",
                describe(plan.role, group.as_deref())
            );
        }
        let keys = keys_of(control, plan.role, group.as_deref()).await?;
        settle(control, plan, group.as_deref(), &keys, members.len())
            .await
            .context("before the first restart")?;
        for (index, node) in members.iter().enumerate() {
            let step = Instant::now();
            let left = &members[index + 1..];
            restart_one(control, plan, group.as_deref(), &keys, node, members.len())
                .await
                .with_context(|| not_restarted(left))?;
            restarted += 1;
            println!(
                "{node} restarted and ownership settled in {:.1} s ({}/{})",
                step.elapsed().as_secs_f64(),
                index + 1,
                members.len()
            );
        }
    }
    Ok(restarted)
}

async fn restart_one(
    control: &Control,
    plan: &Plan,
    group: Option<&str>,
    keys: &[String],
    node: &str,
    size: usize,
) -> anyhow::Result<()> {
    // A role of one node is restarted too: its keys wait for the replacement.
    control.drain(node, true, true, plan.step_timeout).await?;
    let deadline = Instant::now() + plan.step_timeout;
    let replaced = control
        .wait(deadline, || {
            (control.view().candidates(plan.role, group).len() >= size).then_some(())
        })
        .await;
    if replaced.is_none() {
        let ready = control.view().candidates(plan.role, group).len();
        bail!(
            "{node} exited but no replacement joined within {} s ({ready} of {size} {} nodes ready): is a supervisor restarting the nodes?",
            plan.step_timeout.as_secs(),
            describe(plan.role, group)
        );
    }
    settle(control, plan, group, keys, size).await
}

/// Waits until the keys are owned as the assignment says and, for gateways, every
/// shard is connected (READY or RESUMED) on its node.
async fn settle(
    control: &Control,
    plan: &Plan,
    group: Option<&str>,
    keys: &[String],
    size: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + plan.step_timeout;
    loop {
        let owned = control.settled(plan.role, group, keys);
        let ready = match owned {
            Ok(()) if plan.role == NodeRole::Gateway => shards_active(control, keys.len()).await,
            other => other,
        };
        let last = match ready {
            Ok(()) if control.view().candidates(plan.role, group).len() >= size => return Ok(()),
            Ok(()) => "a node is missing".to_owned(),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            bail!(
                "ownership did not settle within {} s: {last}",
                plan.step_timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether every gateway node reports all its shards active, and together they run
/// all `shard_count`.
async fn shards_active(control: &Control, shard_count: usize) -> Result<(), String> {
    let nodes: Vec<String> = control
        .view()
        .candidates(NodeRole::Gateway, None)
        .into_iter()
        .map(|candidate| candidate.node)
        .collect();
    let outcome = control
        .bus()
        .broadcast(ControlCommand::Diag, &nodes, crate::ops::REPLY_DEADLINE)
        .await
        .map_err(|error| error.to_string())?;
    if !outcome.silent.is_empty() {
        return Err(format!("{} did not answer", outcome.silent.join(", ")));
    }
    let mut active = 0;
    for reply in outcome.replies {
        let ControlOutcome::Diag(diag) = reply.outcome else {
            continue;
        };
        if let Some(shard) = diag.work.shards.iter().find(|s| s.phase != "active") {
            return Err(format!(
                "shard {} on {} is {}",
                shard.shard, reply.node, shard.phase
            ));
        }
        active += diag.work.shards.len();
    }
    if active < shard_count {
        return Err(format!("{active} of {shard_count} shards active"));
    }
    Ok(())
}

async fn keys_of(
    control: &Control,
    role: NodeRole,
    group: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let spec = control
        .store()
        .spec()
        .await
        .context("reading the cluster spec")?
        .context("no cluster spec recorded yet: no node has started")?;
    Ok(match (role, group) {
        (NodeRole::Gateway, _) => (0..spec.shard_count)
            .map(|shard| LeaseKey::Shard(shard).to_string())
            .collect(),
        (NodeRole::Consumer, group) => (0..spec.partitions)
            .map(|partition| {
                LeaseKey::Partition {
                    group: group.unwrap_or_default().to_owned(),
                    partition,
                }
                .to_string()
            })
            .collect(),
    })
}

fn describe(role: NodeRole, group: Option<&str>) -> String {
    match (role, group) {
        (NodeRole::Gateway, _) => "gateway".into(),
        (NodeRole::Consumer, Some(group)) => format!("consumer (group {group})"),
        (NodeRole::Consumer, None) => "consumer".into(),
    }
}

fn not_restarted(left: &[String]) -> String {
    if left.is_empty() {
        "stopped at the last node".into()
    } else {
        format!("stopped; not restarted: {}", left.join(", "))
    }
}
