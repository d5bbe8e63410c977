//! `canaryctl assign FILE --route R [--user ID] [--path P] [--header H]... [--cookie C]...`:
//! the variant the filter gives a request on a route, offline.
//!
//! With `--user` alone it is the filter's hash decision (reason `hash`): the route's salt
//! (default: the route name), the identity and the variants' weights; targeting rules need a
//! request, so they are not applied. With a request described by `--path` (query string
//! included), `--header` or `--cookie`, the filter's own decision is made on the route, whatever
//! its hosts and path prefixes: targeting rules first, then the identity, `--user` if given, or
//! else the request's identity keys and identity cookie (verified where cookies are signed).
//! A pin cookie the route honours decides before the identity (reason `pin`), and in session
//! mode an identity cookie carrying a variant still served keeps it (reason `session`).
//! A request with no identity would be given a new random one (reason `new`), whose variant
//! cannot be known offline.
//! On a route with a ramp, the weights are those at `--at`, or now.

use std::path::Path;
use std::process::ExitCode;

use canary_filter::{ConfigError, ConfigErrors, Reason, RequestHeaders, RoutingTable};
use serde_json::json;

use super::validate::{malformed, report};
use crate::args::{Output, RequestArgs};
use crate::document::{self, Kind};
use crate::spec::Spec;

pub fn run(
    file: &Path,
    route: &str,
    user: Option<&str>,
    request: &RequestArgs,
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
        return Ok(report(&error(
            "--route",
            format!("no route {route:?}; the routes are {}", known.join(", ")),
        )));
    };
    if user == Some("") {
        return Ok(report(&error(
            "--user",
            "must not be empty (the filter never hashes an empty identity)",
        )));
    }
    let headers = match request_headers(request) {
        Ok(headers) => headers,
        Err(errors) => return Ok(report(&errors)),
    };
    let now = at.unwrap_or_else(crate::ramps::now_millis);
    let decided = if request.is_given() {
        found.decide(&headers, || now, |_| false)
    } else {
        None
    };
    let (variant, reason) = match (decided, user) {
        (Some(d), _) if matches!(d.reason, Reason::Rule(_) | Reason::Lane | Reason::Pin) => {
            (Some(d.variant), d.reason)
        }
        (_, Some(user)) => (
            found.variants.get(found.assign_at(user.as_bytes(), now)),
            Reason::Hash,
        ),
        (Some(d), None) if matches!(d.reason, Reason::Hash | Reason::Session) => {
            (Some(d.variant), d.reason)
        }
        _ => (None, Reason::New),
    };
    let variant = variant.map(|v| v.name.as_str());
    let reason = match reason {
        Reason::Rule(i) => {
            let rule = found.targeting.get(i).map_or("", |r| r.name.as_str());
            format!("rule:{rule}")
        }
        other => other.label().to_owned(),
    };
    tracing::debug!(route, salt = %found.stickiness.salt, ?variant, %reason, "assigned");
    match (output, variant) {
        (Output::Text, Some(variant)) => println!("{variant} ({reason})"),
        (Output::Text, None) => {
            println!("- ({reason}: no identity; the filter issues a random one)")
        }
        (Output::Json, variant) => println!(
            "{}",
            json!({ "route": route, "variant": variant, "reason": reason })
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn error(at: &str, reason: impl Into<String>) -> ConfigErrors {
    ConfigError::new(at, reason).into()
}

/// The request as the filter reads it: `:path`, the headers by lowercase name, the cookies in
/// one `cookie` header.
fn request_headers(request: &RequestArgs) -> Result<RequestHeaders, ConfigErrors> {
    let mut headers = vec![(
        ":path".to_owned(),
        request.path.as_deref().unwrap_or("/").as_bytes().to_vec(),
    )];
    let mut errors = Vec::new();
    for header in &request.headers {
        match header.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() => headers.push((
                name.trim().to_ascii_lowercase(),
                value.trim().as_bytes().to_vec(),
            )),
            _ => errors.push(ConfigError::new(
                "--header",
                format!("{header:?} is not NAME: VALUE"),
            )),
        }
    }
    for cookie in &request.cookies {
        if !cookie.contains('=') {
            errors.push(ConfigError::new(
                "--cookie",
                format!("{cookie:?} is not NAME=VALUE"),
            ));
        }
    }
    if !request.cookies.is_empty() {
        headers.push(("cookie".to_owned(), request.cookies.join("; ").into_bytes()));
    }
    if errors.is_empty() {
        Ok(RequestHeaders::from_pairs(&headers))
    } else {
        Err(ConfigErrors(errors))
    }
}
