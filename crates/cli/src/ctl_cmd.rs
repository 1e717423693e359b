//! `shardmesh ctl`: the cluster as the store records it (`status` reads the store, and
//! the command queues from the broker within a deadline, so it answers while RabbitMQ
//! or every node is down), and gateway commands sent through the mesh (`send`).

use std::time::SystemTime;

use anyhow::Context as _;
use clap::Subcommand;

use crate::status_report::{self, Snapshot};
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
    }
    Ok(())
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
