//! `canaryctl assign FILE --route R --user ID`: the variant the filter gives an identity.
//!
//! The filter's own hash decision (reason `hash`): the route's salt (default: the route name),
//! the identity and the variants' weights. Targeting rules read request headers and cookies,
//! which an offline question does not have, so they are not applied. On a route with a ramp,
//! the weights are those at `--at`, or now.

use std::path::Path;
use std::process::ExitCode;

use canary_filter::{ConfigError, RoutingTable};
use serde_json::json;

use super::validate::{malformed, report};
use crate::args::Output;
use crate::document::{self, Kind};
use crate::spec::Spec;

pub fn run(
    file: &Path,
    route: &str,
    user: &str,
    at: Option<u64>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let value = match document::load(file) {
        Ok(value) => value,
        Err(error) => return malformed(error),
    };
    let table = match document::kind(&value) {
        Kind::PluginConfig => document::compile(&value),
        Kind::CanarySpec => {
            Spec::from_value(value).and_then(|spec| RoutingTable::try_from(&spec.config))
        }
    };
    let table = match table {
        Ok(table) => table,
        Err(errors) => return Ok(report(&errors)),
    };
    let Some(found) = table.route(route) else {
        let known: Vec<&str> = table.routes.iter().map(|r| r.name.as_str()).collect();
        return Ok(report(
            &ConfigError::new(
                "--route",
                format!("no route {route:?}; the routes are {}", known.join(", ")),
            )
            .into(),
        ));
    };
    if user.is_empty() {
        return Ok(report(
            &ConfigError::new(
                "--user",
                "must not be empty (the filter never hashes an empty identity)",
            )
            .into(),
        ));
    }
    let variant = found
        .variants
        .get(found.assign_at(user.as_bytes(), at.unwrap_or_else(crate::ramps::now_millis)))
        .map(|v| v.name.as_str())
        .unwrap_or_default();
    let reason = canary_filter::Reason::Hash.label();
    tracing::debug!(route, salt = %found.stickiness.salt, variant, "assigned");
    match output {
        Output::Text => println!("{variant} ({reason})"),
        Output::Json => println!(
            "{}",
            json!({ "route": route, "variant": variant, "reason": reason })
        ),
    }
    Ok(ExitCode::SUCCESS)
}
