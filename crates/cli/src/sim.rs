//! `shardmesh sim`: placeholder until the simulator lands.

/// Flags of `shardmesh sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {}

/// Runs the simulator until interrupted.
pub async fn run(_args: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("the simulator is not built yet")
}
