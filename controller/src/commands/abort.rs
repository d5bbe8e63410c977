use std::process::ExitCode;

use crate::targets::{Clients, Target};
use crate::weights::Change;

/// Gives the baseline all the traffic. A rollout under way on the route is marked aborted
/// first, so the `rollout` process stops instead of setting its next step.
pub async fn run(clients: &Clients, target: &str, route: &str) -> anyhow::Result<ExitCode> {
    let parsed: Target = target.parse()?;
    if let Some(variant) = crate::rollout::mark_aborted(clients, &parsed, route).await? {
        println!("{parsed} route {route}: the rollout of {variant} is marked aborted");
    }
    super::set_weight::apply(clients, target, route, &Change::Abort).await
}
