//! `/metrics`: the controller's counters and state, through the `prometheus-client` registry
//! and encoders.
//!
//! The counters are the fleet's own (`Fleet::counters`), registered once. Everything else is
//! read at scrape time from the fleet and the store, so a series exists only while what it
//! describes does: the per-Envoy series follow the fleet's bound (`--max-envoys`), and the
//! route series the served configuration. No label carries free-form text: Envoy's NACK reason
//! stays in the log and in `/v1/envoys`, and `canaryctl_envoy_nack_info` names only the node and
//! the version it rejected.
//!
//! A scraper that accepts OpenMetrics (Prometheus does) gets OpenMetrics; any other client
//! gets the Prometheus text format 0.0.4. The sample names and labels are the same in both.

use std::fmt;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use tokio::sync::watch;

use super::fleet::Fleet;
use super::store::Snapshot;
use crate::weights;

/// The exposition formats `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The Prometheus text format, version 0.0.4.
    Text,
}

impl Format {
    /// OpenMetrics if the request's `Accept` names it, else the Prometheus text format.
    pub fn negotiate(headers: &HeaderMap) -> Format {
        let accepts_openmetrics = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|range| range.split(';').next())
            .any(|media| {
                media
                    .trim()
                    .eq_ignore_ascii_case("application/openmetrics-text")
            });
        if accepts_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The registry behind `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Metrics of `fleet` and of the configuration `snapshots` publishes.
    pub fn new(fleet: Arc<Fleet>, snapshots: watch::Receiver<Arc<Snapshot>>) -> Metrics {
        let mut registry = Registry::default();
        let counters = &fleet.counters;
        for (name, help, counter) in [
            (
                "canaryctl_ecds_pushes",
                "Configurations sent to Envoys over ECDS",
                &counters.pushes,
            ),
            (
                "canaryctl_ecds_acks",
                "Configurations Envoys accepted (ACK)",
                &counters.acks,
            ),
            (
                "canaryctl_ecds_nacks",
                "Configurations Envoys rejected (NACK)",
                &counters.nacks,
            ),
            (
                "canaryctl_ecds_streams_refused",
                "ECDS streams refused because the controller tracked as many Envoys as it may",
                &counters.refused,
            ),
            (
                "canaryctl_ecds_streams_unauthenticated",
                "ECDS streams and fetches refused for want of a valid bearer token",
                &counters.unauthenticated,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register_collector(Box::new(State { fleet, snapshots }));
        Metrics { registry }
    }

    /// Every metric, in `format`.
    pub fn render(&self, format: Format) -> Result<String, fmt::Error> {
        let mut out = String::new();
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?
            }
        }
        Ok(out)
    }
}

/// The fleet's state and the configuration served, read at each scrape.
#[derive(Debug)]
struct State {
    fleet: Arc<Fleet>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

impl Collector for State {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let envoys = self.fleet.envoys();
        let connected = envoys.iter().filter(|e| e.streams > 0).count();
        let connected = ConstGauge::new(u64::try_from(connected).unwrap_or(u64::MAX));
        connected.encode(encoder.encode_descriptor(
            "canaryctl_envoys_connected",
            "Envoys with an open ECDS stream.",
            None,
            MetricType::Gauge,
        )?)?;

        let mut rejecting = encoder.encode_descriptor(
            "canaryctl_envoy_rejecting",
            "1 while an Envoy has rejected the latest configuration it was sent and serves an \
             older one.",
            None,
            MetricType::Gauge,
        )?;
        for envoy in &envoys {
            let labels = [("node", envoy.node.as_str())];
            ConstGauge::new(i64::from(envoy.nack.is_some()))
                .encode(rejecting.encode_family(&labels)?)?;
        }

        let mut nack = encoder.encode_descriptor(
            "canaryctl_envoy_nack",
            "The configuration an Envoy rejected last, until it accepts a newer one; Envoy's \
             reason is in the log and in /v1/envoys.",
            None,
            MetricType::Info,
        )?;
        for envoy in &envoys {
            if let Some(rejected) = &envoy.nack {
                let labels = [
                    ("node", envoy.node.as_str()),
                    ("version", rejected.version.as_str()),
                ];
                nack.encode_info(&labels)?;
            }
        }

        let snapshot = Arc::clone(&self.snapshots.borrow());
        Info::new([("version", snapshot.version.clone())]).encode(encoder.encode_descriptor(
            "canaryctl_config",
            "The configuration version being served.",
            None,
            MetricType::Info,
        )?)?;

        let mut route_weight = encoder.encode_descriptor(
            "canaryctl_route_weight_percent",
            "Each variant's weight in the configuration served.",
            None,
            MetricType::Gauge,
        )?;
        for route in weights::read_routes(&snapshot.plugin_config).unwrap_or_default() {
            for variant in &route.variants {
                let labels = [
                    ("route", route.name.as_str()),
                    ("variant", variant.name.as_str()),
                ];
                ConstGauge::new(variant.weight.percent())
                    .encode(route_weight.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::HeaderValue;

    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "v2".into(),
            plugin_config: canary_filter::config::decode(
                br#"{"routes": [{"name": "web", "variants": [
                {"name": "stable", "weight": 87.5}, {"name": "canary", "weight": 12.5}]}]}"#,
            )
            .unwrap(),
            resource: None,
        }
    }

    fn metrics(fleet: &Arc<Fleet>) -> Metrics {
        let (_, snapshots) = watch::channel(Arc::new(snapshot()));
        Metrics::new(Arc::clone(fleet), snapshots)
    }

    /// The samples of an exposition, without comments.
    fn samples(text: &str) -> BTreeSet<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn exposes_counters_envoys_and_weights_in_both_formats() {
        let fleet = Arc::new(Fleet::default());
        assert!(fleet.connected("edge-\"1\"", "edge"));
        fleet.sent("edge-\"1\"", "v2");
        fleet.nacked("edge-\"1\"", "v2", "v1", "no");
        let metrics = metrics(&fleet);
        let openmetrics = metrics.render(Format::OpenMetrics).expect("encodes");
        let text = metrics.render(Format::Text).expect("encodes");
        for line in [
            "canaryctl_ecds_pushes_total 1",
            "canaryctl_ecds_nacks_total 1",
            "canaryctl_ecds_acks_total 0",
            "canaryctl_ecds_streams_refused_total 0",
            "canaryctl_ecds_streams_unauthenticated_total 0",
            "canaryctl_envoys_connected 1",
            "canaryctl_envoy_rejecting{node=\"edge-\\\"1\\\"\"} 1",
            "canaryctl_envoy_nack_info{node=\"edge-\\\"1\\\"\",version=\"v2\"} 1",
            "canaryctl_config_info{version=\"v2\"} 1",
            "canaryctl_route_weight_percent{route=\"web\",variant=\"canary\"} 12.5",
        ] {
            assert!(
                samples(&openmetrics).contains(line),
                "{line} in:\n{openmetrics}"
            );
        }
        assert_eq!(samples(&openmetrics), samples(&text), "the same samples");
        for line in [
            "# TYPE canaryctl_ecds_pushes counter",
            "# TYPE canaryctl_config info",
            "# TYPE canaryctl_route_weight_percent gauge",
            "# EOF",
        ] {
            assert!(
                openmetrics.lines().any(|l| l == line),
                "{line} in:\n{openmetrics}"
            );
        }
        for line in [
            "# TYPE canaryctl_ecds_pushes_total counter",
            "# TYPE canaryctl_config_info gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn a_thousand_nack_reasons_make_no_new_series() {
        let fleet = Arc::new(Fleet::default());
        let metrics = metrics(&fleet);
        for node in ["a", "b"] {
            assert!(fleet.connected(node, "edge"));
        }
        // Every series that any scrape showed, by name and labels.
        let mut series = BTreeSet::new();
        let mut text = String::new();
        for i in 0..1000 {
            let node = ["a", "b"][i % 2];
            fleet.sent(node, "v2");
            fleet.nacked(node, "v2", "v1", &format!("reason {i}: module not found"));
            text = metrics.render(Format::OpenMetrics).expect("encodes");
            for sample in samples(&text) {
                let name_and_labels = sample.rsplit_once(' ').map_or(sample, |(s, _)| s);
                series.insert(name_and_labels.to_owned());
            }
        }
        let nack_series = series
            .iter()
            .filter(|s| s.starts_with("canaryctl_envoy_nack_info"))
            .count();
        assert_eq!(nack_series, 2, "one per node");
        assert!(series.len() < 20, "{} series: {series:?}", series.len());
        assert!(!text.contains("module not found"), "a reason in:\n{text}");
    }

    #[test]
    fn openmetrics_for_a_scraper_that_accepts_it() {
        let accept = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static(value));
            Format::negotiate(&headers)
        };
        // What Prometheus sends.
        assert_eq!(
            accept(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            Format::OpenMetrics
        );
        assert_eq!(accept("text/plain"), Format::Text);
        assert_eq!(accept("*/*"), Format::Text);
        assert_eq!(Format::negotiate(&HeaderMap::new()), Format::Text);
    }
}
