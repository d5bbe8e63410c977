//! The control sidecar: HTTP API, ECDS over gRPC, module serving.

use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("serve is not implemented yet")
}
