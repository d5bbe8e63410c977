//! The split Envoy actually made: the filter's decision counters
//! (`wasmcustom.canary.route.<route>.variant.<variant>.decision.<reason>`), read from the
//! Envoy admin endpoint's `/stats?format=json` and summed per variant over every reason.
//! The counters count since the Envoy started, across configuration updates.

use std::collections::BTreeMap;

use serde::Deserialize;
use tracing::debug;

use crate::http::{HttpClient, HttpOptions};

const PREFIX: &str = "wasmcustom.canary.route.";
/// The admin `filter` parameter: `^wasmcustom\.canary\.route\.`, URL-encoded.
const FILTER: &str = "%5Ewasmcustom%5C.canary%5C.route%5C.";

#[derive(Debug, thiserror::Error)]
pub enum ObservedError {
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error("{url} did not answer Envoy stats JSON: {reason}")]
    Body { url: String, reason: String },
}

/// Decisions counted per route and variant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed(pub BTreeMap<String, BTreeMap<String, u64>>);

impl Observed {
    /// The decisions counted for one route, by variant.
    pub fn route(&self, route: &str) -> Option<&BTreeMap<String, u64>> {
        self.0.get(route)
    }
}

#[derive(Deserialize)]
struct Stats {
    stats: Vec<Stat>,
}

/// A counter or gauge (`name`, `value`); histograms come as another shape and are skipped.
#[derive(Deserialize)]
struct Stat {
    name: Option<String>,
    value: Option<u64>,
}

/// Sums the decision counters in an Envoy `/stats?format=json` body.
pub fn parse_stats_json(body: &[u8]) -> Result<Observed, serde_json::Error> {
    let stats: Stats = serde_json::from_slice(body)?;
    let mut observed = Observed::default();
    for stat in stats.stats {
        let (Some(name), Some(value)) = (stat.name, stat.value) else {
            continue;
        };
        if let Some((route, variant)) = decision_counter(&name) {
            *observed
                .0
                .entry(route.to_owned())
                .or_default()
                .entry(variant.to_owned())
                .or_default() += value;
        }
    }
    Ok(observed)
}

/// `(route, variant)` of a decision counter name. Route and variant names hold no dots.
fn decision_counter(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.split('.');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(route), Some("variant"), Some(variant), Some("decision"), Some(_reason), None) => {
            Some((route, variant))
        }
        _ => None,
    }
}

/// Reads the decision counters from an Envoy admin endpoint (`http://HOST:PORT`, or
/// `https://`), reached as `http` says.
pub fn fetch(admin_url: &str, http: &HttpOptions) -> Result<Observed, ObservedError> {
    let url = format!(
        "{}/stats?format=json&filter={FILTER}",
        admin_url.trim_end_matches('/')
    );
    let body = HttpClient::new(http)?.get(&url)?;
    debug!(url, bytes = body.len(), "read Envoy stats");
    parse_stats_json(&body).map_err(|e| ObservedError::Body {
        url,
        reason: e.to_string(),
    })
}

/// A horizontal bar `width` cells wide, filled in proportion to `share` (0..=1), in eighths.
pub fn bar(share: f64, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (share.clamp(0.0, 1.0) * width as f64 * 8.0).round() as usize;
    let (full, part) = (eighths / 8, eighths % 8);
    let mut bar = "█".repeat(full);
    if part > 0 {
        bar.push(EIGHTHS.get(part).copied().unwrap_or(' '));
    }
    let used = full + usize::from(part > 0);
    bar.push_str(&"·".repeat(width.saturating_sub(used)));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_decision_counters_per_variant_over_every_reason() {
        let body = br#"{"stats":[
            {"name":"wasmcustom.canary.route.reviews.variant.stable.decision.hash","value":60},
            {"name":"wasmcustom.canary.route.reviews.variant.stable.decision.new","value":10},
            {"name":"wasmcustom.canary.route.reviews.variant.canary.decision.rule","value":5},
            {"name":"wasmcustom.canary.route.reviews.variant.canary.decision.hash","value":25},
            {"name":"wasmcustom.canary.route.reviews.variant.canary.response.2xx","value":999},
            {"name":"wasmcustom.canary.route.ratings.variant.v2.decision.hash","value":3},
            {"name":"cluster.stable.upstream_rq_total","value":77},
            {"histograms":{"supported_quantiles":[0.5],"computed_quantiles":[]}}
        ]}"#;
        let observed = parse_stats_json(body).unwrap();
        let reviews = observed.route("reviews").unwrap();
        assert_eq!(reviews.get("stable"), Some(&70), "hash + new");
        assert_eq!(
            reviews.get("canary"),
            Some(&30),
            "rule + hash, not responses"
        );
        assert_eq!(observed.route("ratings").unwrap().get("v2"), Some(&3));
        assert_eq!(observed.0.len(), 2);
    }

    #[test]
    fn counter_names() {
        let cases = [
            (
                "wasmcustom.canary.route.r.variant.v.decision.hash",
                Some(("r", "v")),
            ),
            ("wasmcustom.canary.route.r.variant.v.decision", None),
            ("wasmcustom.canary.route.r.variant.v.decision.hash.x", None),
            ("wasmcustom.canary.route.r.variant.v.response.2xx", None),
            ("canary.route.r.variant.v.decision.hash", None),
        ];
        for (name, want) in cases {
            assert_eq!(decision_counter(name), want, "{name}");
        }
    }

    #[test]
    fn not_stats_json_is_an_error() {
        assert!(parse_stats_json(b"cluster.x: 1").is_err());
    }

    #[test]
    fn bars() {
        assert_eq!(bar(0.0, 4), "····");
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 4), "██··");
        assert_eq!(bar(0.3, 4), "█▎··", "1.2 cells: one full, two eighths");
        assert_eq!(bar(2.0, 2), "██", "clamped");
        assert_eq!(bar(0.3, 10).chars().count(), 10);
    }

    #[test]
    fn fetch_refuses_a_url_that_is_not_http() {
        for url in ["ftp://127.0.0.1:1", "not a url"] {
            assert!(
                matches!(
                    fetch(url, &HttpOptions::default()),
                    Err(ObservedError::Http(crate::http::HttpError::Url { .. }))
                ),
                "{url}"
            );
        }
    }
}
