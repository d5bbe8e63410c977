//! One module per subcommand; each returns the process exit code.

mod abort;
mod assign;
mod package;
mod promote;
mod render;
mod rollout;
mod seal;
mod serve;
mod set_weight;
mod status;
pub mod validate;

use std::process::ExitCode;

use crate::args::{Args, Command};

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Validate { file } => validate::run(&file),
        Command::Render { file, api, rbac } => render::run(&file, api, rbac.as_ref()),
        Command::Seal => seal::run(),
        Command::Assign {
            file,
            route,
            user,
            at,
            output,
        } => assign::run(&file, &route, &user, at, output),
        Command::SetWeight {
            target,
            route,
            weights,
        } => set_weight::run(&target.target, &route, &weights),
        Command::Promote {
            target,
            route,
            variant,
        } => promote::run(&target.target, &route, &variant),
        Command::Abort { target, route } => abort::run(&target.target, &route),
        Command::Rollout(args) => rollout::run(*args),
        Command::Resume { target, route } => crate::rollout::resume(&target.target, &route),
        Command::Serve(args) => serve::run(*args),
        Command::Package(args) => package::run(args),
        Command::Status {
            target,
            envoy_admin,
            envoy_admin_http,
            output,
        } => status::run(
            &target.target,
            envoy_admin.as_deref(),
            &envoy_admin_http.options(),
            output,
        ),
    }
}
