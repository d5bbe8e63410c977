//! The filter's own stats on a route:
//!
//! - requests and 5xx: `wasmcustom.canary.route.R.variant.V.response.<class>` counters;
//! - p99: the `wasmcustom.canary.route.R.variant.V.upstream_time` histogram;
//! - decisions: `wasmcustom.canary.route.R.variant.V.decision.<reason>`, to tell a window
//!   without traffic from one whose responses the filter does not count.

use super::{Reading, Snapshot};

const PREFIX: &str = "wasmcustom.canary.route.";

/// The admin `filter` regex selecting the route's stats.
pub(super) fn stats_filter(route: &str) -> String {
    format!("^wasmcustom\\.canary\\.route\\.{route}\\.")
}

/// The route's variants in `reading`.
pub(super) fn snapshot(reading: &Reading, route: &str) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for (name, &value) in &reading.counters {
        if let Some((variant, class)) = response_counter(name, route) {
            let variant = snapshot.variants.entry(variant.to_owned()).or_default();
            variant.requests += value;
            if class == "5xx" {
                variant.errors += value;
            }
        } else if decision_counter(name, route) {
            snapshot.decisions += value;
        }
    }
    for (name, buckets) in &reading.histograms {
        if let Some(variant) = upstream_time(name, route) {
            snapshot
                .variants
                .entry(variant.to_owned())
                .or_default()
                .add_buckets(buckets);
        }
    }
    snapshot
}

/// The part of a stat name after `wasmcustom.canary.route.<route>.variant.`.
fn variant_stat<'a>(name: &'a str, route: &str) -> Option<&'a str> {
    name.strip_prefix(PREFIX)?
        .strip_prefix(route)?
        .strip_prefix(".variant.")
}

/// `(variant, class)` of `wasmcustom.canary.route.<route>.variant.<variant>.response.<class>`.
fn response_counter<'a>(name: &'a str, route: &str) -> Option<(&'a str, &'a str)> {
    let (variant, class) = variant_stat(name, route)?.split_once(".response.")?;
    (!variant.contains('.') && !class.contains('.')).then_some((variant, class))
}

/// Whether `name` is `wasmcustom.canary.route.<route>.variant.<variant>.decision.<reason>`.
fn decision_counter(name: &str, route: &str) -> bool {
    variant_stat(name, route)
        .and_then(|rest| rest.split_once(".decision."))
        .is_some_and(|(variant, reason)| !variant.contains('.') && !reason.contains('.'))
}

/// The variant of `wasmcustom.canary.route.<route>.variant.<variant>.upstream_time`.
fn upstream_time<'a>(name: &'a str, route: &str) -> Option<&'a str> {
    let variant = variant_stat(name, route)?.strip_suffix(".upstream_time")?;
    (!variant.contains('.')).then_some(variant)
}

#[cfg(test)]
mod tests {
    use super::super::{EnvoyAdmin, MetricsError};
    use super::*;
    use crate::http::{HttpClient, HttpOptions};
    use crate::rollout::analysis::Measured;

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

    fn parse(body: &[u8], route: &str) -> Snapshot {
        snapshot(&Reading::parse(body).unwrap(), route)
    }

    /// Decisions only, as with the filter's `metrics.responses` off.
    fn decisions_only(hash: u64, stable_hash: u64) -> Vec<u8> {
        serde_json::json!({"stats": [
            {"name": "wasmcustom.canary.route.web.variant.canary.decision.hash", "value": hash},
            {"name": "wasmcustom.canary.route.web.variant.stable.decision.hash", "value": stable_hash},
        ]})
        .to_string()
        .into_bytes()
    }

    fn admin() -> EnvoyAdmin {
        EnvoyAdmin::new(
            "http://127.0.0.1:1",
            HttpClient::new(&HttpOptions::default()).unwrap(),
        )
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let start = parse(&body(100, 0, 0), "web");
        let end = parse(&body(180, 20, 5), "web");
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
        let start = parse(&body(1000, 10, 0), "web");
        let end = parse(&body(50, 5, 0), "web");
        let canary = end.since(&start, "canary");
        assert_eq!((canary.requests, canary.errors), (55.0, 5.0));
    }

    #[test]
    fn decisions_without_responses_mean_the_response_metrics_are_off() {
        let start = parse(&decisions_only(10, 90), "web");
        let end = parse(&decisions_only(30, 170), "web");
        assert_eq!(end.decisions - start.decisions, 100);
        let error = admin()
            .measure(&start, &end, "web", &["canary", "stable"])
            .unwrap_err();
        assert!(
            matches!(error, MetricsError::NoResponses { decisions, .. } if decisions == 100.0),
            "{error:?}"
        );
        let text = error.to_string();
        for part in [
            "route \"web\"",
            "metrics.responses",
            "--istio",
            "--envoy-cluster",
        ] {
            assert!(text.contains(part), "{part:?} missing: {text}");
        }

        // No traffic at all is no data, not this error.
        let idle = admin().measure(&end, &end, "web", &["canary", "stable"]);
        assert_eq!(idle.unwrap(), [Measured::default(), Measured::default()]);
        // Responses counted for any variant: the metrics are on.
        let start = parse(&body(100, 0, 0), "web");
        let end = parse(&body(100, 0, 0), "web");
        let mut answered = end.clone();
        answered.decisions += 50;
        answered.variants.get_mut("stable").unwrap().requests += 50;
        let measured = admin()
            .measure(&start, &answered, "web", &["canary", "stable"])
            .unwrap();
        assert_eq!((measured[0].requests, measured[1].requests), (0.0, 50.0));
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
        assert!(decision_counter(
            "wasmcustom.canary.route.web.variant.v2.decision.rule",
            "web"
        ));
        assert!(!decision_counter(
            "wasmcustom.canary.route.web2.variant.v2.decision.rule",
            "web"
        ));
        assert!(!decision_counter(
            "wasmcustom.canary.route.web.variant.v2.response.2xx",
            "web"
        ));
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
}
