//! `canaryctl set-weight`, `promote`, `abort` and `status` against a real Envoy that reads
//! the filter's configuration from the ECDS file canaryctl rewrites (`--target file:PATH`).
//!
//! canaryctl is run through its library entry point (`commands::run` on parsed arguments,
//! exactly what `main` does), on a blocking thread, as the binary would be. The changes run
//! against both builds of the filter: the ECDS file holds a Wasm filter for the one and a
//! `DynamicModuleFilter` for the other, and canaryctl edits either the same way.

use std::path::Path;
use std::time::{Duration, Instant};

use canary_e2e::canaryctl::run as canaryctl;
use canary_e2e::envoy::ecds_stat;
use canary_e2e::{client, for_each_build, get, variants_of, Build, Envoy, Load, Upstream};
use canaryctl::args::{Command, Output, TargetArg};

fn config(canary_weight: u32) -> String {
    serde_json::json!({
        "debugHeader": true,
        "routes": [{
            "name": "web",
            "variants": [
                { "name": "stable", "weight": 100 - canary_weight },
                { "name": "canary", "weight": canary_weight }
            ],
            "targeting": [
                { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" }
            ],
            "stickiness": { "keys": [ { "header": "x-user-id" } ], "salt": "web-2026-11" }
        }]
    })
    .to_string()
}

struct Setup {
    envoy: Envoy,
    _stable: Upstream,
    _canary: Upstream,
}

async fn setup(canary_weight: u32, build: Build) -> Setup {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config(canary_weight))
        .start()
        .await;
    Setup {
        envoy,
        _stable: stable,
        _canary: canary,
    }
}

fn set_weight(envoy: &Envoy, route: &str, weights: &[&str]) -> Command {
    Command::SetWeight {
        target: target_arg(envoy),
        route: route.to_owned(),
        weights: weights.iter().map(|w| w.to_string()).collect(),
    }
}

fn promote(envoy: &Envoy, route: &str, variant: &str) -> Command {
    Command::Promote {
        target: target_arg(envoy),
        route: route.to_owned(),
        variant: variant.to_owned(),
    }
}

fn abort(envoy: &Envoy, route: &str) -> Command {
    Command::Abort {
        target: target_arg(envoy),
        route: route.to_owned(),
    }
}

fn status(envoy: &Envoy, output: Output) -> Command {
    Command::Status {
        target: target_arg(envoy),
        envoy_admin: Some(envoy.admin_url("")),
        envoy_admin_http: Default::default(),
        output,
    }
}

fn target_arg(envoy: &Envoy) -> TargetArg {
    TargetArg {
        target: target(envoy),
    }
}

fn target(envoy: &Envoy) -> String {
    format!("file:{}", envoy.ecds_path().display())
}

const PROBE_USERS: usize = 400;

/// The canary share (%) over a fixed set of users; every request must succeed.
async fn canary_share(envoy: &Envoy) -> f64 {
    let users: Vec<String> = (0..PROBE_USERS).map(|i| format!("probe-{i}")).collect();
    let replies = variants_of(envoy, &users, 32).await;
    let canary = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{r:?}");
            r.upstream.as_deref().expect("x-upstream")
        })
        .filter(|u| *u == "canary")
        .count();
    canary as f64 * 100.0 / PROBE_USERS as f64
}

/// Probes until the canary share is in `range`; how long that took.
async fn time_until_share(envoy: &Envoy, range: std::ops::RangeInclusive<f64>) -> Duration {
    let start = Instant::now();
    loop {
        let share = canary_share(envoy).await;
        if range.contains(&share) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "canary share still {share:.1} %, want {range:?}; Envoy log:\n{}",
            envoy.log()
        );
    }
}

/// `set-weight canary=30` against the ECDS file: the observed split moves from 10 % to about
/// 30 % within 2 seconds, Envoy accepts the update, and no request fails meanwhile.
async fn set_weight_moves_the_observed_split_within_two_seconds(build: Build) {
    let s = setup(10, build).await;
    let share = canary_share(&s.envoy).await;
    assert!(
        (5.0..=15.0).contains(&share),
        "canary share {share:.1} % at weight 10"
    );
    let accepted = s
        .envoy
        .stat(&ecds_stat("update_success"))
        .await
        .unwrap_or(0);

    let load = Load::start(&s.envoy, 8, 300);
    tokio::time::sleep(Duration::from_millis(200)).await;
    canaryctl(set_weight(&s.envoy, "web", &["canary=30"]))
        .await
        .expect("set-weight");
    let took = time_until_share(&s.envoy, 24.0..=36.0).await;
    let (sent, failed) = load.stop_after(200).await;

    eprintln!("set-weight canary=30: the observed split moved after {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "the split moved only after {took:?}"
    );
    assert!(sent > 100, "too little load to mean anything: {sent}");
    assert_eq!(failed, 0, "requests failed during the change ({sent} sent)");
    assert_eq!(
        s.envoy.stat(&ecds_stat("update_success")).await,
        Some(accepted + 1)
    );
    assert_eq!(
        s.envoy
            .stat(&ecds_stat("update_rejected"))
            .await
            .unwrap_or(0),
        0
    );
}

/// Invalid changes are refused before anything is written: the ECDS file stays byte for
/// byte, Envoy sees no update, traffic keeps its split.
async fn an_invalid_change_is_refused_and_the_file_left_unchanged(build: Build) {
    let s = setup(10, build).await;
    let path = s.envoy.ecds_path();
    let before = read(&path);
    let attempts = s.envoy.stat(&ecds_stat("update_attempt")).await;
    let e = &s.envoy;

    for (command, fragment) in [
        (
            set_weight(e, "web", &["canary=101"]),
            "must be between 0 and 100",
        ),
        (
            set_weight(e, "web", &["canary=30", "stable=30"]),
            "must sum to 100",
        ),
        (
            set_weight(e, "web", &["canary=10.0005"]),
            "more than 3 decimals",
        ),
        (
            set_weight(e, "web", &["green=5"]),
            "no variant named \"green\"",
        ),
        (
            set_weight(e, "api", &["canary=5"]),
            "no route named \"api\"",
        ),
        (promote(e, "web", "green"), "no variant named \"green\""),
        (abort(e, "api"), "no route named \"api\""),
    ] {
        let label = format!("{command:?}");
        let error = canaryctl(command).await.expect_err("refused");
        assert!(
            error.contains(fragment),
            "{label}: expected {fragment:?} in {error}"
        );
        assert_eq!(read(&path), before, "{label} left the ECDS file unchanged");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.envoy.stat(&ecds_stat("update_attempt")).await,
        attempts,
        "Envoy saw no update"
    );
    let share = canary_share(&s.envoy).await;
    assert!(
        (5.0..=15.0).contains(&share),
        "canary share {share:.1} % still at weight 10"
    );
}

/// `promote` sends every user to the canary, `abort` every user back to the baseline.
async fn promote_and_abort_move_all_traffic(build: Build) {
    let s = setup(10, build).await;
    let load = Load::start(&s.envoy, 8, 300);

    canaryctl(promote(&s.envoy, "web", "canary"))
        .await
        .expect("promote");
    let took = time_until_share(&s.envoy, 100.0..=100.0).await;
    assert!(took < Duration::from_secs(2), "promote took {took:?}");

    canaryctl(abort(&s.envoy, "web")).await.expect("abort");
    let took = time_until_share(&s.envoy, 0.0..=0.0).await;
    assert!(took < Duration::from_secs(2), "abort took {took:?}");
    // Targeting still reaches the canary at weight 0.
    let reply = get(
        &client(),
        &s.envoy.url("/"),
        &[("x-user-id", "u"), ("x-canary", "always")],
    )
    .await
    .expect("request");
    assert_eq!(reply.upstream.as_deref(), Some("canary"), "{reply:?}");

    let (sent, failed) = load.stop_after(200).await;
    assert!(sent > 100, "too little load to mean anything: {sent}");
    assert_eq!(
        failed, 0,
        "requests failed during promote/abort ({sent} sent)"
    );
}

/// `status` reads the observed split from the real Envoy's counters.
async fn status_reads_the_observed_split_from_envoy(build: Build) {
    let s = setup(30, build).await;
    let share = canary_share(&s.envoy).await;
    // The filter hands its counts to Envoy about once a second: wait until every probe is in.
    let names = ["stable", "canary"].map(|v| format!("canary.route.web.variant.{v}.decision.hash"));
    let probes = PROBE_USERS as u64;
    assert_eq!(s.envoy.counted(&names, probes).await, probes);
    let admin = s.envoy.admin_url("");
    let observed = {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || canaryctl::observed::fetch(&admin, &Default::default()))
            .await
            .expect("thread")
            .expect("stats from Envoy")
    };
    let web = observed.route("web").expect("the web route's counters");
    let canary = web.get("canary").copied().unwrap_or(0);
    let stable = web.get("stable").copied().unwrap_or(0);
    assert_eq!(canary + stable, PROBE_USERS as u64, "{observed:?}");
    assert_eq!(canary as f64 * 100.0 / PROBE_USERS as f64, share);
    let counter = s
        .envoy
        .counter("canary.route.web.variant.canary.decision.hash")
        .await;
    assert_eq!(counter, Some(canary));

    canaryctl(status(&s.envoy, Output::Text))
        .await
        .expect("status");
    canaryctl(status(&s.envoy, Output::Json))
        .await
        .expect("status --output json");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read the ECDS file")
}

for_each_build!(
    set_weight_moves_the_observed_split_within_two_seconds,
    an_invalid_change_is_refused_and_the_file_left_unchanged,
    promote_and_abort_move_all_traffic,
    status_reads_the_observed_split_from_envoy,
);
