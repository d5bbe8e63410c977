//! One function per subcommand.

use std::process::ExitCode;

use crate::args::{Args, Command};

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        other => anyhow::bail!("not implemented yet: {other:?}"),
    }
}
