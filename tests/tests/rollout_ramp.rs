//! `canaryctl rollout --ramp` end to end: a real Envoy running the filter, real upstreams and
//! the filter's own metrics read from Envoy's admin endpoint. Each step writes a ramp from the
//! weight in force to the step's weight over the interval; measured through Envoy, the canary
//! share moves through the weights in between while a step ramps, a healthy canary is promoted,
//! and a failing one is rolled back with the ramp removed.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canary_e2e::canaryctl::canaryctl_bin;
use canary_e2e::{client, concurrently, get, Envoy, Load, Upstream};
use canary_filter::{PluginConfig, RoutingTable};
use canaryctl::rollout::state::{self, Record, State};
use canaryctl::targets::{Clients, Target};

/// The probe users whose share of the canary is measured.
const USERS: usize = 400;
/// How far apart the test's clock and Envoy's may read the same moment: both are this
/// machine's system clock, read a little before and after each sample.
const CLOCK_SLACK_MS: u64 = 100;
/// How long after a ramp's start a sample may begin: Envoy reloads the ECDS file a moment after
/// it is written.
const SETTLE_MS: u64 = 500;

/// The options of every rollout here: three ramped steps of 4 s.
const RAMPED: [&str; 5] = ["--steps", "20,50,100", "--interval", "4s", "--ramp"];

fn config() -> String {
    serde_json::json!({
        "metrics": { "responses": true },
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 100 }, { "name": "canary", "weight": 0 } ],
            "stickiness": { "keys": [ { "header": "x-user-id" } ], "salt": "web-rollout-ramp" }
        }]
    })
    .to_string()
}

async fn start(canary: &Upstream, stable: &Upstream) -> Envoy {
    Envoy::builder()
        .variant("stable", stable)
        .variant("canary", canary)
        .plugin_config(&config())
        .stats_flush_interval(Duration::from_secs(1))
        .start()
        .await
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_millis()).expect("in range")
}

fn target(envoy: &Envoy) -> Target {
    format!("file:{}", envoy.ecds_path().display())
        .parse()
        .expect("target")
}

async fn live(envoy: &Envoy) -> PluginConfig {
    target(envoy)
        .read(&Clients::default())
        .await
        .expect("read the ECDS file")
}

async fn record(envoy: &Envoy) -> Option<Record> {
    state::load(&target(envoy), &Clients::default(), "web")
        .await
        .expect("read the record")
}

/// `canaryctl rollout --ramp` of `canary` on route `web`, reading the filter's metrics from
/// Envoy's admin endpoint, with `options` on top.
fn rollout(envoy: &Envoy, options: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(canaryctl_bin());
    command
        .args(["rollout", "--target", &target(envoy).to_string()])
        .args(["--route", "web", "--variant", "canary"])
        .args(["--metrics", &format!("envoy:{}", envoy.admin_url(""))])
        .args(["--progress", "lines", "--min-requests", "20"])
        .args(RAMPED)
        .args(options)
        .env("CANARYCTL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs canaryctl to the end: exit code, stdout and stderr.
async fn finish(command: tokio::process::Command) -> (i32, String, String) {
    let mut command = command;
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("canaryctl finished within 60 s")
        .expect("canaryctl ran");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("canaryctl rollout ({}):\n{out}", output.status);
    (
        output.status.code().unwrap_or(-1),
        out,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Which of `users` the canary serves, one request each.
async fn on_canary(envoy: &Envoy, users: &[String]) -> Vec<bool> {
    let client = client();
    let url = envoy.url("/");
    concurrently(users.to_vec(), 16, |user| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let reply = get(&client, &url, &[("x-user-id", &user)])
                .await
                .unwrap_or_else(|e| panic!("request for {user} failed: {e}"));
            match reply.upstream.as_deref() {
                Some("canary") => true,
                Some("stable") => false,
                other => panic!("{user} served by {other:?}"),
            }
        }
    })
    .await
}

/// How many of `users` the route assigns to the canary at `at_ms`, by the filter's own code.
fn expected(table: &RoutingTable, users: &[String], at_ms: u64) -> usize {
    let route = &table.routes[0];
    users
        .iter()
        .filter(|user| route.assign_at(user.as_bytes(), at_ms) == 1)
        .count()
}

/// A measurement taken while a step ramped.
struct Sample {
    /// The step's ramp, `from` and `to` in percent.
    from: f64,
    to: f64,
    /// Canary users at the ramp's start and end, by the filter's code.
    at_from: usize,
    at_to: usize,
    /// Canary users by the filter's code just before and after the sample.
    low: usize,
    high: usize,
    /// Canary users measured through Envoy.
    seen: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramped_rollout_of_a_healthy_canary_rises_through_each_step_and_is_promoted() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let envoy = start(&canary, &stable).await;
    let users: Vec<String> = (0..USERS).map(|i| format!("probe-{i}")).collect();
    let load = Load::start(&envoy, 4, 300);
    let run = tokio::spawn(finish(rollout(&envoy, &[])));

    let mut samples = Vec::new();
    let mut status_seen = None;
    let mut recorded_ramp = None;
    while !run.is_finished() {
        let config = live(&envoy).await;
        let Some(ramp) = config.routes[0].ramp.clone() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let table = RoutingTable::try_from(&config).expect("the filter takes the ramp");
        let compiled = table.routes[0].ramp.clone().expect("compiled");
        let (start, end) = (
            u64::try_from(compiled.start_ms).expect("after 1970"),
            u64::try_from(compiled.end_ms()).expect("after 1970"),
        );
        let began = now_ms();
        if began < start + SETTLE_MS || began + SETTLE_MS > end {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        if recorded_ramp.is_none() {
            recorded_ramp = record(&envoy).await.and_then(|r| r.ramp);
        }
        if status_seen.is_none() {
            status_seen = Some(status(&envoy));
        }
        let seen = on_canary(&envoy, &users).await;
        let finished = now_ms();
        if finished + CLOCK_SLACK_MS > end {
            continue;
        }
        samples.push(Sample {
            from: ramp.from,
            to: ramp.to,
            at_from: expected(&table, &users, start),
            at_to: expected(&table, &users, end),
            low: expected(&table, &users, began - CLOCK_SLACK_MS),
            high: expected(&table, &users, finished + CLOCK_SLACK_MS),
            seen: seen.iter().filter(|c| **c).count(),
        });
    }
    let (code, out, err) = run.await.expect("canaryctl task");
    load.stop().await;

    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for line in [
        "steps 20, 50, 100 % every 4s, ramped",
        "step 1/3: canary ramps 0 % → 20 % over 4s from ",
        "step 2/3: canary ramps 20 % → 50 % over 4s from ",
        "step 3/3: canary ramps 50 % → 100 % over 4s from ",
        ", stable 50 % → 0 %",
        "step 3/3 passed",
        "promoted: canary has 100 %",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    for sample in &samples {
        eprintln!(
            "ramp {} → {} %: {} canary users of {USERS} (the filter gives {}..={} then, \
             {} at the ramp's start, {} at its end)",
            sample.from,
            sample.to,
            sample.seen,
            sample.low,
            sample.high,
            sample.at_from,
            sample.at_to
        );
        assert!(
            (sample.low..=sample.high).contains(&sample.seen),
            "{} canary users, where the filter gives {}..={} at the time of the sample",
            sample.seen,
            sample.low,
            sample.high
        );
    }
    for (from, to) in [(0.0, 20.0), (20.0, 50.0), (50.0, 100.0)] {
        let between = samples
            .iter()
            .any(|s| s.from == from && s.to == to && s.at_from < s.seen && s.seen < s.at_to);
        assert!(
            between,
            "no sample of the {from} → {to} % step strictly between its endpoints"
        );
    }

    let status = status_seen.expect("canaryctl status ran mid-step");
    assert!(status.contains("  ramp of canary from "), "{status}");
    assert!(status.contains("final"), "{status}");
    let recorded_ramp = recorded_ramp.expect("the record says the step is a ramp");
    assert_eq!(recorded_ramp.duration, "4s");

    let done = live(&envoy).await;
    assert_eq!(done.routes[0].ramp, None, "promotion removes the ramp");
    assert_eq!(done.routes[0].variants[1].weight, 100.0);
    let done = record(&envoy).await.expect("a record");
    assert_eq!((done.state, done.ramp), (State::Promoted, None));
    assert!(
        on_canary(&envoy, &users[..50]).await.iter().all(|c| *c),
        "every user is on the canary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramped_rollout_of_a_failing_canary_is_rolled_back_with_its_ramp_removed() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::builder("canary").fail_one_in(1).start().await;
    let envoy = start(&canary, &stable).await;
    let load = Load::start(&envoy, 4, 300);
    let run = tokio::spawn(finish(rollout(&envoy, &[])));

    let deadline = Instant::now() + Duration::from_secs(30);
    let ramp = loop {
        if let Some(ramp) = live(&envoy).await.routes[0].ramp.clone() {
            break ramp;
        }
        assert!(Instant::now() < deadline, "the rollout never wrote a ramp");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (ramp.variant.as_str(), ramp.from, ramp.to),
        ("canary", 0.0, 20.0)
    );
    let (code, out, err) = run.await.expect("canaryctl task");
    load.stop().await;

    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("step 1/3: canary ramps 0 % → 20 %"), "{out}");
    assert!(
        out.contains("step 1/3 at 20 % failed: error rate "),
        "{out}"
    );
    assert!(
        out.contains("rolled back: canary is back to 0 % (stable 100 %)"),
        "{out}"
    );
    assert!(
        !out.contains("step 2/3"),
        "never past the first step:\n{out}"
    );
    let config = live(&envoy).await;
    assert_eq!(config.routes[0].ramp, None, "the rollback removes the ramp");
    assert_eq!(config.routes[0].variants[1].weight, 0.0);
    let done = record(&envoy).await.expect("a record");
    assert_eq!((done.state, done.ramp), (State::RolledBack, None));
    let users: Vec<String> = (0..USERS).map(|i| format!("probe-{i}")).collect();
    assert!(
        on_canary(&envoy, &users).await.iter().all(|c| !c),
        "every user is back on the baseline"
    );
}

/// A gate holds the weight the step's ramp reached until `canaryctl resume`; `canaryctl abort`
/// during the next step's ramp removes it and sends everybody to the baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramped_rollout_pauses_at_its_gate_resumes_and_is_aborted_mid_ramp() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let envoy = start(&canary, &stable).await;
    let load = Load::start(&envoy, 4, 300);
    let run = tokio::spawn(finish(rollout(&envoy, &["--pause-at", "20"])));
    let ecds_target = target(&envoy).to_string();
    let canaryctl = |command: &'static str| {
        std::process::Command::new(canaryctl_bin())
            .args([command, "--target", &ecds_target, "--route", "web"])
            .output()
            .expect("canaryctl ran")
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    while record(&envoy).await.map(|r| r.state) != Some(State::Paused) {
        assert!(Instant::now() < deadline, "the rollout never paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = live(&envoy).await;
    let table = RoutingTable::try_from(&held).expect("the filter takes it");
    let weights = table.routes[0].weights_at(now_ms());
    assert_eq!(
        (weights[0].percent(), weights[1].percent()),
        (80.0, 20.0),
        "held at the gate at the weight the ramp reached"
    );
    assert!(canaryctl("resume").status.success());

    let ramp = loop {
        match live(&envoy).await.routes[0].ramp.clone() {
            Some(ramp) if ramp.from == 20.0 => break ramp,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the next step never ramped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ramp.to, 50.0);
    let aborted = canaryctl("abort");
    assert!(aborted.status.success(), "{aborted:?}");
    let (code, out, err) = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the rollout stopped soon after abort")
        .expect("canaryctl task");
    load.stop().await;

    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("paused at step 1/3"), "{out}");
    assert!(out.contains("step 2/3: canary ramps 20 % → 50 %"), "{out}");
    assert!(
        out.contains("aborted by canaryctl abort at step 2/3"),
        "{out}"
    );
    let config = live(&envoy).await;
    assert_eq!(config.routes[0].ramp, None, "the abort removes the ramp");
    assert_eq!(config.routes[0].variants[1].weight, 0.0);
    assert_eq!(record(&envoy).await.map(|r| r.state), Some(State::Aborted));
    let users: Vec<String> = (0..USERS).map(|i| format!("probe-{i}")).collect();
    assert!(
        on_canary(&envoy, &users).await.iter().all(|c| !c),
        "every user is on the baseline"
    );
}

/// `canaryctl status` of the route, as text.
fn status(envoy: &Envoy) -> String {
    let output = std::process::Command::new(canaryctl_bin())
        .args(["status", "--target", &target(envoy).to_string()])
        .output()
        .expect("run canaryctl status");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
