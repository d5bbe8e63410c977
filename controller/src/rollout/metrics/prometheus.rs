//! Prometheus: instant queries (`/api/v1/query`) at the end of a step, over a range as long as
//! the step, so each step is judged on its own window.
//!
//! Over the filter's metrics (labelled by the `stats_tags` in the README):
//!
//! - requests: `sum(increase(canary_response{canary_route="R",canary_variant="V"}[W]))`
//! - 5xx: the same with `canary_class="5xx"`
//! - p99: `histogram_quantile(0.99, sum by (le) (increase(canary_upstream_time_bucket{…}[W])))`
//!
//! A variant without responses in the window is checked further over the filter's metrics:
//! if the filter decided requests on the route (`canary_decision`) but counted no response for
//! any variant, its response metrics are off, and the step says so instead of "no data".
//!
//! Over Istio's standard metrics (`--istio`), the mapping is: variant ↔ `destination_version`
//! (the subset's `version` label: the variant's name unless `--istio-version VARIANT=VERSION`
//! says otherwise), route ↔ `destination_service_name` (or
//! `destination_service`, the FQDN, with `--istio-service`), requests ↔
//! `istio_requests_total`, 5xx ↔ `response_code=~"5.."`, latency ↔
//! `istio_request_duration_milliseconds_bucket`, as reported by `reporter` (default
//! `source`: the proxy running the filter, which also sees failures to connect).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tracing::debug;

use super::{MetricsError, Result};
use crate::http::{self, HttpClient};
use crate::rollout::analysis::Measured;

/// Which metrics the queries read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metrics {
    /// The filter's own metrics, labelled by the README's `stats_tags`.
    Filter,
    /// Istio's standard metrics.
    Istio {
        /// `destination_service` to match; None matches `destination_service_name` = route.
        service: Option<String>,
        /// `reporter` label: `source` or `destination`.
        reporter: String,
        /// The `version` label of a variant's pods, where it is not the variant's name.
        versions: BTreeMap<String, String>,
    },
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metrics::Filter => f.write_str("the filter's metrics"),
            Metrics::Istio { reporter, .. } => {
                write!(f, "istio_requests_total, reporter={reporter}")
            }
        }
    }
}

/// The three queries for one variant over the `range` before the evaluation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    pub requests: String,
    pub errors: String,
    pub p99: String,
}

impl Metrics {
    /// Over the filter's metrics, the route's decisions and responses, all variants together,
    /// over `range`: a window with decisions and no responses means the filter does not count
    /// responses. None over Istio's metrics.
    pub fn unanswered_queries(&self, route: &str, range: Duration) -> Option<(String, String)> {
        let Metrics::Filter = self else {
            return None;
        };
        let (route, range) = (escape(route), range_selector(range));
        Some((
            format!(r#"sum(increase(canary_decision{{canary_route="{route}"}}{range}))"#),
            format!(r#"sum(increase(canary_response{{canary_route="{route}"}}{range}))"#),
        ))
    }

    pub fn queries(&self, route: &str, variant: &str, range: Duration) -> Queries {
        let range = range_selector(range);
        let (requests_metric, error_matcher, bucket_metric, selector) = match self {
            Metrics::Filter => (
                "canary_response",
                r#"canary_class="5xx""#.to_owned(),
                "canary_upstream_time_bucket",
                format!(
                    r#"canary_route="{}",canary_variant="{}""#,
                    escape(route),
                    escape(variant)
                ),
            ),
            Metrics::Istio {
                service,
                reporter,
                versions,
            } => {
                let version = versions.get(variant).map_or(variant, String::as_str);
                let service = match service {
                    Some(fqdn) => format!(r#"destination_service="{}""#, escape(fqdn)),
                    None => format!(r#"destination_service_name="{}""#, escape(route)),
                };
                (
                    "istio_requests_total",
                    r#"response_code=~"5..""#.to_owned(),
                    "istio_request_duration_milliseconds_bucket",
                    format!(
                        r#"reporter="{}",{service},destination_version="{}""#,
                        escape(reporter),
                        escape(version)
                    ),
                )
            }
        };
        Queries {
            requests: format!("sum(increase({requests_metric}{{{selector}}}{range}))"),
            errors: format!(
                "sum(increase({requests_metric}{{{selector},{error_matcher}}}{range}))"
            ),
            p99: format!(
                "histogram_quantile(0.99, sum by (le) (increase({bucket_metric}{{{selector}}}{range})))"
            ),
        }
    }
}

/// A range selector for exactly `range` (whole milliseconds, at least one): `[30s]`, `[3050ms]`.
fn range_selector(range: Duration) -> String {
    let ms = range.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("[{}s]", ms / 1000)
    } else {
        format!("[{ms}ms]")
    }
}

/// A PromQL string literal's content.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', r#"\""#)
}

#[derive(Debug, Clone)]
pub struct Prometheus {
    url: String,
    metrics: Metrics,
    client: HttpClient,
}

impl Prometheus {
    pub fn new(url: &str, metrics: Metrics, client: HttpClient) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            metrics,
            client,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What `variant` did from `started` until now.
    pub fn measure(&self, started: SystemTime, route: &str, variant: &str) -> Result<Measured> {
        let now = SystemTime::now();
        let elapsed = now.duration_since(started).unwrap_or_default();
        let queries = self.metrics.queries(route, variant, elapsed);
        let at = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let requests = self.query(&queries.requests, at)?.unwrap_or(0.0);
        if requests <= 0.0 {
            self.check_responses(route, elapsed, at)?;
        }
        let measured = Measured {
            requests,
            errors: self.query(&queries.errors, at)?.unwrap_or(0.0),
            p99_ms: self.query(&queries.p99, at)?,
        };
        debug!(
            route,
            variant,
            range = ?elapsed,
            ?measured,
            "measured from Prometheus"
        );
        Ok(measured)
    }

    /// An error if, over `range` before `at`, the filter decided requests on `route` but counted
    /// no responses.
    fn check_responses(&self, route: &str, range: Duration, at: f64) -> Result<()> {
        let Some((decisions, responses)) = self.metrics.unanswered_queries(route, range) else {
            return Ok(());
        };
        let decisions = self.query(&decisions, at)?.unwrap_or(0.0);
        if decisions <= 0.0 {
            return Ok(());
        }
        match self.query(&responses, at)?.unwrap_or(0.0) {
            responses if responses > 0.0 => Ok(()),
            _ => Err(MetricsError::NoResponses {
                route: route.to_owned(),
                decisions,
            }),
        }
    }

    /// The single value of an instant query at `at` (Unix seconds); None when the result is
    /// empty or not a number.
    fn query(&self, query: &str, at: f64) -> Result<Option<f64>> {
        let url = format!(
            "{}/api/v1/query?query={}&time={at:.3}",
            self.url,
            http::encode(query)
        );
        let body = self.client.get(&url)?;
        parse_value(&body).map_err(|reason| MetricsError::Answer {
            url: format!("{}/api/v1/query ({query})", self.url),
            reason,
        })
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

/// The value of a one-element vector (or scalar) answer; None for an empty vector or NaN.
fn parse_value(body: &[u8]) -> Result<Option<f64>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if answer.status != "success" {
        return Err(answer.error.unwrap_or(answer.status));
    }
    let data = answer.data.ok_or("no data in a successful answer")?;
    if data.result_type != "vector" {
        return Err(format!("a {} result, expected a vector", data.result_type));
    }
    let [sample] = data.result.as_slice() else {
        return match data.result.len() {
            0 => Ok(None),
            n => Err(format!("{n} series, expected one (the queries sum)")),
        };
    };
    let value: f64 = sample
        .value
        .1
        .parse()
        .map_err(|_| format!("{:?} is not a number", sample.value.1))?;
    Ok(value.is_finite().then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_queries() {
        let q = Metrics::Filter.queries("web", "canary", Duration::from_secs(30));
        assert_eq!(
            q.requests,
            r#"sum(increase(canary_response{canary_route="web",canary_variant="canary"}[30s]))"#
        );
        assert_eq!(
            q.errors,
            r#"sum(increase(canary_response{canary_route="web",canary_variant="canary",canary_class="5xx"}[30s]))"#
        );
        assert_eq!(
            q.p99,
            r#"histogram_quantile(0.99, sum by (le) (increase(canary_upstream_time_bucket{canary_route="web",canary_variant="canary"}[30s])))"#
        );
    }

    #[test]
    fn istio_queries_follow_the_documented_mapping() {
        let by_name = Metrics::Istio {
            service: None,
            reporter: "source".into(),
            versions: BTreeMap::new(),
        };
        let q = by_name.queries("reviews", "v2", Duration::from_secs(60));
        assert_eq!(
            q.requests,
            r#"sum(increase(istio_requests_total{reporter="source",destination_service_name="reviews",destination_version="v2"}[60s]))"#
        );
        assert_eq!(
            q.errors,
            r#"sum(increase(istio_requests_total{reporter="source",destination_service_name="reviews",destination_version="v2",response_code=~"5.."}[60s]))"#
        );
        assert_eq!(
            q.p99,
            r#"histogram_quantile(0.99, sum by (le) (increase(istio_request_duration_milliseconds_bucket{reporter="source",destination_service_name="reviews",destination_version="v2"}[60s])))"#
        );
        let by_fqdn = Metrics::Istio {
            service: Some("reviews.bookinfo.svc.cluster.local".into()),
            reporter: "destination".into(),
            versions: BTreeMap::from([("canary".to_owned(), "v3".to_owned())]),
        };
        assert_eq!(
            by_fqdn
                .queries("reviews", "v1", Duration::from_secs(5))
                .requests,
            r#"sum(increase(istio_requests_total{reporter="destination",destination_service="reviews.bookinfo.svc.cluster.local",destination_version="v1"}[5s]))"#
        );
        assert!(
            by_fqdn
                .queries("reviews", "canary", Duration::from_secs(5))
                .requests
                .contains(r#"destination_version="v3""#),
            "a variant mapped to its pods' version label"
        );
    }

    #[test]
    fn unanswered_queries_cover_the_whole_route() {
        let (decisions, responses) = Metrics::Filter
            .unanswered_queries("web", Duration::from_secs(30))
            .unwrap();
        assert_eq!(
            decisions,
            r#"sum(increase(canary_decision{canary_route="web"}[30s]))"#
        );
        assert_eq!(
            responses,
            r#"sum(increase(canary_response{canary_route="web"}[30s]))"#
        );
        let istio = Metrics::Istio {
            service: None,
            reporter: "source".into(),
            versions: BTreeMap::new(),
        };
        assert_eq!(
            istio.unanswered_queries("web", Duration::from_secs(30)),
            None,
            "Istio counts its own responses"
        );
    }

    #[test]
    fn the_range_is_the_step_to_the_millisecond() {
        assert_eq!(range_selector(Duration::from_secs(30)), "[30s]");
        assert_eq!(range_selector(Duration::from_millis(3050)), "[3050ms]");
        assert_eq!(range_selector(Duration::from_micros(10)), "[1ms]");
    }

    #[test]
    fn label_values_are_escaped() {
        let odd = Metrics::Istio {
            service: Some(r#"a"b\c"#.into()),
            reporter: "source".into(),
            versions: BTreeMap::new(),
        };
        assert!(odd
            .queries("r", "v", Duration::from_secs(1))
            .requests
            .contains(r#"destination_service="a\"b\\c""#));
    }

    #[test]
    fn answers() {
        let one = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.5,"42.5"]}]}}"#;
        assert_eq!(parse_value(one), Ok(Some(42.5)));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_value(empty), Ok(None));
        let nan = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert_eq!(parse_value(nan), Ok(None));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(parse_value(error), Err("parse error".into()));
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#;
        assert!(parse_value(two).is_err());
        assert!(parse_value(b"<html>").is_err());
    }
}
