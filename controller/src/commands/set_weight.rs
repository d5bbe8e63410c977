//! `set-weight`, and the read → change → validate → write cycle `promote` and `abort` share.

use std::process::ExitCode;

use anyhow::Context;

use crate::targets::{Clients, Target};
use crate::weights::{self, Change};

pub async fn run(
    clients: &Clients,
    target: &str,
    route: &str,
    weights: &[String],
) -> anyhow::Result<ExitCode> {
    let assignments = weights
        .iter()
        .map(|a| weights::parse_assignment(a))
        .collect::<Result<Vec<_>, _>>()?;
    apply(clients, target, route, &Change::Set(assignments)).await
}

/// Applies `change` to `route` on the target and prints the route's weights now live.
pub(super) async fn apply(
    clients: &Clients,
    target: &str,
    route: &str,
    change: &Change,
) -> anyhow::Result<ExitCode> {
    let target: Target = target.parse()?;
    let update = target
        .update(clients, &|config| change.apply(config, route))
        .await
        .with_context(|| format!("{target}: route {route:?} not changed"))?;
    let routes = weights::read_routes(&update.config)?;
    let live = weights::find_route(&routes, route)?;
    let summary = live
        .variants
        .iter()
        .map(|v| format!("{} {} %", v.name, weights::weight_text(v.weight)))
        .collect::<Vec<_>>()
        .join(", ");
    let note = if update.written { "" } else { " (unchanged)" };
    println!("{target} route {route}: {summary}{note}");
    Ok(ExitCode::SUCCESS)
}
