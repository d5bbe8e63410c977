//! A standalone Envoy's admin endpoint: `/stats?format=json&histogram_buckets=detailed`, read
//! at the start and the end of a step. The window's numbers are the differences. Two sets of
//! stats can be read:
//!
//! - [`filter`]: the filter's own `response.<class>` counters and `upstream_time` histogram
//!   (counted only when the filter's `metrics.responses` is on);
//! - [`clusters`]: Envoy's per-cluster upstream stats, where each variant has its own cluster
//!   (`--envoy-cluster VARIANT=CLUSTER`).
//!
//! Either way the p99 comes from a histogram's `totals`, Envoy's fine-grained buckets
//! (`lower_bound`, `width`, `count`, counted since Envoy started), subtracted bucket by bucket;
//! the quantile is interpolated inside the bucket it falls in. (`percentiles` would not do:
//! their `cumulative` covers Envoy's whole life and `interval` only the last stats flush.)
//! Envoy merges histograms at each stats flush (`stats_flush_interval`, 5 s by default), so
//! latency samples reach the window up to that much later than the counters.

pub mod clusters;
mod filter;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use tracing::debug;

pub use self::clusters::Clusters;
use super::{MetricsError, Result};
use crate::http::{self, HttpClient};
use crate::rollout::analysis::{quantile, Measured};

#[derive(Debug, Clone)]
pub struct EnvoyAdmin {
    url: String,
    client: HttpClient,
    /// Where set, the variants' clusters, whose stats are read instead of the filter's.
    clusters: Option<Clusters>,
}

/// A histogram's buckets: `(lower_bound, width)` as bits → count.
type Buckets = HashMap<(u64, u64), u64>;

/// The counters and histograms of one `/stats?format=json&histogram_buckets=detailed` answer,
/// by name.
#[derive(Debug, Default)]
struct Reading {
    counters: HashMap<String, u64>,
    histograms: HashMap<String, Buckets>,
}

/// One variant's counters and latency buckets at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
struct VariantStats {
    requests: u64,
    errors: u64,
    buckets: Buckets,
}

/// Every variant of one route, at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    variants: BTreeMap<String, VariantStats>,
    /// The filter's decisions on the route, all variants together (0 for cluster stats).
    decisions: u64,
}

impl EnvoyAdmin {
    pub fn new(url: &str, client: HttpClient) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            client,
            clusters: None,
        }
    }

    /// Reads the stats of these clusters instead of the filter's.
    pub fn with_clusters(self, clusters: Clusters) -> Self {
        Self {
            clusters: Some(clusters),
            ..self
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn clusters(&self) -> Option<&Clusters> {
        self.clusters.as_ref()
    }

    /// The route's counters and histograms now.
    pub fn snapshot(&self, route: &str) -> Result<Snapshot> {
        let filter = match &self.clusters {
            None => filter::stats_filter(route),
            Some(clusters) => clusters.stats_filter(),
        };
        let url = format!(
            "{}/stats?format=json&histogram_buckets=detailed&filter={}",
            self.url,
            http::encode(&filter)
        );
        let body = self.client.get(&url)?;
        let reading = Reading::parse(&body).map_err(|reason| MetricsError::Answer {
            url: url.clone(),
            reason,
        })?;
        let snapshot = match &self.clusters {
            None => filter::snapshot(&reading, route),
            Some(clusters) => clusters
                .snapshot(&reading)
                .map_err(|missing| self.missing_cluster(missing))?,
        };
        debug!(url, variants = snapshot.variants.len(), "read Envoy stats");
        Ok(snapshot)
    }

    /// What `variants` of `route` did between the snapshots `start` and `end`, in the order
    /// given. From the filter's stats, a window in which the filter decided requests but
    /// counted no response at all is an error: its response metrics are off.
    pub fn measure(
        &self,
        start: &Snapshot,
        end: &Snapshot,
        route: &str,
        variants: &[&str],
    ) -> Result<Vec<Measured>> {
        if self.clusters.is_none() {
            if let Some(decisions) = end.unanswered(start) {
                return Err(MetricsError::NoResponses {
                    route: route.to_owned(),
                    decisions: decisions as f64,
                });
            }
        }
        Ok(variants.iter().map(|v| end.since(start, v)).collect())
    }

    /// The error for a cluster Envoy does not have, listing those it has.
    fn missing_cluster(&self, missing: clusters::Missing) -> MetricsError {
        let url = format!("{}/clusters?format=json", self.url);
        let known = self
            .client
            .get(&url)
            .map_err(|error| error.to_string())
            .and_then(|body| clusters::names(&body));
        MetricsError::MissingCluster {
            variant: missing.variant,
            cluster: missing.cluster,
            known: match known {
                Ok(names) if names.is_empty() => "none".to_owned(),
                Ok(names) => names.join(", "),
                Err(reason) => format!("unknown ({url}: {reason})"),
            },
        }
    }
}

impl Snapshot {
    /// What `variant` did between `start` and this snapshot.
    pub fn since(&self, start: &Snapshot, variant: &str) -> Measured {
        let empty = VariantStats::default();
        let end = self.variants.get(variant).unwrap_or(&empty);
        let start = start.variants.get(variant).unwrap_or(&empty);
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

    /// The decisions since `start` when the filter decided requests but counted no response
    /// for any variant.
    fn unanswered(&self, start: &Snapshot) -> Option<u64> {
        let decisions = delta(self.decisions, start.decisions);
        let answered = self
            .variants
            .keys()
            .any(|variant| self.since(start, variant).requests > 0.0);
        (decisions > 0 && !answered).then_some(decisions)
    }
}

/// A counter's gain; one that went down means Envoy restarted, so it counts from zero.
fn delta(end: u64, start: u64) -> u64 {
    end.checked_sub(start).unwrap_or(end)
}

impl Reading {
    /// The counters and histograms of an Envoy `/stats?format=json` body.
    fn parse(body: &[u8]) -> Result<Reading, String> {
        let document: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let stats = document
            .get("stats")
            .and_then(Value::as_array)
            .ok_or("no `stats` list")?;
        let mut reading = Reading::default();
        for stat in stats {
            if let (Some(name), Some(value)) = (
                stat.get("name").and_then(Value::as_str),
                stat.get("value").and_then(Value::as_u64),
            ) {
                reading.counters.insert(name.to_owned(), value);
            }
            let details = stat
                .pointer("/histograms/details")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for histogram in details {
                let Some(name) = histogram.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let buckets = reading.histograms.entry(name.to_owned()).or_default();
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
        Ok(reading)
    }
}

impl VariantStats {
    /// Adds a histogram's buckets.
    fn add_buckets(&mut self, buckets: &Buckets) {
        for (&bucket, &count) in buckets {
            *self.buckets.entry(bucket).or_default() += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_stats_json_is_an_error() {
        assert!(Reading::parse(b"cluster.x: 1").is_err());
        assert!(Reading::parse(b"{}").is_err());
        let bad_bucket =
            br#"{"stats":[{"histograms":{"details":[{"name":"h","totals":[{"count":1}]}]}}]}"#;
        assert!(Reading::parse(bad_bucket).is_err());
    }

    #[test]
    fn counters_and_histograms_by_name() {
        let body = br#"{"stats":[
            {"name":"cluster.a.upstream_rq_2xx","value":7},
            {"name":"server.version","value":"1.40.0"},
            {"histograms":{"supported_percentiles":[99],"details":[
                {"name":"cluster.a.upstream_rq_time","totals":[{"lower_bound":4,"width":0.1,"count":2}],
                 "intervals":[],"percentiles":[]}]}}]}"#;
        let reading = Reading::parse(body).unwrap();
        assert_eq!(reading.counters.get("cluster.a.upstream_rq_2xx"), Some(&7));
        assert!(
            !reading.counters.contains_key("server.version"),
            "a text readout is no counter"
        );
        let buckets = &reading.histograms["cluster.a.upstream_rq_time"];
        assert_eq!(buckets.get(&(4f64.to_bits(), 0.1f64.to_bits())), Some(&2));
    }
}
