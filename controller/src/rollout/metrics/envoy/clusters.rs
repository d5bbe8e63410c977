//! Envoy's per-cluster upstream stats, where each variant goes to its own cluster
//! (`--envoy-cluster VARIANT=CLUSTER`):
//!
//! - requests: the sum of the `cluster.<c>.upstream_rq_<class>` counters (`1xx` to `5xx`), so
//!   that the 5xx are a share of the same count;
//! - 5xx: `cluster.<c>.upstream_rq_5xx`;
//! - p99: the `cluster.<c>.upstream_rq_time` histogram;
//! - whether the cluster exists: `cluster.<c>.upstream_rq_total`, which Envoy defines with the
//!   cluster.
//!
//! These are the cluster's numbers: requests that other routes (or listeners) send to the same
//! cluster are counted too.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{MetricsError, Reading, Result, Snapshot};

/// The response classes Envoy counts per cluster, `upstream_rq_1xx` to `upstream_rq_5xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The cluster serving each variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clusters(BTreeMap<String, String>);

/// A cluster that is not in Envoy's stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Missing {
    pub variant: String,
    pub cluster: String,
}

impl Clusters {
    /// `VARIANT=CLUSTER` pairs: each variant once, and no two variants on one cluster (their
    /// numbers could not be told apart).
    pub fn parse(pairs: &[String]) -> Result<Clusters> {
        let mut clusters = BTreeMap::new();
        for pair in pairs {
            let (variant, cluster) = pair
                .split_once('=')
                .filter(|(variant, cluster)| !variant.is_empty() && !cluster.is_empty())
                .ok_or_else(|| {
                    MetricsError::ClusterMapping(format!("{pair:?}: expected VARIANT=CLUSTER"))
                })?;
            if let Some((other, _)) = clusters.iter().find(|(_, c)| *c == cluster) {
                return Err(MetricsError::ClusterMapping(format!(
                    "variants {other} and {variant} are both served by cluster {cluster:?}: \
                     their numbers could not be told apart"
                )));
            }
            if clusters
                .insert(variant.to_owned(), cluster.to_owned())
                .is_some()
            {
                return Err(MetricsError::ClusterMapping(format!(
                    "variant {variant} is given twice"
                )));
            }
        }
        Ok(Clusters(clusters))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// That each of `variants` has a cluster.
    pub fn covers(&self, variants: &[&str]) -> Result<()> {
        match variants.iter().find(|v| !self.0.contains_key(**v)) {
            None => Ok(()),
            Some(variant) => Err(MetricsError::ClusterMapping(format!(
                "variant {variant} has no cluster: give --envoy-cluster {variant}=CLUSTER \
                 (the rolled-out variant and the baseline both need one)"
            ))),
        }
    }

    /// The admin `filter` regex selecting the stats read of every cluster.
    pub(super) fn stats_filter(&self) -> String {
        let names: Vec<String> = self
            .0
            .values()
            .map(|cluster| escape(&stat_name(cluster)))
            .collect();
        format!(
            r"^cluster\.(?:{})\.(?:upstream_rq_total|upstream_rq_[1-5]xx|upstream_rq_time)$",
            names.join("|")
        )
    }

    /// Each variant's cluster stats in `reading`; the first cluster missing from it, if one is.
    pub(super) fn snapshot(&self, reading: &Reading) -> Result<Snapshot, Missing> {
        let mut snapshot = Snapshot::default();
        for (variant, cluster) in &self.0 {
            let prefix = format!("cluster.{}.", stat_name(cluster));
            let stat = |name: &str| format!("{prefix}{name}");
            if !reading.counters.contains_key(&stat("upstream_rq_total")) {
                return Err(Missing {
                    variant: variant.clone(),
                    cluster: cluster.clone(),
                });
            }
            let counter = |class: &str| {
                reading
                    .counters
                    .get(&stat(&format!("upstream_rq_{class}")))
                    .copied()
                    .unwrap_or(0)
            };
            let stats = snapshot.variants.entry(variant.clone()).or_default();
            stats.requests = CLASSES.iter().map(|class| counter(class)).sum();
            stats.errors = counter("5xx");
            if let Some(buckets) = reading.histograms.get(&stat("upstream_rq_time")) {
                stats.add_buckets(buckets);
            }
        }
        Ok(snapshot)
    }
}

impl std::fmt::Display for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self.0.iter().map(|(v, c)| format!("{v}={c}")).collect();
        f.write_str(&pairs.join(", "))
    }
}

/// A cluster's name as Envoy's stats spell it: `:` becomes `_`.
fn stat_name(cluster: &str) -> String {
    cluster.replace(':', "_")
}

/// `text` as a literal in the admin endpoint's `filter` regex: the characters that are special
/// in both RE2 and ECMAScript regexes, escaped, and no others (an escaped letter or digit would
/// mean something else).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\^$.|?*+()[]{}".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The clusters' stat names in an admin `/clusters?format=json` body (`observability_name`,
/// else `name`), sorted.
pub(super) fn names(body: &[u8]) -> Result<Vec<String>, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let statuses = document
        .get("cluster_statuses")
        .and_then(Value::as_array)
        .ok_or("no `cluster_statuses` list")?;
    let mut names: Vec<String> = statuses
        .iter()
        .filter_map(|status| {
            status
                .get("observability_name")
                .or_else(|| status.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::analysis::Measured;

    fn clusters(pairs: &[&str]) -> Result<Clusters> {
        Clusters::parse(&pairs.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>())
    }

    fn web() -> Clusters {
        clusters(&[
            "stable=outbound|80|v1|web.shop.svc.cluster.local",
            "canary=variant-canary",
        ])
        .unwrap()
    }

    /// Shaped as Envoy 1.40 answers `/stats?format=json&histogram_buckets=detailed` with the
    /// filter of [`Clusters::stats_filter`]; `slow` canary samples in 250..260 ms.
    fn body(canary_2xx: u64, canary_5xx: u64, slow: u64) -> Reading {
        let body = serde_json::json!({"stats": [
            {"name": "cluster.outbound|80|v1|web.shop.svc.cluster.local.upstream_rq_2xx", "value": 500},
            {"name": "cluster.outbound|80|v1|web.shop.svc.cluster.local.upstream_rq_4xx", "value": 20},
            {"name": "cluster.outbound|80|v1|web.shop.svc.cluster.local.upstream_rq_total", "value": 520},
            {"name": "cluster.variant-canary.upstream_rq_2xx", "value": canary_2xx},
            {"name": "cluster.variant-canary.upstream_rq_5xx", "value": canary_5xx},
            {"name": "cluster.variant-canary.upstream_rq_total", "value": canary_2xx + canary_5xx},
            {"histograms": {"supported_percentiles": [0, 50, 99, 100], "details": [
                {"name": "cluster.variant-canary.upstream_rq_time",
                 "totals": [{"lower_bound": 1, "width": 0.1, "count": 100},
                            {"lower_bound": 250, "width": 10, "count": slow}],
                 "intervals": [], "percentiles": []}
            ]}}
        ]});
        Reading::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_window_is_the_difference_of_the_clusters_stats() {
        let start = web().snapshot(&body(100, 0, 0)).unwrap();
        let end = web().snapshot(&body(180, 20, 5)).unwrap();
        let canary = end.since(&start, "canary");
        assert_eq!((canary.requests, canary.errors), (100.0, 20.0));
        let p99 = canary.p99_ms.unwrap();
        assert!((250.0..=260.0).contains(&p99), "{p99}");
        let stable = web().snapshot(&body(0, 0, 0)).unwrap();
        let stable = stable.variants.get("stable").unwrap();
        assert_eq!(
            (stable.requests, stable.errors),
            (520, 0),
            "every class is a response; 4xx are no errors"
        );
        assert_eq!(
            end.since(&start, "stable"),
            Measured::default(),
            "no latency samples: no p99"
        );
    }

    #[test]
    fn a_restarted_envoy_counts_from_zero() {
        let start = web().snapshot(&body(1000, 10, 0)).unwrap();
        let end = web().snapshot(&body(50, 5, 0)).unwrap();
        let canary = end.since(&start, "canary");
        assert_eq!((canary.requests, canary.errors), (55.0, 5.0));
    }

    #[test]
    fn only_the_clusters_own_stats_count() {
        let reading = Reading::parse(
            serde_json::json!({"stats": [
                {"name": "cluster.variant-canary.upstream_rq_total", "value": 10},
                {"name": "cluster.variant-canary.upstream_rq_200", "value": 10},
                {"name": "cluster.variant-canary.internal.upstream_rq_5xx", "value": 10},
                {"name": "cluster.variant-canary-2.upstream_rq_5xx", "value": 10},
                {"name": "cluster.variant-canary.upstream_rq_2xx", "value": 10},
                {"name": "cluster.outbound|80|v1|web.shop.svc.cluster.local.upstream_rq_total", "value": 0},
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let snapshot = web().snapshot(&reading).unwrap();
        let canary = snapshot.since(&Snapshot::default(), "canary");
        assert_eq!((canary.requests, canary.errors), (10.0, 0.0));
    }

    #[test]
    fn a_missing_cluster_is_named() {
        let reading = Reading::parse(
            br#"{"stats":[{"name":"cluster.variant-canary.upstream_rq_total","value":3}]}"#,
        )
        .unwrap();
        assert_eq!(
            web().snapshot(&reading),
            Err(Missing {
                variant: "stable".into(),
                cluster: "outbound|80|v1|web.shop.svc.cluster.local".into(),
            })
        );
        let listed = br#"{"cluster_statuses":[
            {"name":"variant-stable","observability_name":"variant-stable"},
            {"name":"a:b","observability_name":"a_b"},
            {"name":"old"}]}"#;
        assert_eq!(
            names(listed).unwrap(),
            ["a_b", "old", "variant-stable"],
            "as the stats name them"
        );
        assert!(names(b"{}").is_err());
    }

    #[test]
    fn the_stats_filter_matches_the_names_literally() {
        let filter = web().stats_filter();
        assert_eq!(
            filter,
            r"^cluster\.(?:variant-canary|outbound\|80\|v1\|web\.shop\.svc\.cluster\.local)\.(?:upstream_rq_total|upstream_rq_[1-5]xx|upstream_rq_time)$"
        );
        let regex = regex::Regex::new(&filter).unwrap();
        for (name, matches) in [
            ("cluster.variant-canary.upstream_rq_5xx", true),
            ("cluster.variant-canary.upstream_rq_time", true),
            ("cluster.variant-canary.upstream_rq_total", true),
            (
                "cluster.outbound|80|v1|web.shop.svc.cluster.local.upstream_rq_2xx",
                true,
            ),
            ("cluster.variant-canary.upstream_rq_503", false),
            ("cluster.variant-canary.canary.upstream_rq_5xx", false),
            ("cluster.variant-canaryX.upstream_rq_5xx", false),
            ("cluster.outbound|80|v1|webXshop.upstream_rq_2xx", false),
        ] {
            assert_eq!(regex.is_match(name), matches, "{name}");
        }
        let colon = clusters(&["stable=a:b", "canary=c"]).unwrap();
        assert!(
            colon.stats_filter().contains("a_b"),
            "as the stats spell it"
        );
    }

    #[test]
    fn mappings() {
        assert_eq!(
            web().to_string(),
            "canary=variant-canary, stable=outbound|80|v1|web.shop.svc.cluster.local"
        );
        assert!(web().covers(&["canary", "stable"]).is_ok());
        let error = web().covers(&["canary", "blue"]).unwrap_err().to_string();
        assert!(error.contains("--envoy-cluster blue=CLUSTER"), "{error}");
        for (pairs, fragment) in [
            (&["canary"][..], "expected VARIANT=CLUSTER"),
            (&["canary="][..], "expected VARIANT=CLUSTER"),
            (&["=c"][..], "expected VARIANT=CLUSTER"),
            (&["canary=a", "canary=b"][..], "given twice"),
            (
                &["canary=a", "stable=a"][..],
                "both served by cluster \"a\"",
            ),
        ] {
            let error = clusters(pairs).unwrap_err().to_string();
            assert!(error.contains(fragment), "{pairs:?}: {error}");
            assert!(error.starts_with("--envoy-cluster"), "{error}");
        }
    }
}
