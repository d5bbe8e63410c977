//! Progressive rollout with automated analysis and rollback.

use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {}

pub fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("rollout is not implemented yet")
}

pub fn resume(target: &str, route: &str) -> anyhow::Result<ExitCode> {
    let _ = (target, route);
    anyhow::bail!("resume is not implemented yet")
}
