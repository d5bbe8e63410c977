//! The rollout record on `kube://` targets: an annotation on the WasmPlugin, read and written
//! by `resume` and `abort` through a stand-in Kubernetes API server (merge patches carrying the
//! resourceVersion, 409 on a stale one).

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
