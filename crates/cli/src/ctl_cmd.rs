//! `shardmesh ctl`: the cluster as the store records it (`status` reads the store, and
//! the command queues from the broker within a deadline, so it answers while RabbitMQ
//! or every node is down), gateway commands sent through the mesh (`send`), and the
//! operations on nodes over the control exchange (`drain`, `undrain`,
//! `rolling-restart`, `restart-shard`, `diag`), the consumer groups' `lag` and the
//! action `log`. Every action on nodes is recorded in the action log with who asked.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use shardmesh_proto::NodeRole;

use crate::ops::{self, Control};
use crate::status_report::{self, Snapshot};
use crate::{action_log, diag, lag, rolling_restart};
use shardmesh_consumer::{Accepted, CommandRequest, Commands};
use shardmesh_mesh::MeshSettings;
use shardmesh_store::Store as _;
use tokio_util::sync::CancellationToken;

/// `shardmesh ctl <command>`.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Print the cluster: its spec and identify budget, the live nodes, who owns each
    /// shard (with the session and seq a new owner resumes from, and the commands waiting
    /// in its queue), each consumer group's
    /// partitions (with the checkpoint offset), and the most recent actions.
    Status {
        /// How many recent actions to print.
        #[arg(long, default_value_t = 20)]
        actions: usize,
    },
    /// Send a gateway command (presence, voice state, member request, ...) through the
    /// broker to the gateway node that holds its shard; prints the command's id and
    /// shard once the broker has accepted it.
    ///
    /// Example: `shardmesh ctl send --op 4 --d '{"guild_id":"1","channel_id":"2",
    /// "self_mute":false,"self_deaf":true}'`
    Send {
        /// Gateway opcode: 3 presence, 4 voice state, 8 request guild members, 31 request
        /// soundboard sounds, 43 request channel info.
        #[arg(long)]
        op: u8,
        /// The command's `d`, a JSON object.
        #[arg(long)]
        d: String,
        /// The guild whose shard sends it; default `d.guild_id`.
        #[arg(long)]
        guild: Option<u64>,
        /// The shard that sends it (for presence, which names no guild).
        #[arg(long)]
        shard: Option<u32>,
        /// Not sent after this many ms (reported as expired instead).
        #[arg(long)]
        expires_in_ms: Option<u64>,
        /// The command's id (e.g. the nonce of an op 8); default a fresh UUID.
        #[arg(long)]
        id: Option<String>,
    },
    /// Drain a node: it hands everything over (shards by RESUME, partitions after a
    /// final checkpoint) and stays up as draining, or with `--exit` ends, for its
    /// supervisor to start a fresh one. Waits until it owns nothing.
    Drain {
        /// The node's id (`ctl status` lists them).
        node: String,
        /// End the node's process once everything is handed over.
        #[arg(long)]
        exit: bool,
        /// Drain the last ready node of its role (or group) too, although its keys then
        /// have no owner until another node starts.
        #[arg(long)]
        force: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a draining node take work again.
    Undrain {
        /// The node's id.
        node: String,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restart the nodes of a role one at a time: drain and exit one, wait until its
    /// supervisor (compose's restart policy, systemd, Kubernetes) started a replacement
    /// and ownership has settled (for gateways: every shard connected again), then the
    /// next. Stops at the first trouble and names the nodes not restarted.
    RollingRestart {
        /// Which nodes.
        #[arg(long, value_enum)]
        role: Role,
        /// For consumers: only this group (default every group, one after the other).
        #[arg(long)]
        group: Option<String>,
        /// How long each drain, each replacement and each settling may take.
        #[arg(long, default_value_t = 180)]
        step_timeout_secs: u64,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reconnect one shard on the node that holds it: a fresh connection that RESUMEs
    /// its session (nothing lost, no IDENTIFY), or with `--new-session` a new IDENTIFY.
    RestartShard {
        /// The shard id.
        shard: u32,
        /// Start a new session: spends one IDENTIFY of the day's budget, and events
        /// Discord had not yet sent on the old session are not replayed. Needs `--yes`.
        #[arg(long)]
        new_session: bool,
        /// Confirms `--new-session`.
        #[arg(long)]
        yes: bool,
        /// Give up waiting for the shard to be connected again after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask every node for its state over the control exchange: uptime, owned keys,
    /// heartbeat latency and last event per shard, publisher backlog, consumer lag per
    /// partition; name the nodes that did not answer in time and the shards that have
    /// gone quiet.
    Diag {
        /// How long the nodes have to answer, ms.
        #[arg(long, default_value_t = 3_000)]
        timeout_ms: u64,
        /// A shard without an event for this many seconds is listed as quiet.
        #[arg(long, default_value_t = 60)]
        stale_secs: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per consumer group and partition: the stream's last offset (from the broker)
    /// against the group's checkpoint (from the store), in stream messages and as the
    /// age of the oldest one not yet checkpointed.
    Lag {
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Print the rows as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The action log, oldest first: who did what (nodes' hand-overs and losses,
    /// operators' drains and restarts) and how it ended.
    Log {
        /// How many of the most recent entries.
        #[arg(long, default_value_t = 50)]
        last: usize,
        /// Keep printing new entries as they are written.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// A node role, as `--role` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Gateway nodes.
    Gateway,
    /// Consumer nodes.
    Consumer,
}

/// Runs a ctl command against the configured store.
pub async fn run(command: CtlCommand, settings: &MeshSettings) -> anyhow::Result<()> {
    match command {
        CtlCommand::Status { actions } => {
            let store = shardmesh_store::open(&settings.store, &settings.cluster.name).await?;
            let mut snapshot = Snapshot::read(&store, actions)
                .await
                .context("reading the cluster's rows")?;
            snapshot.read_commands(&settings.broker).await;
            print!("{}", status_report::render(&snapshot, SystemTime::now()));
        }
        CtlCommand::Send {
            op,
            d,
            guild,
            shard,
            expires_in_ms,
            id,
        } => {
            let d = serde_json::from_str(&d).context("--d is not JSON")?;
            let request = CommandRequest {
                op,
                d,
                guild_id: guild.map(serde_json::Value::from),
                shard,
                expires_in_ms,
                id,
            };
            let accepted = send(request, settings).await?;
            println!("accepted {} for shard {}", accepted.id, accepted.shard);
        }
        CtlCommand::Diag {
            timeout_ms,
            stale_secs,
            json,
        } => {
            let report = diag::collect(
                settings,
                Duration::from_millis(timeout_ms),
                Duration::from_secs(stale_secs),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", diag::render(&report));
            }
        }
        CtlCommand::Lag { group, json } => {
            let store = shardmesh_store::open(&settings.store, &settings.cluster.name).await?;
            let rows = lag::measure(
                &store,
                &settings.broker,
                group.as_deref(),
                Duration::from_secs(10),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", lag::render_rows(&rows, &BTreeMap::new()));
            }
        }
        CtlCommand::Log { last, follow, json } => {
            let store = shardmesh_store::open(&settings.store, &settings.cluster.name).await?;
            action_log::print(&store, last, follow, json).await?;
        }
        // Refused before connecting: it needs no broker to say so.
        CtlCommand::RestartShard {
            shard,
            new_session: true,
            yes: false,
            ..
        } => bail!(
            "--new-session makes shard {shard} IDENTIFY again: it spends one session start of the day's budget (see `ctl status`), and events Discord had not yet sent on the old session are not replayed; add --yes to go ahead"
        ),
        action => operate(action, settings).await?,
    }
    Ok(())
}

/// The commands that act on nodes, each in a control session of its own.
async fn operate(command: CtlCommand, settings: &MeshSettings) -> anyhow::Result<()> {
    let control = Control::connect(settings, &ops::actor("ctl")).await?;
    let outcome = act(&control, command).await;
    control.close().await;
    outcome
}

async fn act(control: &Control, command: CtlCommand) -> anyhow::Result<()> {
    match command {
        CtlCommand::Drain {
            node,
            exit,
            force,
            timeout_secs,
            json,
        } => {
            let outcome = control
                .drain(&node, exit, force, Duration::from_secs(timeout_secs))
                .await?;
            say(&outcome, json);
        }
        CtlCommand::Undrain { node, json } => say(&control.undrain(&node).await?, json),
        CtlCommand::RollingRestart {
            role,
            group,
            step_timeout_secs,
            json,
        } => {
            let plan = rolling_restart::Plan {
                role: match role {
                    Role::Gateway => NodeRole::Gateway,
                    Role::Consumer => NodeRole::Consumer,
                },
                group,
                step_timeout: Duration::from_secs(step_timeout_secs),
            };
            let restarted = rolling_restart::run(control, &plan).await?;
            say(
                &format!("rolling restart done: {restarted} nodes restarted"),
                json,
            );
        }
        CtlCommand::RestartShard {
            shard,
            new_session,
            timeout_secs,
            json,
            ..
        } => {
            let outcome = control
                .restart_shard(shard, new_session, Duration::from_secs(timeout_secs))
                .await?;
            say(&outcome, json);
        }
        other => unreachable!("{other:?} does not act on nodes"),
    }
    Ok(())
}

/// An outcome for a person, or as `{"result": ...}`.
fn say(outcome: &str, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "result": outcome }));
    } else {
        println!("{outcome}");
    }
}

/// Addresses `request` with the cluster's recorded shard count and hands it to the
/// broker.
async fn send(request: CommandRequest, settings: &MeshSettings) -> anyhow::Result<Accepted> {
    let store = shardmesh_store::open(&settings.store, &settings.cluster.name).await?;
    let spec = store
        .spec()
        .await
        .context("reading the cluster spec")?
        .context("no cluster spec recorded yet: no gateway node has started, so the shard count is unknown")?;
    // Checked before connecting, so a wrong command fails without a broker.
    request.envelope(spec.shard_count, "ctl", 0)?;
    let commands = Commands::connect(
        &settings.broker,
        &settings.cluster.name,
        spec.shard_count,
        "ctl",
        CancellationToken::new(),
    )
    .await?;
    Ok(commands.submit(request).await?)
}
