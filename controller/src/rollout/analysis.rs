//! The verdict on one step, from numbers only: the canary's (and for relative checks the
//! baseline's) requests, 5xx responses and p99 latency counted over the step's window.
//!
//! No data is never a pass: a canary with fewer than `min_requests` responses in the window,
//! or with no latency samples when a latency check is set, gets [`Verdict::NoData`].

use std::fmt;

/// What was counted for one variant over a step's window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    /// Responses of every class.
    pub requests: f64,
    /// Responses of class 5xx.
    pub errors: f64,
    /// The 99th percentile of the upstream time, in milliseconds; None without samples.
    pub p99_ms: Option<f64>,
}

impl Measured {
    /// The 5xx share of the responses (0 with no responses).
    pub fn error_rate(&self) -> f64 {
        if self.requests > 0.0 {
            self.errors / self.requests
        } else {
            0.0
        }
    }
}

/// The analysis options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Fewest canary responses in a step's window for its numbers to count.
    pub min_requests: u64,
    /// Highest 5xx share for the canary (0..=1).
    pub max_error_rate: Option<f64>,
    /// Highest canary 5xx share as a multiple of the baseline's.
    pub max_error_rate_ratio: Option<f64>,
    /// Highest canary p99, in milliseconds.
    pub max_p99_ms: Option<f64>,
    /// Highest canary p99 as a multiple of the baseline's.
    pub max_p99_ratio: Option<f64>,
}

impl Thresholds {
    fn relative(&self) -> bool {
        self.max_error_rate_ratio.is_some() || self.max_p99_ratio.is_some()
    }

    fn latency(&self) -> bool {
        self.max_p99_ms.is_some() || self.max_p99_ratio.is_some()
    }
}

/// A check that failed, with the numbers it saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    ErrorRate {
        rate: f64,
        errors: f64,
        requests: f64,
        max: f64,
    },
    ErrorRateRatio {
        rate: f64,
        baseline_rate: f64,
        max_ratio: f64,
    },
    P99 {
        p99_ms: f64,
        max_ms: f64,
    },
    P99Ratio {
        p99_ms: f64,
        baseline_p99_ms: f64,
        max_ratio: f64,
    },
}

impl Failure {
    /// The check's name, as the options call it.
    pub fn check(&self) -> &'static str {
        match self {
            Failure::ErrorRate { .. } => "error rate",
            Failure::ErrorRateRatio { .. } => "error rate ratio",
            Failure::P99 { .. } => "p99 latency",
            Failure::P99Ratio { .. } => "p99 latency ratio",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ErrorRate {
                rate,
                errors,
                requests,
                max,
            } => write!(
                f,
                "error rate {} ({errors:.0} 5xx of {requests:.0} responses) is over the maximum {}",
                percent(*rate),
                percent(*max)
            ),
            Failure::ErrorRateRatio {
                rate,
                baseline_rate,
                max_ratio,
            } => write!(
                f,
                "error rate ratio: {} against the baseline's {} is over {max_ratio}×",
                percent(*rate),
                percent(*baseline_rate)
            ),
            Failure::P99 { p99_ms, max_ms } => {
                write!(f, "p99 latency {p99_ms:.1} ms is over the maximum {max_ms} ms")
            }
            Failure::P99Ratio {
                p99_ms,
                baseline_p99_ms,
                max_ratio,
            } => write!(
                f,
                "p99 latency ratio: {p99_ms:.1} ms against the baseline's {baseline_p99_ms:.1} ms is over {max_ratio}×"
            ),
        }
    }
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Fail(Vec<Failure>),
    /// Too little data to judge, and why.
    NoData(String),
}

/// Judges a step. `baseline` is None when the baseline gets no traffic at this step (the canary
/// has it all); relative checks are then not applicable and only the absolute ones decide.
pub fn judge(thresholds: &Thresholds, canary: &Measured, baseline: Option<&Measured>) -> Verdict {
    let min = thresholds.min_requests as f64;
    if canary.requests < min || canary.requests <= 0.0 {
        return Verdict::NoData(format!(
            "no data: the canary answered {:.0} requests in the window, fewer than the {} required",
            canary.requests, thresholds.min_requests
        ));
    }
    if thresholds.latency() && canary.p99_ms.is_none() {
        return Verdict::NoData("no data: no latency samples for the canary in the window".into());
    }
    let baseline = match baseline {
        Some(b) if thresholds.relative() && b.requests < min => {
            return Verdict::NoData(format!(
                "no data: the baseline answered {:.0} requests in the window, fewer than the {} required for relative checks",
                b.requests, thresholds.min_requests
            ));
        }
        Some(b) if thresholds.max_p99_ratio.is_some() && b.p99_ms.is_none() => {
            return Verdict::NoData(
                "no data: no latency samples for the baseline in the window".into(),
            );
        }
        other => other,
    };

    let mut failures = Vec::new();
    let rate = canary.error_rate();
    if let Some(max) = thresholds.max_error_rate {
        if rate > max {
            failures.push(Failure::ErrorRate {
                rate,
                errors: canary.errors,
                requests: canary.requests,
                max,
            });
        }
    }
    if let Some(p99_ms) = canary.p99_ms {
        if let Some(max_ms) = thresholds.max_p99_ms {
            if p99_ms > max_ms {
                failures.push(Failure::P99 { p99_ms, max_ms });
            }
        }
    }
    if let Some(baseline) = baseline {
        if let Some(max_ratio) = thresholds.max_error_rate_ratio {
            // A baseline without errors is counted as one error in its requests: the window
            // cannot resolve a rate below that.
            let baseline_rate = baseline.error_rate().max(1.0 / baseline.requests);
            if rate > max_ratio * baseline_rate {
                failures.push(Failure::ErrorRateRatio {
                    rate,
                    baseline_rate: baseline.error_rate(),
                    max_ratio,
                });
            }
        }
        if let (Some(max_ratio), Some(p99_ms), Some(baseline_p99_ms)) =
            (thresholds.max_p99_ratio, canary.p99_ms, baseline.p99_ms)
        {
            // Below a millisecond the histograms do not tell latencies apart.
            if p99_ms > max_ratio * baseline_p99_ms.max(1.0) {
                failures.push(Failure::P99Ratio {
                    p99_ms,
                    baseline_p99_ms,
                    max_ratio,
                });
            }
        }
    }
    if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(failures)
    }
}

/// A share as a percentage with two decimals: `12.34 %`.
pub fn percent(share: f64) -> String {
    format!("{:.2} %", share * 100.0)
}

/// The `quantile` (0..=1) of a histogram given as buckets `(lower_bound, width, count)`, sorted
/// by lower bound, interpolating linearly inside the bucket the rank falls in. None when empty.
pub fn quantile(buckets: &[(f64, f64, f64)], quantile: f64) -> Option<f64> {
    let total: f64 = buckets.iter().map(|(_, _, count)| count).sum();
    if total <= 0.0 {
        return None;
    }
    let rank = quantile.clamp(0.0, 1.0) * total;
    let mut below = 0.0;
    for &(lower, width, count) in buckets.iter().filter(|(_, _, c)| *c > 0.0) {
        if below + count >= rank {
            return Some(lower + width * ((rank - below) / count).clamp(0.0, 1.0));
        }
        below += count;
    }
    buckets
        .iter()
        .rev()
        .find(|(_, _, c)| *c > 0.0)
        .map(|(lower, width, _)| lower + width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(requests: f64, errors: f64, p99_ms: Option<f64>) -> Measured {
        Measured {
            requests,
            errors,
            p99_ms,
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            min_requests: 50,
            max_error_rate: Some(0.05),
            max_error_rate_ratio: None,
            max_p99_ms: None,
            max_p99_ratio: None,
        }
    }

    /// What the verdict should be: pass, the failed checks by name, or no data.
    #[derive(Debug, PartialEq)]
    enum Want {
        Pass,
        Fail(&'static [&'static str]),
        NoData,
    }

    fn outcome(verdict: Verdict) -> Want {
        match verdict {
            Verdict::Pass => Want::Pass,
            Verdict::NoData(_) => Want::NoData,
            Verdict::Fail(failures) => {
                let names: Vec<&'static str> = failures.iter().map(Failure::check).collect();
                Want::Fail(Box::leak(names.into_boxed_slice()))
            }
        }
    }

    #[test]
    fn verdict_table() {
        let base = thresholds();
        let latency = Thresholds {
            max_p99_ms: Some(100.0),
            ..base
        };
        let relative = Thresholds {
            max_error_rate: None,
            max_error_rate_ratio: Some(2.0),
            max_p99_ratio: Some(1.5),
            ..base
        };
        let healthy_baseline = measured(1000.0, 10.0, Some(20.0));
        type Case = (&'static str, Thresholds, Measured, Option<Measured>, Want);
        let cases: Vec<Case> = vec![
            (
                "healthy",
                base,
                measured(100.0, 1.0, None),
                None,
                Want::Pass,
            ),
            (
                "no traffic",
                base,
                measured(0.0, 0.0, None),
                None,
                Want::NoData,
            ),
            (
                "too few requests",
                base,
                measured(49.0, 0.0, None),
                None,
                Want::NoData,
            ),
            (
                "exactly the minimum",
                base,
                measured(50.0, 0.0, None),
                None,
                Want::Pass,
            ),
            (
                "20 % errors",
                base,
                measured(200.0, 40.0, None),
                None,
                Want::Fail(&["error rate"]),
            ),
            (
                "at the limit passes",
                base,
                measured(100.0, 5.0, None),
                None,
                Want::Pass,
            ),
            (
                "no data outranks failure",
                base,
                measured(10.0, 10.0, None),
                None,
                Want::NoData,
            ),
            (
                "slow",
                latency,
                measured(100.0, 0.0, Some(250.0)),
                None,
                Want::Fail(&["p99 latency"]),
            ),
            (
                "slow and failing",
                latency,
                measured(100.0, 50.0, Some(250.0)),
                None,
                Want::Fail(&["error rate", "p99 latency"]),
            ),
            (
                "fast",
                latency,
                measured(100.0, 0.0, Some(99.0)),
                None,
                Want::Pass,
            ),
            (
                "latency check without samples",
                latency,
                measured(100.0, 0.0, None),
                None,
                Want::NoData,
            ),
            (
                "relative: like the baseline",
                relative,
                measured(100.0, 1.0, Some(25.0)),
                Some(healthy_baseline),
                Want::Pass,
            ),
            (
                "relative: 3× the baseline's errors",
                relative,
                measured(100.0, 3.0, Some(20.0)),
                Some(healthy_baseline),
                Want::Fail(&["error rate ratio"]),
            ),
            (
                "relative: 2× the baseline's p99",
                relative,
                measured(100.0, 0.0, Some(40.0)),
                Some(healthy_baseline),
                Want::Fail(&["p99 latency ratio"]),
            ),
            (
                "relative: error-free baseline counts as one error",
                relative,
                measured(100.0, 1.0, Some(1.0)),
                Some(measured(100.0, 0.0, Some(0.2))),
                Want::Pass,
            ),
            (
                "relative: sub-millisecond baseline counts as 1 ms",
                relative,
                measured(100.0, 0.0, Some(1.4)),
                Some(measured(100.0, 0.0, Some(0.1))),
                Want::Pass,
            ),
            (
                "relative: baseline without enough requests",
                relative,
                measured(100.0, 0.0, Some(1.0)),
                Some(measured(10.0, 0.0, Some(1.0))),
                Want::NoData,
            ),
            (
                "relative: baseline at 0 % (the 100 % step) is not compared",
                relative,
                measured(100.0, 0.0, Some(40.0)),
                None,
                Want::Pass,
            ),
        ];
        for (label, thresholds, canary, baseline, want) in cases {
            let verdict = judge(&thresholds, &canary, baseline.as_ref());
            assert_eq!(outcome(verdict), want, "{label}");
        }
    }

    #[test]
    fn failures_name_the_numbers() {
        let verdict = judge(&thresholds(), &measured(200.0, 40.0, None), None);
        let Verdict::Fail(failures) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(
            failures[0].to_string(),
            "error rate 20.00 % (40 5xx of 200 responses) is over the maximum 5.00 %"
        );
        let verdict = judge(&thresholds(), &measured(0.0, 0.0, None), None);
        assert_eq!(
            verdict,
            Verdict::NoData(
                "no data: the canary answered 0 requests in the window, fewer than the 50 required"
                    .into()
            )
        );
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        type Case<'a> = (&'a str, &'a [(f64, f64, f64)], f64, Option<f64>);
        let cases: &[Case] = &[
            ("empty", &[], 0.99, None),
            ("all zero", &[(1.0, 1.0, 0.0)], 0.99, None),
            ("one bucket", &[(30.0, 1.0, 100.0)], 0.99, Some(30.99)),
            (
                "tail bucket",
                &[(1.0, 0.1, 98.0), (50.0, 1.0, 2.0)],
                0.99,
                Some(50.5),
            ),
            (
                "median in the first",
                &[(1.0, 0.1, 98.0), (50.0, 1.0, 2.0)],
                0.5,
                Some(1.0 + 0.1 * 50.0 / 98.0),
            ),
            ("zero-width bucket", &[(0.0, 0.0, 10.0)], 0.99, Some(0.0)),
            (
                "empty buckets are skipped",
                &[(1.0, 1.0, 10.0), (2.0, 1.0, 0.0), (3.0, 1.0, 0.0)],
                1.0,
                Some(2.0),
            ),
        ];
        for (label, buckets, q, want) in cases {
            let got = quantile(buckets, *q);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{label}: {g} != {w}"),
                _ => assert_eq!(got, *want, "{label}"),
            }
        }
    }
}
