//! A standalone Envoy's admin endpoint: `/stats?format=json&histogram_buckets=detailed`, read
//! at the start and the end of a step. The window's numbers are the differences:
//!
//! - requests and 5xx: `wasmcustom.canary.route.R.variant.V.response.<class>` counters;
//! - p99: the `upstream_time` histogram's `totals`, Envoy's fine-grained buckets
//!   (`lower_bound`, `width`, `count`, counted since Envoy started), subtracted bucket by
//!   bucket; the quantile is interpolated inside the bucket it falls in. (`percentiles` would
//!   not do: their `cumulative` covers Envoy's whole life and `interval` only the last stats
//!   flush.) Envoy merges histograms at each stats flush (`stats_flush_interval`, 5 s by
//!   default), so latency samples reach the window up to that much later than the counters.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use tracing::debug;

use super::{MetricsError, Result};
use crate::http::{self, HttpClient};
use crate::rollout::analysis::{quantile, Measured};

const PREFIX: &str = "wasmcustom.canary.route.";

#[derive(Debug, Clone)]
pub struct EnvoyAdmin {
    url: String,
    client: HttpClient,
}

/// One variant's counters and latency buckets at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
struct VariantStats {
    requests: u64,
    errors: u64,
    /// `(lower_bound, width)` as bits → count.
    buckets: HashMap<(u64, u64), u64>,
}

/// Every variant of one route, at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot(BTreeMap<String, VariantStats>);

impl EnvoyAdmin {
    pub fn new(url: &str, client: HttpClient) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            client,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The route's counters and histograms now.
    pub fn snapshot(&self, route: &str) -> Result<Snapshot> {
        let filter = format!("^wasmcustom\\.canary\\.route\\.{route}\\.");
        let url = format!(
            "{}/stats?format=json&histogram_buckets=detailed&filter={}",
            self.url,
            http::encode(&filter)
        );
        let body = self.client.get(&url)?;
        let snapshot = parse(&body, route).map_err(|reason| MetricsError::Answer {
            url: url.clone(),
            reason,
        })?;
        debug!(url, variants = snapshot.0.len(), "read Envoy stats");
        Ok(snapshot)
    }
}

impl Snapshot {
    /// What `variant` did between `start` and this snapshot.
    pub fn since(&self, start: &Snapshot, variant: &str) -> Measured {
        let empty = VariantStats::default();
        let end = self.0.get(variant).unwrap_or(&empty);
        let start = start.0.get(variant).unwrap_or(&empty);
        // A counter that went down means Envoy restarted: count from zero.
        let delta = |end: u64, start: u64| end.checked_sub(start).unwrap_or(end);
        let mut buckets: Vec<(f64, f64, f64)> = end
            .buckets
            .iter()
            .map(|(&(lower, width), &count)| {
                let before = start.buckets.get(&(lower, width)).copied().unwrap_or(0);
                (
                    f64::from_bits(lower),
                    f64::from_bits(width),
                    delta(count, before) as f64,
                )
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Measured {
            requests: delta(end.requests, start.requests) as f64,
            errors: delta(end.errors, start.errors) as f64,
            p99_ms: quantile(&buckets, 0.99),
        }
    }
}

/// The route's variants in an Envoy `/stats?format=json` body.
fn parse(body: &[u8], route: &str) -> Result<Snapshot, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let stats = document
        .get("stats")
        .and_then(Value::as_array)
        .ok_or("no `stats` list")?;
    let mut snapshot = Snapshot::default();
    for stat in stats {
        if let (Some(name), Some(value)) = (
            stat.get("name").and_then(Value::as_str),
            stat.get("value").and_then(Value::as_u64),
        ) {
            if let Some((variant, class)) = response_counter(name, route) {
                let variant = snapshot.0.entry(variant.to_owned()).or_default();
                variant.requests += value;
                if class == "5xx" {
                    variant.errors += value;
                }
            }
        }
        let details = stat
            .pointer("/histograms/details")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for histogram in details {
            let Some(variant) = histogram
                .get("name")
                .and_then(Value::as_str)
                .and_then(|name| upstream_time(name, route))
            else {
                continue;
            };
            let buckets = &mut snapshot.0.entry(variant.to_owned()).or_default().buckets;
            for bucket in histogram
                .get("totals")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let field = |key: &str| bucket.get(key).and_then(Value::as_f64);
                let (Some(lower), Some(width), Some(count)) =
                    (field("lower_bound"), field("width"), field("count"))
                else {
                    return Err(format!(
                        "a histogram bucket without lower_bound, width and count: {bucket}"
                    ));
                };
                *buckets
                    .entry((lower.to_bits(), width.to_bits()))
                    .or_default() += count as u64;
            }
        }
    }
    Ok(snapshot)
}

/// `(variant, class)` of `wasmcustom.canary.route.<route>.variant.<variant>.response.<class>`.
fn response_counter<'a>(name: &'a str, route: &str) -> Option<(&'a str, &'a str)> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix(route)?;
    let rest = rest.strip_prefix(".variant.")?;
    let (variant, class) = rest.split_once(".response.")?;
    (!variant.contains('.') && !class.contains('.')).then_some((variant, class))
}

/// The variant of `wasmcustom.canary.route.<route>.variant.<variant>.upstream_time`.
fn upstream_time<'a>(name: &'a str, route: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix(route)?;
    let variant = rest
        .strip_prefix(".variant.")?
        .strip_suffix(".upstream_time")?;
    (!variant.contains('.')).then_some(variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped as Envoy 1.40 answers `/stats?format=json&histogram_buckets=detailed`.
    fn body(canary_2xx: u64, canary_5xx: u64, slow: u64) -> Vec<u8> {
        serde_json::json!({"stats": [
            {"name": "wasmcustom.canary.route.web.variant.canary.decision.hash", "value": 999},
            {"name": "wasmcustom.canary.route.web.variant.canary.response.2xx", "value": canary_2xx},
            {"name": "wasmcustom.canary.route.web.variant.canary.response.5xx", "value": canary_5xx},
            {"name": "wasmcustom.canary.route.web.variant.stable.response.2xx", "value": 500},
            {"name": "wasmcustom.canary.route.webshop.variant.canary.response.5xx", "value": 77},
            {"histograms": {"supported_percentiles": [0, 50, 99, 100], "details": [
                {"name": "wasmcustom.canary.route.web.variant.canary.upstream_time",
                 "totals": [{"lower_bound": 1, "width": 0.1, "count": 100},
                            {"lower_bound": 250, "width": 10, "count": slow}],
                 "intervals": [], "percentiles": []},
                {"name": "wasmcustom.canary.route.web.variant.stable.upstream_time",
                 "totals": [{"lower_bound": 0, "width": 0, "count": 41}],
                 "intervals": [], "percentiles": []}
            ]}}
        ]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let start = parse(&body(100, 0, 0), "web").unwrap();
        let end = parse(&body(180, 20, 5), "web").unwrap();
        let canary = end.since(&start, "canary");
        assert_eq!((canary.requests, canary.errors), (100.0, 20.0));
        // 5 slow samples of 5 in the window: the p99 is in the 250..260 bucket.
        let p99 = canary.p99_ms.unwrap();
        assert!((250.0..=260.0).contains(&p99), "{p99}");
        let stable = end.since(&start, "stable");
        assert_eq!(stable.requests, 0.0);
        assert_eq!(stable.p99_ms, None, "no latency samples in the window");
        assert_eq!(end.since(&start, "blue"), Measured::default());
    }

    #[test]
    fn a_restarted_envoy_counts_from_zero() {
        let start = parse(&body(1000, 10, 0), "web").unwrap();
        let end = parse(&body(50, 5, 0), "web").unwrap();
        let canary = end.since(&start, "canary");
        assert_eq!((canary.requests, canary.errors), (55.0, 5.0));
    }

    #[test]
    fn names() {
        assert_eq!(
            response_counter("wasmcustom.canary.route.web.variant.v2.response.5xx", "web"),
            Some(("v2", "5xx"))
        );
        assert_eq!(
            response_counter(
                "wasmcustom.canary.route.webshop.variant.v2.response.5xx",
                "web"
            ),
            None
        );
        assert_eq!(
            response_counter(
                "wasmcustom.canary.route.web.variant.v2.decision.hash",
                "web"
            ),
            None
        );
        assert_eq!(
            upstream_time(
                "wasmcustom.canary.route.web.variant.v2.upstream_time",
                "web"
            ),
            Some("v2")
        );
        assert_eq!(
            upstream_time(
                "wasmcustom.canary.route.web2.variant.v2.upstream_time",
                "web"
            ),
            None
        );
    }

    #[test]
    fn not_stats_json_is_an_error() {
        assert!(parse(b"cluster.x: 1", "web").is_err());
        assert!(parse(b"{}", "web").is_err());
    }
}
