//! `canaryctl rollout`: steps a variant's weight up, checks its health over each step's window
//! from real metrics, and promotes it to 100 % or rolls it back to 0 % by itself.
//!
//! - [`analysis`]: the verdict on a step, from numbers only;
//! - [`metrics`]: where the numbers come from (Prometheus, or an Envoy admin endpoint);
//! - [`state`]: the progress recorded with the target, so a restarted rollout resumes, `resume`
//!   lifts a pause and `abort` stops it;
//! - [`progress`]: a bar on a terminal, plain lines elsewhere, and the report table;
//! - [`runner`]: the loop tying them together.

pub mod analysis;
pub mod metrics;
pub mod progress;
mod runner;
pub mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::args::TargetArg;
use crate::duration::parse_duration;
use crate::http::HttpOptions;
use crate::targets::Target;

/// Exit code of a rollout rolled back by a failed check or for lack of data.
pub const EXIT_ROLLED_BACK: u8 = 2;
/// Exit code of a rollout stopped by `canaryctl abort`.
pub const EXIT_ABORTED: u8 = 3;

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// The route whose variant is rolled out.
    #[arg(long)]
    pub route: String,
    /// The variant to roll out; the route's first variant is the baseline it is compared with.
    #[arg(long)]
    pub variant: String,
    /// The variant's weight at each step, in percent, increasing. After the last it is promoted
    /// to 100 %.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,25,50,100")]
    pub steps: Vec<String>,
    /// How long each step lasts; its analysis covers that window (`30s`, `2m`, `500ms`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Where the metrics come from: prometheus:URL or envoy:URL (an Envoy admin endpoint);
    /// the URL is http:// or https://.
    #[arg(long, value_name = "SOURCE")]
    pub metrics: String,
    #[command(flatten)]
    pub metrics_http: MetricsHttpArgs,
    /// Read Istio's standard metrics (istio_requests_total) from Prometheus instead of the
    /// filter's.
    #[arg(long)]
    pub istio: bool,
    /// With --istio: match destination_service (the FQDN) instead of destination_service_name =
    /// the route.
    #[arg(long, value_name = "FQDN", requires = "istio")]
    pub istio_service: Option<String>,
    /// With --istio: a variant whose pods' `version` label (Istio's destination_version) is
    /// not its name, e.g. canary=v2. Repeatable.
    #[arg(long, value_name = "VARIANT=VERSION", requires = "istio")]
    pub istio_version: Vec<String>,
    /// With --istio: the reporter label to read.
    #[arg(long, default_value = "source", requires = "istio")]
    pub istio_reporter: String,
    /// Highest 5xx share of the variant's responses in a step (0..=1).
    #[arg(long, default_value_t = 0.05)]
    pub max_error_rate: f64,
    /// Highest 5xx share as a multiple of the baseline's.
    #[arg(long, value_name = "RATIO")]
    pub max_error_rate_ratio: Option<f64>,
    /// Highest p99 of the upstream time, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub max_p99_ms: Option<f64>,
    /// Highest p99 as a multiple of the baseline's.
    #[arg(long, value_name = "RATIO")]
    pub max_p99_ratio: Option<f64>,
    /// Fewest responses from the variant in a step for its analysis to count.
    #[arg(long, default_value_t = 50)]
    pub min_requests: u64,
    /// How many times in a row a step without enough data is repeated before rolling back.
    #[arg(long, default_value_t = 2)]
    pub no_data_retries: u32,
    /// Weights at which to wait, once the step has passed, for `canaryctl resume`.
    #[arg(long, value_delimiter = ',', value_name = "PCT")]
    pub pause_at: Vec<String>,
    /// How progress is shown.
    #[arg(long, value_enum, default_value_t = progress::Mode::Auto)]
    pub progress: progress::Mode,
}

/// How `rollout` reaches `--metrics`.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsHttpArgs {
    /// PEM certificates to trust for an https:// metrics source, instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub metrics_ca: Option<PathBuf>,
    /// A file holding a bearer token for the metrics source, read at each request (so a
    /// rotated service-account token is picked up).
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// A file holding `user:password` for HTTP basic auth to the metrics source, read at each
    /// request.
    #[arg(long, value_name = "FILE", conflicts_with = "metrics_token_file")]
    pub metrics_basic_auth_file: Option<PathBuf>,
    /// How long connecting to the metrics source, and then each whole request, may take.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub metrics_timeout: Duration,
}

impl MetricsHttpArgs {
    pub fn options(&self) -> HttpOptions {
        HttpOptions {
            ca_file: self.metrics_ca.clone(),
            token_file: self.metrics_token_file.clone(),
            basic_auth_file: self.metrics_basic_auth_file.clone(),
            timeout: self.metrics_timeout,
        }
    }
}

pub fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    let plan = runner::Plan::from_args(&args)?;
    let outcome = runner::Runner::new(plan, args.progress).run()?;
    Ok(match outcome {
        runner::Outcome::Promoted => ExitCode::SUCCESS,
        runner::Outcome::RolledBack => ExitCode::from(EXIT_ROLLED_BACK),
        runner::Outcome::Aborted => ExitCode::from(EXIT_ABORTED),
    })
}

/// `canaryctl resume`: lifts the pause of a rollout waiting at a manual gate.
pub fn resume(target: &str, route: &str) -> anyhow::Result<ExitCode> {
    let target: Target = target.parse()?;
    let kept = state::resume(&target, route)
        .with_context(|| format!("{target}: the rollout of route {route:?} not resumed"))?;
    match kept {
        Some(record) if record.state == state::State::Running => {
            println!(
                "{target} route {route}: rollout of {} resumed at step {}/{}",
                record.variant,
                record.step,
                record.steps.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        other => {
            let now = other
                .or(state::load(&target, route)?)
                .map_or("no rollout recorded".to_owned(), |r| {
                    format!("the rollout of {} is {}", r.variant, r.state)
                });
            eprintln!("error: {target} route {route}: no paused rollout to resume ({now})");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// For `canaryctl abort`: marks a rollout under way on `route` aborted, so the `rollout`
/// process stops. The aborted rollout's variant, if there was one.
pub fn mark_aborted(target: &Target, route: &str) -> anyhow::Result<Option<String>> {
    let aborted = state::abort(target, route)
        .with_context(|| format!("{target}: the rollout of route {route:?} not marked aborted"))?;
    Ok(aborted.map(|record| record.variant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout_args(extra: &[&str]) -> Result<RolloutArgs, clap::Error> {
        use clap::Parser as _;
        let mut argv = vec![
            "canaryctl",
            "rollout",
            "--target",
            "file:ecds.json",
            "--route",
            "web",
            "--variant",
            "canary",
            "--metrics",
            "prometheus:https://thanos:10902",
        ];
        argv.extend(extra);
        match crate::args::Args::try_parse_from(argv)?.command {
            crate::args::Command::Rollout(args) => Ok(*args),
            _ => unreachable!("parsed as a rollout"),
        }
    }

    #[test]
    fn metrics_http_options() {
        let defaults = rollout_args(&[]).unwrap().metrics_http.options();
        assert_eq!(defaults, HttpOptions::default());
        let given = rollout_args(&[
            "--metrics-ca",
            "ca.pem",
            "--metrics-token-file",
            "token",
            "--metrics-timeout",
            "3s",
        ])
        .unwrap()
        .metrics_http
        .options();
        assert_eq!(
            given,
            HttpOptions {
                ca_file: Some("ca.pem".into()),
                token_file: Some("token".into()),
                basic_auth_file: None,
                timeout: Duration::from_secs(3),
            }
        );
        let both = [
            "--metrics-token-file",
            "t",
            "--metrics-basic-auth-file",
            "b",
        ];
        assert!(
            rollout_args(&both).is_err(),
            "a token or basic auth, not both"
        );
    }
}
