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

use anyhow::Context;

use crate::args::{Args, Command};
use crate::targets::Clients;

/// Runs the command. Those that reach a target share one runtime and one set of clients, made
/// here once for the process.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")
    };
    let clients = Clients::default();
    match args.command {
        Command::Validate { file } => validate::run(&file),
        Command::Render {
            file,
            api,
            module_kind,
            rbac,
        } => render::run(&file, api, module_kind, rbac.as_ref()),
        Command::Seal => seal::run(),
        Command::Assign {
            file,
            route,
            user,
            request,
            at,
            output,
        } => assign::run(&file, &route, user.as_deref(), &request, at, output),
        Command::SetWeight {
            target,
            route,
            weights,
        } => runtime()?.block_on(set_weight::run(&clients, &target.target, &route, &weights)),
        Command::Promote {
            target,
            route,
            variant,
        } => runtime()?.block_on(promote::run(&clients, &target.target, &route, &variant)),
        Command::Abort { target, route } => {
            runtime()?.block_on(abort::run(&clients, &target.target, &route))
        }
        Command::Rollout(args) => rollout::run(runtime()?.handle(), clients, *args),
        Command::Resume { target, route } => {
            runtime()?.block_on(crate::rollout::resume(&clients, &target.target, &route))
        }
        Command::Serve(args) => runtime()?.block_on(serve::run(clients, *args)),
        Command::Package(args) => package::run(args),
        Command::Status {
            target,
            envoy_admin,
            envoy_admin_http,
            output,
        } => status::run(
            &runtime()?,
            &clients,
            &target.target,
            envoy_admin.as_deref(),
            &envoy_admin_http.options(),
            output,
        ),
    }
}
