//! Where a step's numbers come from: Prometheus (PromQL over the filter's metrics or Istio's
//! standard metrics) or a standalone Envoy's admin endpoint (the filter's stats or the
//! variants' upstream clusters' stats). Either way a step is measured over its own window
//! only: what the counters and histograms gained between its start and its end.

pub mod envoy;
pub mod prometheus;

use std::time::SystemTime;

use super::analysis::Measured;
use crate::http::{HttpClient, HttpError, HttpOptions};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "invalid metrics source {0:?}: expected prometheus:URL or envoy:URL (http:// or https://)"
    )]
    Syntax(String),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url}: unexpected answer: {reason}")]
    Answer { url: String, reason: String },
    #[error("--envoy-cluster: {0}")]
    ClusterMapping(String),
    #[error(
        "Envoy has no cluster {cluster:?} (--envoy-cluster {variant}={cluster}); its clusters: \
         {known}"
    )]
    MissingCluster {
        variant: String,
        cluster: String,
        known: String,
    },
    #[error(
        "the filter decided {decisions:.0} requests on route {route:?} in the window but counted \
         no response for any variant: its `metrics.responses` is off (or not one response came \
         back). Set `\"metrics\": {{\"responses\": true}}` in the plugin configuration, or \
         measure without it: --istio (Prometheus) or --envoy-cluster VARIANT=CLUSTER (Envoy admin)"
    )]
    NoResponses { route: String, decisions: f64 },
}

pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// A metrics source.
#[derive(Debug, Clone)]
pub enum Source {
    Prometheus(prometheus::Prometheus),
    Envoy(envoy::EnvoyAdmin),
}

/// The start of a step's window, as each source needs it.
#[derive(Debug, Clone)]
pub struct Window {
    pub started: SystemTime,
    /// The Envoy source's counters and histograms at the start.
    snapshot: Option<envoy::Snapshot>,
}

impl Source {
    /// `prometheus:URL` or `envoy:URL`, reached as `http` says; `metrics` chooses which
    /// metrics Prometheus is asked for.
    pub fn parse(text: &str, metrics: prometheus::Metrics, http: &HttpOptions) -> Result<Source> {
        let (kind, url) = text
            .split_once(':')
            .filter(|(_, url)| url.starts_with("http://") || url.starts_with("https://"))
            .ok_or_else(|| MetricsError::Syntax(text.to_owned()))?;
        match kind {
            "prometheus" => Ok(Source::Prometheus(prometheus::Prometheus::new(
                url,
                metrics,
                HttpClient::new(http)?,
            ))),
            "envoy" => Ok(Source::Envoy(envoy::EnvoyAdmin::new(
                url,
                HttpClient::new(http)?,
            ))),
            _ => Err(MetricsError::Syntax(text.to_owned())),
        }
    }

    /// Reads the upstream stats of these clusters instead of the filter's; only for an Envoy
    /// admin source.
    pub fn with_clusters(self, clusters: envoy::Clusters) -> Result<Source> {
        match self {
            Source::Envoy(admin) => Ok(Source::Envoy(admin.with_clusters(clusters))),
            Source::Prometheus(_) => Err(MetricsError::ClusterMapping(
                "cluster stats are read from an Envoy admin endpoint: give --metrics envoy:URL"
                    .to_owned(),
            )),
        }
    }

    /// Checks, before a rollout starts, what can be checked without a window: for cluster
    /// stats, that `variants` each have a cluster and that Envoy has those clusters.
    pub fn check(&self, route: &str, variants: &[&str]) -> Result<()> {
        match self {
            Source::Envoy(admin) => match admin.clusters() {
                Some(clusters) => {
                    clusters.covers(variants)?;
                    admin.snapshot(route).map(drop)
                }
                None => Ok(()),
            },
            Source::Prometheus(_) => Ok(()),
        }
    }

    /// Starts a window on `route`.
    pub fn begin(&self, route: &str) -> Result<Window> {
        let started = SystemTime::now();
        let snapshot = match self {
            Source::Prometheus(_) => None,
            Source::Envoy(admin) => Some(admin.snapshot(route)?),
        };
        Ok(Window { started, snapshot })
    }

    /// What `variants` of `route` did since `window` began, in the order given.
    pub fn measure(
        &self,
        window: &Window,
        route: &str,
        variants: &[&str],
    ) -> Result<Vec<Measured>> {
        match (self, &window.snapshot) {
            (Source::Prometheus(prometheus), _) => variants
                .iter()
                .map(|variant| prometheus.measure(window.started, route, variant))
                .collect(),
            (Source::Envoy(admin), Some(start)) => {
                let end = admin.snapshot(route)?;
                admin.measure(start, &end, route, variants)
            }
            (Source::Envoy(admin), None) => Err(MetricsError::Answer {
                url: admin.url().to_owned(),
                reason: "the window was not started on this source".to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Prometheus(p) => write!(f, "Prometheus {} ({})", p.url(), p.metrics()),
            Source::Envoy(e) => match e.clusters() {
                Some(clusters) => write!(f, "Envoy admin {} (clusters {clusters})", e.url()),
                None => write!(f, "Envoy admin {} (the filter's stats)", e.url()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_syntax() {
        let parse =
            |text| Source::parse(text, prometheus::Metrics::Filter, &HttpOptions::default());
        assert!(matches!(
            parse("prometheus:http://127.0.0.1:9090"),
            Ok(Source::Prometheus(_))
        ));
        assert!(matches!(
            parse("prometheus:https://thanos.monitoring:10902"),
            Ok(Source::Prometheus(_))
        ));
        assert!(matches!(
            parse("envoy:http://127.0.0.1:15000"),
            Ok(Source::Envoy(_))
        ));
        for bad in [
            "http://x",
            "prometheus:",
            "envoy:localhost:1",
            "graphite:http://x",
            "prometheus:ftp://x",
        ] {
            assert!(
                matches!(parse(bad), Err(MetricsError::Syntax(_))),
                "{bad} should be refused"
            );
        }
    }
}
