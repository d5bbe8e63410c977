//! Where a step's numbers come from: Prometheus (PromQL over the filter's metrics or Istio's
//! standard metrics) or a standalone Envoy's admin endpoint. Either way a step is measured
//! over its own window only: what the counters and histograms gained between its start and
//! its end.

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
                Ok(variants.iter().map(|v| end.since(start, v)).collect())
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
            Source::Envoy(e) => write!(f, "Envoy admin {}", e.url()),
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
