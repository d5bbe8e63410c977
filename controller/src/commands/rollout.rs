//! `canaryctl rollout`: the command line made into a checked [`Plan`], run to its outcome.

use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::args::RolloutArgs;
use crate::rollout::analysis::Thresholds;
use crate::rollout::metrics::{envoy::Clusters, prometheus::Metrics, Source};
use crate::rollout::{parse_percent, Outcome, Plan, Runner, EXIT_ABORTED, EXIT_ROLLED_BACK};
use crate::targets::{Clients, Target};
use crate::weights::weight_text;

/// The shortest ramp `--ramp` writes: below it, the skew between the proxies' clocks is as long
/// as the ramp.
const MIN_RAMP: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the rollout loop here, reaching the target through `clients` on `runtime`.
pub fn run(
    runtime: &tokio::runtime::Handle,
    clients: Clients,
    args: RolloutArgs,
) -> anyhow::Result<ExitCode> {
    let plan = plan_of(&args)?;
    let outcome = Runner::new(plan, args.progress, runtime.clone(), clients).run()?;
    Ok(match outcome {
        Outcome::Promoted => ExitCode::SUCCESS,
        Outcome::RolledBack => ExitCode::from(EXIT_ROLLED_BACK),
        Outcome::Aborted => ExitCode::from(EXIT_ABORTED),
    })
}

/// The plan the command line asks for, checked.
pub fn plan_of(args: &RolloutArgs) -> anyhow::Result<Plan> {
    let target: Target = args.target.target.parse()?;
    let steps = args
        .steps
        .iter()
        .map(|s| parse_percent(s))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("--steps")?;
    if steps.is_empty() || steps.iter().any(|w| w.0 == 0) {
        bail!("--steps: give one or more weights above 0, e.g. 1,5,10,25,50,100");
    }
    if steps.windows(2).any(|pair| pair[0] >= pair[1]) {
        bail!("--steps: the weights must increase");
    }
    if args.ramp && args.interval < MIN_RAMP {
        bail!(
            "--ramp: --interval {:?} is too short: a step's ramp lasts at least 1s, as the \
             proxies' clocks agree only to about a second",
            args.interval
        );
    }
    let pause_at = args
        .pause_at
        .iter()
        .map(|s| parse_percent(s))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("--pause-at")?;
    if let Some(w) = pause_at.iter().find(|w| !steps.contains(w)) {
        bail!("--pause-at {} % is not one of the steps", weight_text(*w));
    }
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        bail!("--max-error-rate is a share between 0 and 1 (0.05 is 5 %)");
    }
    for (name, value) in [
        ("--max-error-rate-ratio", args.max_error_rate_ratio),
        ("--max-p99-ms", args.max_p99_ms),
        ("--max-p99-ratio", args.max_p99_ratio),
    ] {
        if value.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
            bail!("{name} must be a number above 0");
        }
    }
    let metrics = if args.istio {
        let versions = args
            .istio_version
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .filter(|(v, l)| !v.is_empty() && !l.is_empty())
                    .map(|(v, l)| (v.to_owned(), l.to_owned()))
                    .with_context(|| format!("--istio-version {pair:?}: expected VARIANT=VERSION"))
            })
            .collect::<anyhow::Result<_>>()?;
        Metrics::Istio {
            service: args.istio_service.clone(),
            reporter: args.istio_reporter.clone(),
            versions,
        }
    } else {
        Metrics::Filter
    };
    let mut source = Source::parse(&args.metrics, metrics, &args.metrics_http.options())?;
    if args.istio && matches!(source, Source::Envoy(_)) {
        bail!("--istio reads Istio's metrics from Prometheus: give --metrics prometheus:URL");
    }
    let clusters = Clusters::parse(&args.envoy_cluster)?;
    if !clusters.is_empty() {
        source = source.with_clusters(clusters)?;
    }
    Ok(Plan {
        target,
        route: args.route.clone(),
        variant: args.variant.clone(),
        steps,
        interval: args.interval,
        ramp: args.ramp,
        thresholds: Thresholds {
            min_requests: args.min_requests,
            max_error_rate: Some(args.max_error_rate),
            max_error_rate_ratio: args.max_error_rate_ratio,
            max_p99_ms: args.max_p99_ms,
            max_p99_ratio: args.max_p99_ratio,
        },
        source,
        pause_at,
        no_data_retries: args.no_data_retries,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::args::{Args, Command};
    use canary_filter::Weight;

    use crate::http::HttpOptions;

    fn plan(extra: &[&str]) -> anyhow::Result<Plan> {
        let mut argv = vec![
            "canaryctl",
            "rollout",
            "--target",
            "file:/etc/envoy/ecds/filter.json",
            "--route",
            "web",
            "--variant",
            "canary",
        ];
        argv.extend(extra);
        let args = Args::try_parse_from(argv)?;
        let Command::Rollout(args) = args.command else {
            anyhow::bail!("not a rollout");
        };
        plan_of(&args)
    }

    #[test]
    fn options_become_a_plan() {
        let p = plan(&[
            "--metrics",
            "prometheus:http://prometheus:9090",
            "--istio",
            "--istio-version",
            "canary=v2",
            "--steps",
            "5,12.5,50",
            "--pause-at",
            "50",
            "--max-p99-ms",
            "250",
        ])
        .unwrap();
        assert_eq!(p.steps, [Weight(5_000), Weight(12_500), Weight(50_000)]);
        assert_eq!(p.pause_at, [Weight(50_000)]);
        assert_eq!(p.interval, Duration::from_secs(30));
        assert!(!p.ramp, "steps jump unless --ramp");
        assert_eq!(p.thresholds.min_requests, 50);
        assert_eq!(p.thresholds.max_error_rate, Some(0.05));
        assert_eq!(p.thresholds.max_p99_ms, Some(250.0));
        let Source::Prometheus(prometheus) = &p.source else {
            panic!("{:?}", p.source)
        };
        assert!(prometheus
            .metrics()
            .queries("web", "canary", Duration::from_secs(30))
            .requests
            .contains(r#"destination_version="v2""#));
        let ramped = plan(&[
            "--metrics",
            "envoy:http://127.0.0.1:15000",
            "--ramp",
            "--interval",
            "1s",
        ])
        .unwrap();
        assert!(ramped.ramp);
        assert_eq!(ramped.interval, Duration::from_secs(1));
        let envoy = plan(&["--metrics", "envoy:http://127.0.0.1:15000"]).unwrap();
        assert_eq!(envoy.steps.len(), 6, "default steps 1,5,10,25,50,100");
        let Source::Envoy(admin) = &envoy.source else {
            panic!("{:?}", envoy.source)
        };
        assert_eq!(admin.clusters(), None, "the filter's stats by default");
        let clusters = plan(&[
            "--metrics",
            "envoy:http://127.0.0.1:15000",
            "--envoy-cluster",
            "canary=variant-canary",
            "--envoy-cluster",
            "stable=outbound|80|v1|web.shop.svc.cluster.local",
        ])
        .unwrap();
        assert_eq!(
            clusters.source.to_string(),
            "Envoy admin http://127.0.0.1:15000 (clusters canary=variant-canary, \
             stable=outbound|80|v1|web.shop.svc.cluster.local)"
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let envoy = ["--metrics", "envoy:http://127.0.0.1:15000"];
        let cases: &[(&[&str], &str)] = &[
            (&["--steps", "10,5"], "must increase"),
            (&["--steps", "0,5"], "above 0"),
            (&["--steps", "10,101"], "between 0 and 100"),
            (&["--pause-at", "30"], "not one of the steps"),
            (&["--max-error-rate", "5"], "between 0 and 1"),
            (&["--max-p99-ms", "0"], "above 0"),
            (
                &["--istio"],
                "--istio reads Istio's metrics from Prometheus",
            ),
            (&["--interval", "0s"], "more than zero"),
            (&["--ramp", "--interval", "0s"], "more than zero"),
            (
                &["--ramp", "--interval", "999ms"],
                "--ramp: --interval 999ms is too short",
            ),
        ];
        for (extra, fragment) in cases {
            let mut args = envoy.to_vec();
            args.extend(*extra);
            let error = format!("{:#}", plan(&args).expect_err(fragment));
            assert!(error.contains(fragment), "{extra:?}: {error}");
        }
        let prometheus = ["--metrics", "prometheus:http://prometheus:9090"];
        let cluster_cases: &[(&[&str], &str)] = &[
            (&["--envoy-cluster", "canary=c"], "give --metrics envoy:URL"),
            (
                &["--istio", "--envoy-cluster", "canary=c"],
                "cannot be used with",
            ),
        ];
        for (extra, fragment) in cluster_cases {
            let mut args = prometheus.to_vec();
            args.extend(*extra);
            let error = format!("{:#}", plan(&args).expect_err(fragment));
            assert!(error.contains(fragment), "{extra:?}: {error}");
        }
        let error = format!(
            "{:#}",
            plan(&["--metrics", envoy[1], "--envoy-cluster", "canary"]).unwrap_err()
        );
        assert!(error.contains("expected VARIANT=CLUSTER"), "{error}");
        let error = plan(&["--metrics", "graphite:http://x"]).unwrap_err();
        assert!(error.to_string().contains("prometheus:URL or envoy:URL"));
    }

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
