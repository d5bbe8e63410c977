//! A time ramp in a real Envoy: one configuration push moves the canary from 0 to 50 % over ten
//! seconds. Measured over a fixed set of users every two seconds, the canary share rises step by
//! step; no user leaves the canary once on it; every answer is the one the filter's own code
//! gives for the time of the request; and `canaryctl status` shows the ramp while
//! `canaryctl abort` ends it.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canary_e2e::canaryctl::canaryctl_bin;
use canary_e2e::{client, concurrently, get, Envoy, Upstream};
use canary_filter::table::Route;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const USERS: usize = 1_000;
const DURATION_MS: u64 = 10_000;
const SAMPLE_EVERY_MS: u64 = 2_000;
/// How far apart the test's clock and Envoy's may read the same moment: both are this
/// machine's system clock, read a little before and after each request.
const CLOCK_SLACK_MS: u64 = 100;

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

fn rfc3339(ms: u64) -> String {
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    time.format(&Rfc3339).unwrap()
}

/// The route `web`, stable only, with a ramp of the canary from 0 to 50 % from `start_ms`
/// (Unix milliseconds) if given.
fn config(start_ms: Option<u64>) -> String {
    let mut route = json!({
        "name": "web",
        "variants": [ { "name": "stable", "weight": 100 }, { "name": "canary", "weight": 0 } ],
        "stickiness": { "keys": [ { "header": "x-user-id" } ], "salt": "web-2026-12" }
    });
    if let Some(start) = start_ms {
        route["ramp"] = json!({ "variant": "canary", "from": 0, "to": 50,
            "start": rfc3339(start), "duration": format!("{DURATION_MS}ms") });
    }
    json!({ "routes": [route] }).to_string()
}

/// Whether each user is served by the canary, one request each. Each answer is checked against
/// the filter's assignment at the times just before and after the request: the ramp only grows,
/// so a canary answer must be canary by the time the request returned, and a stable answer
/// still stable when it was sent.
async fn on_canary(envoy: &Envoy, route: &Route, users: &[String]) -> Vec<bool> {
    let client = client();
    let url = envoy.url("/");
    concurrently(users.to_vec(), 32, |user| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let sent = now_ms();
            let reply = get(&client, &url, &[("x-user-id", &user)])
                .await
                .unwrap_or_else(|e| panic!("request for {user} failed: {e}"));
            let returned = now_ms();
            assert_eq!(reply.status, 200, "{user}: {reply:?}");
            let canary = match reply.upstream.as_deref() {
                Some("canary") => true,
                Some("stable") => false,
                other => panic!("{user} served by {other:?}"),
            };
            if canary {
                let by = returned + CLOCK_SLACK_MS;
                assert_eq!(
                    route.assign_at(user.as_bytes(), by),
                    1,
                    "{user} served canary, which the filter gives only later than {by}"
                );
            } else {
                let at = sent.saturating_sub(CLOCK_SLACK_MS);
                assert_eq!(
                    route.assign_at(user.as_bytes(), at),
                    0,
                    "{user} served stable, though on canary at {at} already"
                );
            }
            canary
        }
    })
    .await
}

fn share(sample: &[bool]) -> f64 {
    sample.iter().filter(|c| **c).count() as f64 * 100.0 / sample.len() as f64
}

fn canaryctl(args: &[&str]) -> String {
    let output = Command::new(canaryctl_bin())
        .args(args)
        .output()
        .expect("run canaryctl");
    assert!(
        output.status.success(),
        "canaryctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_ramp_raises_the_canary_step_by_step_and_keeps_its_users() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config(None))
        .start()
        .await;
    let users: Vec<String> = (0..USERS).map(|i| format!("ramp-{i}")).collect();

    // One push; the ramp starts a little later, so that the first sample precedes it.
    let start = now_ms() + 4_000;
    let ramped = config(Some(start));
    let update = envoy.push_config(&ramped).await;
    assert_eq!(update.rejected, 0, "{}", envoy.log());
    let table = canary_filter::parse(ramped.as_bytes()).unwrap();
    let route = &table.routes[0];

    // Samples at start − 2 s, start, +2 s, … +12 s: before, during and after the ramp.
    let target = format!("file:{}", envoy.ecds_path().display());
    // Each sample: when it started and finished, and who was on the canary.
    let mut samples: Vec<(u64, u64, Vec<bool>)> = Vec::new();
    for k in 0..8 {
        let at = start - SAMPLE_EVERY_MS + k * SAMPLE_EVERY_MS;
        if let Some(wait) = at.checked_sub(now_ms()) {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let started = now_ms();
        let sample = on_canary(&envoy, route, &users).await;
        samples.push((started, now_ms(), sample));
        if k == 3 {
            let status: Value = serde_json::from_str(&canaryctl(&[
                "status", "--target", &target, "--output", "json",
            ]))
            .unwrap();
            let variants = &status["routes"][0]["variants"];
            let weight = variants[1]["weight"].as_f64().unwrap();
            assert!(
                weight > 0.0 && weight < 50.0,
                "canary at {weight} % mid-ramp: {status}"
            );
            // Weights are whole thousandths of a percent, printed as decimals: their sum is
            // 100 to within the rounding of the two decimal readings.
            let baseline = variants[0]["weight"].as_f64().unwrap();
            assert!(
                (baseline + weight - 100.0).abs() < 0.0005,
                "baseline {baseline} % and canary {weight} % mid-ramp: {status}"
            );
            assert_eq!(variants[1]["final"], json!(50), "{status}");
            assert_eq!(status["routes"][0]["ramp"]["to"], json!(50), "{status}");
        }
    }
    let shares: Vec<f64> = samples.iter().map(|(_, _, s)| share(s)).collect();
    eprintln!("canary shares every 2 s from 2 s before the ramp: {shares:?}");

    let (_, first_finished, _) = samples[0];
    assert!(first_finished < start, "the first sample ran into the ramp");
    assert_eq!(
        shares[0], 0.0,
        "nobody is on the canary before the ramp starts"
    );
    for pair in samples.windows(2) {
        let ((t1, _, earlier), (t2, _, later)) = (&pair[0], &pair[1]);
        for (user, (was, is)) in users.iter().zip(earlier.iter().zip(later)) {
            assert!(!was || *is, "{user} left the canary between {t1} and {t2}");
        }
    }
    // During the ramp, a sample taken a second or more after another that finished before the
    // end has more canary users: the weight rises 5 points a second, about 50 users.
    let end = start + DURATION_MS;
    let mut rises = 0;
    for (k, pair) in samples.windows(2).enumerate() {
        let ((s1, f1, _), (s2, _, _)) = (&pair[0], &pair[1]);
        if *s1 >= start && *f1 < end && s2 - s1 >= 1_000 {
            assert!(
                shares[k + 1] > shares[k],
                "the share did not rise from sample {k} to {}: {shares:?}",
                k + 1
            );
            rises += 1;
        }
    }
    assert!(
        rises >= 4,
        "only {rises} samples fell inside the ramp: {shares:?}"
    );
    let last = shares[7];
    assert!(
        (last - 50.0).abs() < 6.0,
        "{last} % on the canary after a ramp to 50 %: {shares:?}"
    );

    // An abort ends the ramp: the baseline takes all the traffic and keeps it.
    let attempts = envoy
        .stat(&envoy.ecds_stat("update_attempt"))
        .await
        .unwrap_or(0);
    canaryctl(&["abort", "--target", &target, "--route", "web"]);
    let update = envoy.wait_for_ecds_attempts(attempts + 1).await;
    assert_eq!(update.rejected, 0, "{}", envoy.log());
    // The route as the target now has it: no ramp, the baseline at 100 %.
    let status: Value = serde_json::from_str(&canaryctl(&[
        "status", "--target", &target, "--output", "json",
    ]))
    .unwrap();
    assert_eq!(
        status["routes"][0],
        json!({"name": "web", "variants": [
            {"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}]}),
        "{status}"
    );
    let stable_only = canary_filter::parse(config(None).as_bytes()).unwrap();
    let after = on_canary(&envoy, &stable_only.routes[0], &users).await;
    assert_eq!(share(&after), 0.0, "users on the canary after the abort");
}
