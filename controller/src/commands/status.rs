//! `status`: each route's live weights and, given an Envoy admin URL, the split Envoy made. A
//! ramping route shows its weights now and at the ramp's end.

use std::fmt::Write as _;
use std::process::ExitCode;

use canary_filter::config::StickinessMode;
use canary_filter::table::parse_weight;
use canary_filter::PluginConfig;
use serde_json::{json, Value};

use crate::args::Output;
use crate::http::HttpOptions;
use crate::observed::{self, Observed};
use crate::ramps::{self, RampView};
use crate::targets::{Clients, Target};
use crate::weights::{self, weight_json, weight_text, RouteWeights};

const BAR_WIDTH: usize = 40;

/// Reads the target on `runtime`; Envoy's admin endpoint is read outside it (its client is
/// blocking).
pub fn run(
    runtime: &tokio::runtime::Runtime,
    clients: &Clients,
    target: &str,
    envoy_admin: Option<&str>,
    http: &HttpOptions,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let target: Target = target.parse()?;
    let config = runtime.block_on(target.read(clients))?;
    if let Err(errors) = canary_filter::RoutingTable::try_from(&config) {
        eprintln!("warning: the filter rejects the live configuration of {target}:\n{errors}");
    }
    let mut routes = weights::read_routes(&config)?;
    let ramps = ramps::views(&config, ramps::now_millis());
    for route in &mut routes {
        if let Some(ramp) = ramps.get(&route.name) {
            for (variant, weight) in route.variants.iter_mut().zip(&ramp.now) {
                variant.weight = *weight;
            }
        }
    }
    let observed = envoy_admin
        .map(|url| observed::fetch(url, http))
        .transpose()?;
    let modes = modes(&config);
    match output {
        Output::Text => print!(
            "{}",
            text(&target, &routes, &ramps, &modes, observed.as_ref())
        ),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json_report(
                &target,
                &routes,
                &ramps,
                &modes,
                observed.as_ref()
            ))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Decisions for one variant, and its share of the route's decisions (None before any).
fn observed_share(observed: &Observed, route: &str, variant: &str) -> (u64, Option<f64>) {
    let counts = observed.route(route);
    let count = counts
        .and_then(|c| c.get(variant))
        .copied()
        .unwrap_or_default();
    let total: u64 = counts.map(|c| c.values().sum()).unwrap_or_default();
    let share = (total > 0).then(|| count as f64 / total as f64);
    (count, share)
}

/// Ramping routes by name, with `routes` holding their weights now.
type Ramps = std::collections::BTreeMap<String, RampView>;

/// The stickiness mode of each route whose mode is not the default, `hash`, by route name.
type Modes = std::collections::BTreeMap<String, &'static str>;

fn modes(config: &PluginConfig) -> Modes {
    config
        .routes
        .iter()
        .filter_map(|route| {
            let mode = route.stickiness.as_ref()?.mode?;
            let name = match mode {
                StickinessMode::Hash => return None,
                StickinessMode::Session => "session",
            };
            Some((route.name.clone(), name))
        })
        .collect()
}

fn text(
    target: &Target,
    routes: &[RouteWeights],
    ramps: &Ramps,
    modes: &Modes,
    observed: Option<&Observed>,
) -> String {
    let mut out = format!("{target}\n");
    let width = routes
        .iter()
        .flat_map(|r| r.variants.iter().map(|v| v.name.len()))
        .chain([7])
        .max()
        .unwrap_or(7);
    for route in routes {
        let _ = writeln!(out, "route {}", route.name);
        if let Some(mode) = modes.get(&route.name) {
            let _ = writeln!(out, "  stickiness: {mode}");
        }
        let ramp = ramps.get(&route.name);
        if let Some(ramp) = ramp {
            let c = &ramp.config;
            let _ = writeln!(
                out,
                "  ramp of {} from {} % to {} %, {} from {}: {:.0} % done",
                c.variant,
                c.from,
                c.to,
                c.duration,
                c.start,
                ramp.progress * 100.0
            );
        }
        if observed.is_some() || ramp.is_some() {
            let _ = write!(out, "  {:width$}  {:>9}", "variant", "weight");
            if ramp.is_some() {
                let _ = write!(out, "  {:>9}", "final");
            }
            if observed.is_some() {
                let _ = write!(out, "  {:>9}  decisions since Envoy started", "observed");
            }
            out.push('\n');
        }
        for (k, variant) in route.variants.iter().enumerate() {
            let weight = format!("{} %", weight_text(variant.weight));
            let _ = write!(out, "  {:width$}  {weight:>9}", variant.name);
            if let Some(end) = ramp.and_then(|r| r.end.get(k)) {
                let _ = write!(out, "  {:>9}", format!("{} %", weight_text(*end)));
            }
            if let Some(observed) = observed {
                let (count, share) = observed_share(observed, &route.name, &variant.name);
                let shown = share.map_or("-".to_owned(), |s| format!("{:.1} %", s * 100.0));
                let _ = write!(
                    out,
                    "  {shown:>9}  {}  {count}",
                    observed::bar(share.unwrap_or(0.0), BAR_WIDTH)
                );
            }
            out.push('\n');
        }
    }
    out
}

fn json_report(
    target: &Target,
    routes: &[RouteWeights],
    ramps: &Ramps,
    modes: &Modes,
    observed: Option<&Observed>,
) -> Value {
    let routes: Vec<Value> = routes
        .iter()
        .map(|route| {
            let ramp = ramps.get(&route.name);
            let variants: Vec<Value> = route
                .variants
                .iter()
                .enumerate()
                .map(|(k, variant)| {
                    let mut v =
                        json!({ "name": variant.name, "weight": weight_json(variant.weight) });
                    if let Some(end) = ramp.and_then(|r| r.end.get(k)) {
                        v["final"] = weight_json(*end);
                    }
                    if let Some(observed) = observed {
                        let (count, share) = observed_share(observed, &route.name, &variant.name);
                        v["observed"] = json!({
                            "decisions": count,
                            "percent": share.map(|s| (s * 100_000.0).round() / 1000.0),
                        });
                    }
                    v
                })
                .collect();
            let mut r = json!({ "name": route.name, "variants": variants });
            if let Some(mode) = modes.get(&route.name) {
                r["stickiness"] = json!({ "mode": mode });
            }
            if let Some(ramp) = ramp {
                r["ramp"] = json!({
                    "variant": ramp.config.variant,
                    "from": percent_json(ramp.config.from),
                    "to": percent_json(ramp.config.to),
                    "start": ramp.config.start,
                    "duration": ramp.config.duration,
                    "progress": (ramp.progress * 1000.0).round() / 1000.0,
                });
            }
            r
        })
        .collect();
    json!({ "target": target.to_string(), "routes": routes })
}

/// A percentage of the configuration as a weight is written: `50`, not `50.0`.
fn percent_json(percent: f64) -> Value {
    parse_weight(percent).map_or(Value::from(percent), weight_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use canary_filter::Weight;
    use std::collections::BTreeMap;

    fn fixture() -> (Target, Vec<RouteWeights>, Observed) {
        let config = canary_filter::config::decode(
            br#"{"routes": [{"name": "reviews", "variants": [
            {"name": "stable", "weight": 70}, {"name": "canary", "weight": 30}]}]}"#,
        )
        .unwrap();
        let routes = weights::read_routes(&config).unwrap();
        let counts = BTreeMap::from([("stable".to_owned(), 75), ("canary".to_owned(), 25)]);
        let observed = Observed(BTreeMap::from([("reviews".to_owned(), counts)]));
        (
            Target::File("/etc/envoy/ecds.json".into()),
            routes,
            observed,
        )
    }

    #[test]
    fn text_shows_weights() {
        let (target, routes, _) = fixture();
        assert_eq!(
            text(&target, &routes, &Ramps::new(), &Modes::new(), None),
            "file:/etc/envoy/ecds.json\nroute reviews\n  stable        70 %\n  canary        30 %\n"
        );
    }

    #[test]
    fn text_shows_the_observed_split_as_bars() {
        let (target, routes, observed) = fixture();
        let out = text(
            &target,
            &routes,
            &Ramps::new(),
            &Modes::new(),
            Some(&observed),
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[3]
                .starts_with("  stable        70 %     75.0 %  ██████████████████████████████·"),
            "{out}"
        );
        assert!(lines[3].ends_with("  75"), "{out}");
        assert!(lines[4].contains("25.0 %  ██████████·"), "{out}");
    }

    #[test]
    fn a_ramping_route_shows_its_weights_now_and_at_the_end() {
        let config = canary_filter::config::decode(
            br#"{"routes": [{"name": "reviews", "variants": [
            {"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "ramp": {"variant": "canary", "from": 0, "to": 50,
                     "start": "2026-12-07T12:00:00Z", "duration": "2h"}}]}"#,
        )
        .unwrap();
        let mut routes = weights::read_routes(&config).unwrap();
        let at = ramps::parse_at("2026-12-07T13:00:00Z").unwrap();
        let ramps = ramps::views(&config, at);
        for (variant, weight) in routes[0].variants.iter_mut().zip(&ramps["reviews"].now) {
            variant.weight = *weight;
        }
        let target = Target::File("/etc/envoy/ecds.json".into());
        assert_eq!(
            text(&target, &routes, &ramps, &Modes::new(), None),
            "file:/etc/envoy/ecds.json\nroute reviews\n  \
             ramp of canary from 0 % to 50 %, 2h from 2026-12-07T12:00:00Z: 50 % done\n  \
             variant     weight      final\n  \
             stable        75 %       50 %\n  \
             canary        25 %       50 %\n"
        );
        let report = json_report(&target, &routes, &ramps, &Modes::new(), None);
        assert_eq!(
            report["routes"][0],
            json!({"name": "reviews", "variants": [
                {"name": "stable", "weight": 75, "final": 50},
                {"name": "canary", "weight": 25, "final": 50}],
              "ramp": {"variant": "canary", "from": 0, "to": 50,
                       "start": "2026-12-07T12:00:00Z", "duration": "2h", "progress": 0.5}})
        );
    }

    #[test]
    fn json_lists_routes_variants_weights_and_observed() {
        let (target, mut routes, observed) = fixture();
        routes[0].variants[1].weight = Weight(30_500);
        routes[0].variants[0].weight = Weight(69_500);
        assert_eq!(
            json_report(
                &target,
                &routes,
                &Ramps::new(),
                &Modes::new(),
                Some(&observed)
            ),
            json!({"target": "file:/etc/envoy/ecds.json", "routes": [{"name": "reviews", "variants": [
                {"name": "stable", "weight": 69.5, "observed": {"decisions": 75, "percent": 75.0}},
                {"name": "canary", "weight": 30.5, "observed": {"decisions": 25, "percent": 25.0}}]}]})
        );
        let (target, routes, _) = fixture();
        let empty = Observed::default();
        let report = json_report(&target, &routes, &Ramps::new(), &Modes::new(), Some(&empty));
        assert_eq!(
            report["routes"][0]["variants"][0]["observed"],
            json!({"decisions": 0, "percent": null})
        );
    }
}
