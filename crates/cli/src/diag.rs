//! `shardmesh ctl diag`: every node asked for its state over the control exchange at
//! once, with a deadline; the nodes that did not answer in time named, with what the
//! store says they hold, and the shards that have gone quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde::Serialize;
use shardmesh_mesh::MeshSettings;
use shardmesh_proto::{ControlCommand, ControlOutcome, NodeDiag};
use shardmesh_store::Store as _;

use crate::lag::{self, PartitionLag};
use crate::ops::Control;
use crate::text::{lower, row, section, span, table, unix_ms};

/// One node's answer.
#[derive(Debug, Clone, Serialize)]
pub struct NodeAnswer {
    /// The node's id.
    pub node: String,
    /// What it said.
    pub diag: NodeDiag,
}

/// A node expected to answer that did not.
#[derive(Debug, Clone, Serialize)]
pub struct SilentNode {
    /// The node's id.
    pub node: String,
    /// The keys whose live leases the store says it holds.
    pub holds: Vec<String>,
}

/// Everything `ctl diag` found.
#[derive(Debug, Clone, Serialize)]
pub struct DiagReport {
    /// How long the nodes had to answer, ms.
    pub deadline_ms: u64,
    /// The answers, by node id.
    pub nodes: Vec<NodeAnswer>,
    /// Nodes the registry, the announcements or a live lease named that did not answer.
    pub silent: Vec<SilentNode>,
    /// Shards that no answering node runs (their holder is silent, or nobody holds
    /// them).
    pub unanswered_shards: Vec<u32>,
    /// Shards whose last event is older than the threshold (or that had none yet).
    pub stale_shards: Vec<u32>,
    /// The threshold for `stale_shards`, ms.
    pub stale_after_ms: u64,
    /// Each consumer group's partitions: checkpoint, stream tail and lag.
    pub partitions: Vec<PartitionLag>,
    /// Why the partitions' lag could not be measured, if it could not.
    pub lag_error: Option<String>,
}

/// Asks every node, waiting at most `timeout` for the answers; shards count as stale
/// after `stale_after` without an event.
///
/// # Errors
///
/// A store or broker that cannot be reached.
pub async fn collect(
    settings: &MeshSettings,
    timeout: Duration,
    stale_after: Duration,
) -> anyhow::Result<DiagReport> {
    let control = Control::connect(settings, &crate::ops::actor("ctl")).await?;
    let report = gather(&control, timeout, stale_after).await;
    control.close().await;
    report
}

/// One diag broadcast's outcome: the answers, and the expected nodes that were silent.
#[derive(Debug, Clone)]
pub struct Round {
    /// The answers, by node id.
    pub nodes: Vec<NodeAnswer>,
    /// The nodes expected to answer that did not, with what the store says they hold.
    pub silent: Vec<SilentNode>,
}

/// Asks every node for its diag at once, waiting at most `timeout`. The nodes expected
/// to answer are the ones the registry lists or the session heard, and the holders of
/// live leases: a node that froze or died holding leases is named silent until they
/// expire.
///
/// # Errors
///
/// A store that cannot be read or a bus that is gone.
pub async fn ask_all(control: &Control, timeout: Duration) -> anyhow::Result<Round> {
    let now = SystemTime::now();
    let leases = control
        .store()
        .leases()
        .await
        .context("reading the lease rows")?;
    let mut holds: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for lease in &leases {
        if let Some(owner) = &lease.owner
            && lease.lease_until > now
        {
            holds
                .entry(owner.clone())
                .or_default()
                .push(lease.key.to_string());
        }
    }
    let mut expected: BTreeSet<String> = control.live_nodes().await?.into_keys().collect();
    expected.extend(holds.keys().cloned());
    let expected: Vec<String> = expected.into_iter().collect();
    let outcome = control
        .bus()
        .broadcast(ControlCommand::Diag, &expected, timeout)
        .await
        .context("asking the nodes")?;
    let mut nodes: Vec<NodeAnswer> = outcome
        .replies
        .into_iter()
        .filter_map(|reply| match reply.outcome {
            ControlOutcome::Diag(diag) => Some(NodeAnswer {
                node: reply.node,
                diag: *diag,
            }),
            _ => None,
        })
        .collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let silent = outcome
        .silent
        .into_iter()
        .map(|node| SilentNode {
            holds: holds.get(&node).cloned().unwrap_or_default(),
            node,
        })
        .collect();
    Ok(Round { nodes, silent })
}

async fn gather(
    control: &Control,
    timeout: Duration,
    stale_after: Duration,
) -> anyhow::Result<DiagReport> {
    let store = control.store();
    let now = SystemTime::now();
    let Round { nodes, silent } = ask_all(control, timeout).await?;

    let shard_count = store
        .spec()
        .await
        .context("reading the cluster spec")?
        .map_or(0, |spec| spec.shard_count);
    let now_ms = unix_ms(now);
    let stale_after_ms = u64::try_from(stale_after.as_millis()).unwrap_or(u64::MAX);
    let running: BTreeMap<u32, Option<u64>> = nodes
        .iter()
        .flat_map(|answer| &answer.diag.work.shards)
        .map(|shard| (shard.shard, shard.last_event_at_ms))
        .collect();
    let unanswered_shards = (0..shard_count)
        .filter(|shard| !running.contains_key(shard))
        .collect();
    let stale_shards = running
        .iter()
        .filter(|(_, last)| last.is_none_or(|last| now_ms.saturating_sub(last) > stale_after_ms))
        .map(|(shard, _)| *shard)
        .collect();

    let settings = control.settings();
    let (partitions, lag_error) = match lag::measure(
        store,
        &settings.broker,
        None,
        timeout.max(Duration::from_secs(5)),
    )
    .await
    {
        Ok(partitions) => (partitions, None),
        Err(error) => (Vec::new(), Some(format!("{error:#}"))),
    };
    Ok(DiagReport {
        deadline_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        nodes,
        silent,
        unanswered_shards,
        stale_shards,
        stale_after_ms,
        partitions,
        lag_error,
    })
}

/// The report for a person.
pub fn render(report: &DiagReport) -> String {
    let mut out = String::new();
    let now_ms = unix_ms(SystemTime::now());
    writeln!(
        out,
        "{} nodes answered within {} ms, {} silent",
        report.nodes.len(),
        report.deadline_ms,
        report.silent.len()
    )
    .expect("writing to a String");
    render_nodes(&mut out, report);
    render_shards(&mut out, report, now_ms);
    render_partitions(&mut out, report);
    out
}

fn render_nodes(out: &mut String, report: &DiagReport) {
    section(out, "nodes");
    let mut rows = vec![row([
        "NODE", "ROLE", "GROUP", "STATE", "UPTIME", "OWNS", "BACKLOG",
    ])];
    for answer in &report.nodes {
        let diag = &answer.diag;
        rows.push(vec![
            answer.node.clone(),
            lower(diag.role),
            diag.group.clone().unwrap_or_else(|| "-".into()),
            lower(diag.state),
            span(Duration::from_millis(diag.uptime_ms)),
            diag.owns.len().to_string(),
            diag.work.publisher_backlog.to_string(),
        ]);
    }
    for silent in &report.silent {
        rows.push(vec![
            silent.node.clone(),
            "?".into(),
            "?".into(),
            "SILENT".into(),
            "-".into(),
            format!("{} (store)", silent.holds.len()),
            "-".into(),
        ]);
    }
    table(out, &rows);
    for silent in &report.silent {
        let holds = if silent.holds.is_empty() {
            "no live lease".to_owned()
        } else {
            silent.holds.join(", ")
        };
        writeln!(
            out,
            "  silent: {} did not answer within {} ms; the store says it holds {holds}",
            silent.node, report.deadline_ms
        )
        .expect("writing to a String");
    }
}

fn render_shards(out: &mut String, report: &DiagReport, now_ms: u64) {
    let mut shards: Vec<(&str, &shardmesh_proto::ShardDiag)> = report
        .nodes
        .iter()
        .flat_map(|answer| {
            answer
                .diag
                .work
                .shards
                .iter()
                .map(|shard| (answer.node.as_str(), shard))
        })
        .collect();
    if shards.is_empty() && report.unanswered_shards.is_empty() {
        return;
    }
    section(out, "shards");
    let mut rows = vec![row([
        "SHARD",
        "NODE",
        "PHASE",
        "LATENCY",
        "LAST EVENT",
        "ACTIVE FOR",
        "SEQ",
    ])];
    shards.sort_by_key(|(_, shard)| shard.shard);
    for (node, shard) in shards {
        rows.push(vec![
            shard.shard.to_string(),
            node.to_owned(),
            shard.phase.clone(),
            match shard.latency_ms {
                None => "-".into(),
                Some(0) => "<1 ms".into(),
                Some(ms) => format!("{ms} ms"),
            },
            ago(shard.last_event_at_ms, now_ms),
            shard.active_since_ms.map_or_else(
                || "-".into(),
                |since| span(Duration::from_millis(now_ms.saturating_sub(since))),
            ),
            shard.seq.to_string(),
        ]);
    }
    table(out, &rows);
    if !report.unanswered_shards.is_empty() {
        writeln!(
            out,
            "  no answering node runs shards {}",
            list(&report.unanswered_shards)
        )
        .expect("writing to a String");
    }
    if !report.stale_shards.is_empty() {
        writeln!(
            out,
            "  no event for more than {} s: shards {}",
            report.stale_after_ms / 1_000,
            list(&report.stale_shards)
        )
        .expect("writing to a String");
    }
}

fn render_partitions(out: &mut String, report: &DiagReport) {
    if report.partitions.is_empty() && report.lag_error.is_none() {
        return;
    }
    let handled: BTreeMap<(String, u32), Option<u64>> = report
        .nodes
        .iter()
        .filter_map(|answer| {
            let group = answer.diag.group.clone()?;
            Some(answer.diag.work.partitions.iter().map(move |partition| {
                (
                    (group.clone(), partition.partition),
                    partition.handled_offset,
                )
            }))
        })
        .flatten()
        .collect();
    section(out, "partitions");
    out.push_str(&crate::lag::render_rows(&report.partitions, &handled));
    if let Some(error) = &report.lag_error {
        writeln!(out, "  lag not measured: {error}").expect("writing to a String");
    }
}

fn ago(at_ms: Option<u64>, now_ms: u64) -> String {
    at_ms.map_or_else(
        || "never".into(),
        |at| {
            format!(
                "{} ago",
                span(Duration::from_millis(now_ms.saturating_sub(at)))
            )
        },
    )
}

fn list(shards: &[u32]) -> String {
    shards
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
