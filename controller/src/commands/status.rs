//! `status`: each route's live weights and, given an Envoy admin URL, the split Envoy made.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::args::Output;
use crate::http::HttpOptions;
use crate::observed::{self, Observed};
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
    let routes = weights::read_routes(&config)?;
    let observed = envoy_admin
        .map(|url| observed::fetch(url, http))
        .transpose()?;
    match output {
        Output::Text => print!("{}", text(&target, &routes, observed.as_ref())),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json_report(&target, &routes, observed.as_ref()))?
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

fn text(target: &Target, routes: &[RouteWeights], observed: Option<&Observed>) -> String {
    let mut out = format!("{target}\n");
    let width = routes
        .iter()
        .flat_map(|r| r.variants.iter().map(|v| v.name.len()))
        .chain([7])
        .max()
        .unwrap_or(7);
    for route in routes {
        let _ = writeln!(out, "route {}", route.name);
        if observed.is_some() {
            let _ = writeln!(
                out,
                "  {:width$}  {:>9}  {:>9}  decisions since Envoy started",
                "variant", "weight", "observed"
            );
        }
        for variant in &route.variants {
            let weight = format!("{} %", weight_text(variant.weight));
            let _ = write!(out, "  {:width$}  {weight:>9}", variant.name);
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

fn json_report(target: &Target, routes: &[RouteWeights], observed: Option<&Observed>) -> Value {
    let routes: Vec<Value> = routes
        .iter()
        .map(|route| {
            let variants: Vec<Value> = route
                .variants
                .iter()
                .map(|variant| {
                    let mut v =
                        json!({ "name": variant.name, "weight": weight_json(variant.weight) });
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
            json!({ "name": route.name, "variants": variants })
        })
        .collect();
    json!({ "target": target.to_string(), "routes": routes })
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
            text(&target, &routes, None),
            "file:/etc/envoy/ecds.json\nroute reviews\n  stable        70 %\n  canary        30 %\n"
        );
    }

    #[test]
    fn text_shows_the_observed_split_as_bars() {
        let (target, routes, observed) = fixture();
        let out = text(&target, &routes, Some(&observed));
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
    fn json_lists_routes_variants_weights_and_observed() {
        let (target, mut routes, observed) = fixture();
        routes[0].variants[1].weight = Weight(30_500);
        routes[0].variants[0].weight = Weight(69_500);
        assert_eq!(
            json_report(&target, &routes, Some(&observed)),
            json!({"target": "file:/etc/envoy/ecds.json", "routes": [{"name": "reviews", "variants": [
                {"name": "stable", "weight": 69.5, "observed": {"decisions": 75, "percent": 75.0}},
                {"name": "canary", "weight": 30.5, "observed": {"decisions": 25, "percent": 25.0}}]}]})
        );
        let (target, routes, _) = fixture();
        let empty = Observed::default();
        let report = json_report(&target, &routes, Some(&empty));
        assert_eq!(
            report["routes"][0]["variants"][0]["observed"],
            json!({"decisions": 0, "percent": null})
        );
    }
}
