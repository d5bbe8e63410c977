//! The filter's metrics, defined lazily on first use.
//!
//! Names (Envoy shows them with the prefix `wasmcustom.`):
//! - counter `canary.route.<route>.variant.<variant>.decision.<reason>`
//! - counter `canary.route.<route>.variant.<variant>.response.<class>`
//! - histogram `canary.route.<route>.variant.<variant>.upstream_time` (milliseconds)
//!
//! Envoy keeps a metric by name in its stats store, so defining the same name again after a
//! configuration update returns the same metric and the count carries on.

use std::cell::Cell;

use crate::host::{Host, MetricKind};
use crate::table::Reason;
use crate::table::{RoutingTable, VariantId};

/// Response status classes counted.
pub const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
const REASONS: [&str; 6] = ["rule", "hash", "new", "lane", "pin", "session"];
/// Metrics per (route, variant): the reasons, the classes, the histogram.
const PER_VARIANT: usize = REASONS.len() + CLASSES.len() + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Decision(Reason),
    /// Index into [`CLASSES`].
    Response(usize),
    UpstreamTime,
}

impl Metric {
    /// One of each metric a (route, variant) has, in slot order: what a host that must define
    /// its metrics up front defines.
    pub fn each() -> impl Iterator<Item = Metric> {
        [
            Metric::Decision(Reason::Rule(0)),
            Metric::Decision(Reason::Hash),
            Metric::Decision(Reason::New),
            Metric::Decision(Reason::Lane),
            Metric::Decision(Reason::Pin),
            Metric::Decision(Reason::Session),
        ]
        .into_iter()
        .chain((0..CLASSES.len()).map(Metric::Response))
        .chain([Metric::UpstreamTime])
    }

    fn slot(self) -> usize {
        match self {
            Metric::Decision(Reason::Rule(_)) => 0,
            Metric::Decision(Reason::Hash) => 1,
            Metric::Decision(Reason::New) => 2,
            Metric::Decision(Reason::Lane) => 3,
            Metric::Decision(Reason::Pin) => 4,
            Metric::Decision(Reason::Session) => 5,
            Metric::Response(class) => REASONS.len() + class,
            Metric::UpstreamTime => PER_VARIANT - 1,
        }
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::UpstreamTime => MetricKind::Histogram,
            _ => MetricKind::Counter,
        }
    }

    /// The metric's name for a route and variant.
    pub fn name(self, route: &str, variant: &str) -> String {
        let base = format!("canary.route.{route}.variant.{variant}");
        match self {
            Metric::Decision(reason) => format!("{base}.decision.{}", reason.label()),
            Metric::Response(class) => {
                format!("{base}.response.{}", CLASSES.get(class).unwrap_or(&"other"))
            }
            Metric::UpstreamTime => format!("{base}.upstream_time"),
        }
    }
}

/// The status class index of an HTTP status, for [`Metric::Response`].
pub fn class_of(status: u16) -> Option<usize> {
    match status {
        200..=599 => Some(usize::from(status / 100 - 2)),
        _ => None,
    }
}

/// Metric ids of one configuration, each defined the first time it is used.
#[derive(Debug)]
pub struct Metrics {
    /// By [`VariantId`]: each variant's metrics.
    variants: Vec<VariantMetrics>,
}

/// The metrics of one (route, variant).
#[derive(Debug)]
struct VariantMetrics {
    route: String,
    variant: String,
    /// By [`Metric`] slot.
    ids: [Cell<Option<u32>>; PER_VARIANT],
}

impl Metrics {
    pub fn new(table: &RoutingTable) -> Self {
        let variants = table
            .routes
            .iter()
            .flat_map(|route| {
                route.variants.iter().map(|variant| VariantMetrics {
                    route: route.name.clone(),
                    variant: variant.name.clone(),
                    ids: Default::default(),
                })
            })
            .collect();
        Metrics { variants }
    }

    /// The id of `metric` for a variant of the table these metrics were made for, defining it
    /// with the host if need be.
    fn id(&self, host: &impl Host, variant: VariantId, metric: Metric) -> Option<u32> {
        let metrics = self.variants.get(variant.0)?;
        let cell = metrics.ids.get(metric.slot())?;
        if let Some(id) = cell.get() {
            return Some(id);
        }
        let name = metric.name(&metrics.route, &metrics.variant);
        let id = host.define_metric(metric.kind(), &name)?;
        cell.set(Some(id));
        Some(id)
    }

    pub fn increment(&self, host: &impl Host, variant: VariantId, metric: Metric) {
        if let Some(id) = self.id(host, variant, metric) {
            host.increment_counter(id);
        }
    }

    pub fn record(&self, host: &impl Host, variant: VariantId, metric: Metric, value: u64) {
        if let Some(id) = self.id(host, variant, metric) {
            host.record_histogram(id, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases = [
            (
                Metric::Decision(Reason::Rule(3)),
                "canary.route.r.variant.v.decision.rule",
            ),
            (
                Metric::Decision(Reason::Hash),
                "canary.route.r.variant.v.decision.hash",
            ),
            (
                Metric::Decision(Reason::New),
                "canary.route.r.variant.v.decision.new",
            ),
            (
                Metric::Decision(Reason::Lane),
                "canary.route.r.variant.v.decision.lane",
            ),
            (Metric::Response(0), "canary.route.r.variant.v.response.2xx"),
            (Metric::Response(3), "canary.route.r.variant.v.response.5xx"),
            (
                Metric::UpstreamTime,
                "canary.route.r.variant.v.upstream_time",
            ),
        ];
        for (metric, want) in cases {
            assert_eq!(metric.name("r", "v"), want);
        }
    }

    #[test]
    fn classes() {
        let cases = [
            (100, None),
            (199, None),
            (200, Some(0)),
            (204, Some(0)),
            (302, Some(1)),
            (404, Some(2)),
            (503, Some(3)),
            (599, Some(3)),
            (600, None),
            (0, None),
        ];
        for (status, want) in cases {
            assert_eq!(class_of(status), want, "{status}");
        }
    }

    #[test]
    fn slots_are_distinct() {
        let mut slots: Vec<usize> = Metric::each().map(Metric::slot).collect();
        slots.sort_unstable();
        assert_eq!(slots, (0..PER_VARIANT).collect::<Vec<_>>());
    }
}
