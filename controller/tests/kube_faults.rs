//! A Kubernetes API that is briefly unavailable, against the stand-in API server with faults
//! injected: `set-weight` waits out 429 (honouring `Retry-After`), 500, 503, 504 and dropped
//! connections; gives up cleanly, nothing written, when the API stays unavailable past the
//! retry budget; does not retry an answer that cannot change. A `rollout` rides out a burst
//! during a step, and rolls back as soon as the target is writable again after an outage longer
//! than its budget, never staying at the partial weight.

mod support;

use std::time::{Duration, Instant};

use canaryctl::targets::{Clients, Target};
use serde_json::{json, Value};
use support::kube_api::{Fault, KubeApi};
use support::{canaryctl_with_env, envoy_filter_config, rendered_envoy_filter, Run};

const TARGET: &str = "kube://bookinfo/envoyfilter/reviews-canary";
const RETRYING: &str = "the Kubernetes API is unavailable; retrying";

struct Cluster {
    api: KubeApi,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// The EnvoyFilter `canaryctl render --api envoyfilter` makes of the bookinfo example:
    /// route `reviews`, v1 80 %, v2 10 %, v3 10 %.
    fn new() -> Self {
        let api = KubeApi::start();
        api.create(rendered_envoy_filter());
        Cluster {
            api,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn run(&self, args: &[&str], budget: &str) -> Run {
        canaryctl_with_env(
            args,
            Some(&self.api.kubeconfig(self.dir.path())),
            &[("CANARYCTL_KUBE_RETRY_BUDGET", budget)],
        )
    }

    fn set_weight(&self, weight: &str, budget: &str) -> Run {
        self.run(
            &[
                "set-weight",
                "--target",
                TARGET,
                "--route",
                "reviews",
                weight,
            ],
            budget,
        )
    }

    fn envoy_filter(&self) -> Value {
        self.api
            .get("envoyfilters", "bookinfo", "reviews-canary")
            .expect("the EnvoyFilter exists")
    }

    fn weights(&self) -> Vec<Value> {
        envoy_filter_config(&self.envoy_filter())["routes"][0]["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .map(|v| v["weight"].clone())
            .collect()
    }

    fn statuses(&self) -> Vec<u16> {
        self.api.served().iter().map(|s| s.status).collect()
    }
}

#[test]
fn set_weight_waits_out_429_and_5xx_bursts() {
    let c = Cluster::new();
    c.api.fail_next(&[
        Fault::too_many_requests(1),
        Fault::status(503),
        Fault::status(500),
        Fault::status(504),
        Fault::status(503),
    ]);
    let started = Instant::now();
    let run = c.set_weight("v2=30", "30s");
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(c.weights(), [json!(60), json!(30), json!(10)]);
    assert_eq!(c.api.faults_left(), 0);
    assert_eq!(c.statuses()[..6], [429, 503, 500, 504, 503, 200], "{run:?}");
    assert_eq!(run.stderr.matches(RETRYING).count(), 5, "{run:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the 429's Retry-After of 1 s was waited out"
    );
}

#[test]
fn a_burst_during_the_write_is_retried_and_the_change_written_once() {
    let c = Cluster::new();
    let before = c.envoy_filter();
    c.api
        .fail_next_writes(&[Fault::status(503), Fault::too_many_requests(1)]);
    let run = c.set_weight("v2=30", "30s");
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(c.weights(), [json!(60), json!(30), json!(10)]);
    let patches: Vec<u16> = c
        .api
        .served_with("PATCH")
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(
        patches,
        [503, 429, 200],
        "the same write, retried until it landed"
    );
    let after = c.envoy_filter();
    let mut kept = after.clone();
    kept["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["configuration"]
        ["value"] = before["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["configuration"]["value"]
        .clone();
    assert_eq!(
        kept["spec"], before["spec"],
        "only the plugin configuration changed"
    );
}

#[test]
fn dropped_connections_are_retried() {
    let c = Cluster::new();
    c.api.drop_connections(2);
    let run = c.set_weight("v2=30", "30s");
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(c.weights(), [json!(60), json!(30), json!(10)]);
    assert_eq!(
        c.statuses().iter().filter(|&&status| status == 0).count(),
        2,
        "two connections were dropped unanswered"
    );
    assert!(run.stderr.contains(RETRYING), "{run:?}");
}

#[test]
fn an_outage_longer_than_the_budget_fails_cleanly_and_writes_nothing() {
    let c = Cluster::new();
    c.api.outage(Duration::from_secs(60));
    let started = Instant::now();
    let run = c.set_weight("v2=30", "2s");
    let took = started.elapsed();
    c.api.end_outage();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("the Kubernetes API refused to get EnvoyFilter bookinfo/reviews-canary"),
        "{run:?}"
    );
    assert!(run.stderr.contains("ServiceUnavailable, 503"), "{run:?}");
    assert!(
        took < Duration::from_secs(15),
        "gave up near its budget, took {took:?}"
    );
    assert!(
        c.statuses().len() >= 3,
        "retried before giving up: {:?}",
        c.statuses()
    );
    assert_eq!(c.weights(), [json!(80), json!(10), json!(10)]);
}

#[test]
fn an_answer_that_cannot_change_is_not_retried() {
    let c = Cluster::new();
    c.api.fail_next(&[Fault::status(400)]);
    let run = c.set_weight("v2=30", "30s");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(c.statuses(), [400], "one request, not retried");
    assert!(!run.stderr.contains(RETRYING), "{run:?}");
    assert_eq!(c.weights(), [json!(80), json!(10), json!(10)]);
}

#[test]
fn an_invalid_retry_budget_is_refused() {
    let c = Cluster::new();
    let run = c.set_weight("v2=30", "soon");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("CANARYCTL_KUBE_RETRY_BUDGET"),
        "names the variable: {run:?}"
    );
    assert!(c.api.served().is_empty());
}

/// `canaryctl rollout` of v2 in steps of 20 % and 50 %, 2 s apart, healthy metrics, in a
/// thread; `during` runs once the first step's weight is written.
fn rollout_with(c: &Cluster, budget: &str, during: impl FnOnce(&KubeApi)) -> Run {
    let metrics = support::stand_in_envoy_admin("reviews", "v1", "v2", 0);
    std::thread::scope(|scope| {
        let rollout = scope.spawn(|| {
            c.run(
                &[
                    "rollout",
                    "--target",
                    TARGET,
                    "--route",
                    "reviews",
                    "--variant",
                    "v2",
                    "--steps",
                    "20,50",
                    "--interval",
                    "2s",
                    "--metrics",
                    &metrics,
                    "--min-requests",
                    "20",
                    "--progress",
                    "lines",
                ],
                budget,
            )
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.weights()[1] != json!(20) {
            assert!(
                Instant::now() < deadline,
                "the first step was never written"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        during(&c.api);
        rollout.join().expect("the rollout")
    })
}

fn record(c: &Cluster) -> Value {
    let text = c.envoy_filter()["metadata"]["annotations"]["rollout.canary-router.io/reviews"]
        .as_str()
        .expect("the rollout record")
        .to_owned();
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn a_rollout_rides_out_a_burst_during_a_step() {
    let c = Cluster::new();
    let run = rollout_with(&c, "30s", |api| {
        api.fail_next(&[
            Fault::status(503),
            Fault::too_many_requests(1),
            Fault::status(503),
            Fault::status(504),
        ]);
    });
    assert!(run.succeeded(), "{run:?}");
    assert!(run.stdout.contains("promoted: v2 has 100 %"), "{run:?}");
    assert_eq!(c.weights(), [json!(0), json!(100), json!(0)]);
    assert_eq!(record(&c)["state"], "promoted");
    assert!(run.stderr.contains(RETRYING), "{run:?}");
}

#[test]
fn a_rollout_rolls_back_once_the_target_is_writable_after_a_long_outage() {
    let c = Cluster::new();
    let outage = Duration::from_secs(8);
    let mut outage_ended = None;
    let run = rollout_with(&c, "1s", |api| {
        api.outage(outage);
        outage_ended = Some(Instant::now() + outage);
    });
    let outage_ended = outage_ended.expect("the outage began");
    assert_eq!(run.code, Some(2), "rolled back: {run:?}");
    assert!(Instant::now() >= outage_ended);
    assert!(
        run.stdout.contains("cannot roll back yet"),
        "each failed rollback attempt is shown: {run:?}"
    );
    assert!(
        run.stdout.contains("rolled back: v2 is back to 0 %"),
        "{run:?}"
    );
    assert_eq!(
        c.weights(),
        [json!(90), json!(0), json!(10)],
        "v2 is not left at 20 %"
    );
    let record = record(&c);
    assert_eq!(record["state"], "rolled-back");
    let why = record["message"].as_str().unwrap_or_default();
    assert!(why.contains("the target could not be written"), "{why}");
    assert!(why.contains("503"), "{why}");
}

/// With one client shared by concurrent calls, as `serve` shares it, a `Retry-After` is waited
/// out by the call whose answer carried it, and by no other: of two reads answered 429 with
/// `Retry-After: 3` and 503 without one, only the first waits 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_out_by_the_call_it_answered() {
    let c = Cluster::new();
    let mut other = rendered_envoy_filter();
    other["metadata"]["name"] = json!("ratings-canary");
    c.api.create(other);
    let kubeconfig = kube::config::Kubeconfig::read_from(c.api.kubeconfig(c.dir.path()))
        .expect("the stand-in's kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a client configuration");
    let clients = Clients::with_kube_config(config);

    c.api
        .fail_next(&[Fault::too_many_requests(3), Fault::status(503)]);
    let read = |name: &'static str| {
        let clients = clients.clone();
        tokio::spawn(async move {
            let target: Target = format!("kube://bookinfo/envoyfilter/{name}")
                .parse()
                .expect("a target");
            let started = Instant::now();
            let config = target.read(&clients).await.expect("read after the fault");
            (config, started.elapsed())
        })
    };
    let (reviews, ratings) = (read("reviews-canary"), read("ratings-canary"));
    let (reviews, ratings) = (reviews.await.expect("task"), ratings.await.expect("task"));
    assert_eq!(c.api.faults_left(), 0, "both faults were given");
    for (config, _) in [&reviews, &ratings] {
        assert_eq!(config.routes[0].name, "reviews");
    }

    let first = c.api.served();
    let got_429 = first
        .iter()
        .find(|s| s.status == 429)
        .expect("a 429 was served");
    let (waited, not_waited) = if got_429.uri.contains("reviews-canary") {
        (reviews.1, ratings.1)
    } else {
        (ratings.1, reviews.1)
    };
    assert!(
        waited >= Duration::from_secs(3),
        "the call answered 429 waits its Retry-After: {waited:?}"
    );
    assert!(
        not_waited < Duration::from_millis(2500),
        "the call answered 503 backs off, not waiting the other's Retry-After: {not_waited:?}"
    );
}
