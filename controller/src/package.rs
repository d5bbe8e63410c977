//! The filter module as an OCI image layout.

use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {}

pub fn run(args: PackageArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("package is not implemented yet")
}
