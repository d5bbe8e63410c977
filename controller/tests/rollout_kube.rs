//! `rollout` on `kube://` targets: the weights and the rollout record (an annotation on the
//! WasmPlugin) written through a stand-in Kubernetes API server (merge patches carrying the
//! resourceVersion, 409 on a stale one), with metrics from a stand-in Envoy admin endpoint
//! whose counters grow at every read.

mod support;

use serde_json::{json, Value};
use support::canaryctl;
use support::kube_api::KubeApi;

const ANNOTATION: &str = "rollout.canary-router.io/reviews";
const TARGET: &str = "kube://shop/reviews-canary";

fn record(state: &str) -> String {
    json!({"id": "run-1", "route": "reviews", "variant": "canary", "step": 2,
           "steps": ["10", "50", "100"], "state": state})
    .to_string()
}

fn wasm_plugin(annotation: &str) -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "reviews-canary", "namespace": "shop",
                     "annotations": {ANNOTATION: annotation, "team": "reviews"}},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "url": "oci://registry.example.com/canary-router:0.1.0",
            "pluginConfig": {"routes": [{"name": "reviews", "variants": [
                {"name": "stable", "weight": 50}, {"name": "canary", "weight": 50}]}]},
        }
    })
}

struct Cluster {
    api: KubeApi,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn run(&self, args: &[&str]) -> support::Run {
        let mut all = args.to_vec();
        all.extend(["--target", TARGET, "--route", "reviews"]);
        canaryctl(&all, Some(&self.api.kubeconfig(self.dir.path())))
    }

    fn plugin(&self) -> Value {
        self.api
            .get("wasmplugins", "shop", "reviews-canary")
            .expect("the WasmPlugin exists")
    }

    fn record(&self) -> Value {
        let text = self.plugin()["metadata"]["annotations"][ANNOTATION]
            .as_str()
            .expect("the annotation")
            .to_owned();
        serde_json::from_str(&text).expect("JSON")
    }
}

fn cluster(annotation: &str) -> Cluster {
    let api = KubeApi::start();
    api.create(wasm_plugin(annotation));
    Cluster {
        api,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

#[test]
fn resume_lifts_a_pause_and_abort_marks_the_rollout_aborted() {
    let c = cluster(&record("paused"));
    c.api.force_conflicts(1);
    let run = c.run(&["resume"]);
    assert!(run.succeeded(), "{run:?}");
    assert!(
        run.stdout.contains("rollout of canary resumed at step 2/3"),
        "{run:?}"
    );
    assert_eq!(c.record()["state"], "running");
    assert_eq!(c.record()["id"], "run-1");
    assert_eq!(
        c.plugin()["metadata"]["annotations"]["team"],
        "reviews",
        "other annotations are kept"
    );

    let run = c.run(&["resume"]);
    assert_eq!(run.code, Some(1), "nothing paused any more: {run:?}");
    assert!(run.stderr.contains("no paused rollout"), "{run:?}");

    let run = c.run(&["abort"]);
    assert!(run.succeeded(), "{run:?}");
    assert!(
        run.stdout
            .contains("the rollout of canary is marked aborted"),
        "{run:?}"
    );
    assert_eq!(c.record()["state"], "aborted");
    let variants = &c.plugin()["spec"]["pluginConfig"]["routes"][0]["variants"];
    assert_eq!(
        (&variants[0]["weight"], &variants[1]["weight"]),
        (&json!(100), &json!(0))
    );
}

#[test]
fn abort_leaves_a_finished_rollout_alone() {
    let c = cluster(&record("promoted"));
    let run = c.run(&["abort"]);
    assert!(run.succeeded(), "{run:?}");
    assert!(!run.stdout.contains("marked aborted"), "{run:?}");
    assert_eq!(c.record()["state"], "promoted");
    assert_eq!(
        c.api.served_with("PATCH").len(),
        1,
        "only the weights were written"
    );
}

/// An Envoy admin endpoint whose `/stats` shows 50 more responses for each variant at every
/// read, `errors_in_50` of the canary's being 5xx.
fn stand_in_envoy_admin(errors_in_50: u64) -> String {
    support::stand_in_envoy_admin("reviews", "stable", "canary", errors_in_50)
}

fn stand_in_envoy_admin_for(baseline: &str, canary: &str, errors_in_50: u64) -> String {
    support::stand_in_envoy_admin("reviews", baseline, canary, errors_in_50)
}

fn rollout(c: &Cluster, metrics: &str) -> support::Run {
    rollout_of(c, "canary", metrics)
}

fn rollout_of(c: &Cluster, variant: &str, metrics: &str) -> support::Run {
    let args = support::rollout_args(TARGET, variant, metrics);
    canaryctl(&args, Some(&c.api.kubeconfig(c.dir.path())))
}

fn weights(c: &Cluster) -> (Value, Value) {
    let variants = &c.plugin()["spec"]["pluginConfig"]["routes"][0]["variants"];
    (variants[0]["weight"].clone(), variants[1]["weight"].clone())
}

#[test]
fn a_healthy_rollout_is_promoted_and_recorded_on_the_wasm_plugin() {
    let c = cluster(&record("rolled-back"));
    let run = rollout(&c, &stand_in_envoy_admin(0));
    assert!(run.succeeded(), "{run:?}");
    assert!(run.stdout.contains("step 2/2 passed"), "{run:?}");
    assert_eq!(weights(&c), (json!(0), json!(100)));
    let record = c.record();
    assert_eq!(record["state"], "promoted");
    assert_ne!(
        record["id"], "run-1",
        "a new rollout replaced the finished one"
    );
    assert_eq!(c.plugin()["metadata"]["annotations"]["team"], "reviews");
}

#[test]
fn a_failing_rollout_is_rolled_back_and_recorded_on_the_wasm_plugin() {
    let c = cluster(&record("promoted"));
    c.api.force_conflicts(2);
    let run = rollout(&c, &stand_in_envoy_admin(10));
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stdout
            .contains("step 1/2 at 10 % failed: error rate 20.00 % (10 5xx of 50 responses)"),
        "{run:?}"
    );
    assert_eq!(weights(&c), (json!(100), json!(0)));
    let record = c.record();
    assert_eq!(record["state"], "rolled-back");
    assert!(record["message"]
        .as_str()
        .unwrap_or_default()
        .contains("error rate"));
}

/// The rendered EnvoyFilter, with its rollout record, as the target.
fn envoy_filter_cluster(annotation: &str) -> Cluster {
    let api = KubeApi::start();
    let mut envoy_filter = support::rendered_envoy_filter();
    envoy_filter["metadata"]["annotations"] = json!({ANNOTATION: annotation, "team": "reviews"});
    envoy_filter["metadata"]["namespace"] = json!("shop");
    api.create(envoy_filter);
    Cluster {
        api,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

fn envoy_filter(c: &Cluster) -> Value {
    c.api
        .get("envoyfilters", "shop", "reviews-canary")
        .expect("the EnvoyFilter exists")
}

fn envoy_filter_weights(c: &Cluster) -> Vec<Value> {
    support::envoy_filter_config(&envoy_filter(c))["routes"][0]["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["weight"].clone())
        .collect()
}

fn envoy_filter_record(c: &Cluster) -> Value {
    let text = envoy_filter(c)["metadata"]["annotations"][ANNOTATION]
        .as_str()
        .expect("the annotation")
        .to_owned();
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn a_healthy_rollout_is_promoted_and_recorded_on_the_envoy_filter() {
    let c = envoy_filter_cluster(&record("rolled-back"));
    c.api.force_conflicts(1);
    let run = rollout_of(&c, "v2", &stand_in_envoy_admin_for("v1", "v2", 0));
    assert!(run.succeeded(), "{run:?}");
    assert!(run.stdout.contains("step 2/2 passed"), "{run:?}");
    assert_eq!(envoy_filter_weights(&c), [json!(0), json!(100), json!(0)]);
    assert_eq!(envoy_filter_record(&c)["state"], "promoted");
    assert_eq!(
        envoy_filter(&c)["metadata"]["annotations"]["team"],
        "reviews"
    );
    assert!(c
        .api
        .served_with("PATCH")
        .iter()
        .all(|s| s.uri.contains("/envoyfilters/")));
}

#[test]
fn a_failing_rollout_is_rolled_back_and_recorded_on_the_envoy_filter() {
    let c = envoy_filter_cluster(&record("promoted"));
    let run = rollout_of(&c, "v2", &stand_in_envoy_admin_for("v1", "v2", 10));
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stdout.contains("step 1/2 at 10 % failed"), "{run:?}");
    assert_eq!(
        envoy_filter_weights(&c),
        [json!(90), json!(0), json!(10)],
        "v2 back to 0, the baseline takes it, v3 keeps its weight"
    );
    assert_eq!(envoy_filter_record(&c)["state"], "rolled-back");
}
