//! `rollout --ramp` on a `kube://` target: each step is one merge patch of the WasmPlugin
//! carrying the route's ramp, through a stand-in Kubernetes API server, with metrics from a
//! stand-in Envoy admin endpoint; the promotion and the rollback leave no ramp behind.

mod support;

use serde_json::{json, Value};
use support::canaryctl;
use support::kube_api::KubeApi;

const ANNOTATION: &str = "rollout.canary-router.io/reviews";
const TARGET: &str = "kube://shop/reviews-canary";

fn wasm_plugin() -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "reviews-canary", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "url": "oci://registry.example.com/canary-router:0.1.0",
            "pluginConfig": {"routes": [{"name": "reviews", "variants": [
                {"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}]}]},
        }
    })
}

struct Cluster {
    api: KubeApi,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let api = KubeApi::start();
        api.create(wasm_plugin());
        Cluster {
            api,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A ramped rollout of `canary` in steps 10 and 50 % of 1 s.
    fn rollout(&self, errors_in_50: u64) -> support::Run {
        let metrics = support::stand_in_envoy_admin("reviews", "stable", "canary", errors_in_50);
        let args = [
            "rollout",
            "--target",
            TARGET,
            "--route",
            "reviews",
            "--variant",
            "canary",
            "--steps",
            "10,50",
            "--interval",
            "1s",
            "--ramp",
            "--metrics",
            &metrics,
            "--min-requests",
            "20",
            "--progress",
            "lines",
        ];
        canaryctl(&args, Some(&self.api.kubeconfig(self.dir.path())))
    }

    fn route(&self) -> Value {
        let plugin = self
            .api
            .get("wasmplugins", "shop", "reviews-canary")
            .expect("the WasmPlugin exists");
        plugin["spec"]["pluginConfig"]["routes"][0].clone()
    }

    fn record(&self) -> Value {
        let plugin = self
            .api
            .get("wasmplugins", "shop", "reviews-canary")
            .expect("the WasmPlugin exists");
        let text = plugin["metadata"]["annotations"][ANNOTATION]
            .as_str()
            .expect("the annotation");
        serde_json::from_str(text).expect("JSON")
    }

    /// The ramps the patches of the WasmPlugin's spec carried, in order: (from, to, duration).
    fn ramps_written(&self) -> Vec<(Value, Value, Value)> {
        self.api
            .served_with("PATCH")
            .iter()
            .filter(|served| served.status == 200)
            .filter_map(|served| {
                let ramp = &served.body["spec"]["pluginConfig"]["routes"][0]["ramp"];
                ramp.is_object().then(|| {
                    (
                        ramp["from"].clone(),
                        ramp["to"].clone(),
                        ramp["duration"].clone(),
                    )
                })
            })
            .collect()
    }
}

fn weights(route: &Value) -> (Value, Value) {
    let variants = &route["variants"];
    (variants[0]["weight"].clone(), variants[1]["weight"].clone())
}

#[test]
fn a_ramped_rollout_writes_one_ramp_per_step_and_is_promoted() {
    let c = Cluster::start();
    let run = c.rollout(0);
    assert!(run.succeeded(), "{run:?}");
    assert!(
        run.stdout
            .contains("step 1/2: canary ramps 0 % → 10 % over 1s from "),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("step 2/2: canary ramps 10 % → 50 % over 1s from "),
        "{run:?}"
    );
    assert_eq!(
        c.ramps_written(),
        [
            (json!(0), json!(10), json!("1s")),
            (json!(10), json!(50), json!("1s"))
        ]
    );
    let route = c.route();
    assert_eq!(weights(&route), (json!(0), json!(100)));
    assert_eq!(route.get("ramp"), None, "the promotion removes the ramp");
    let record = c.record();
    assert_eq!(record["state"], "promoted");
    assert_eq!(record.get("ramp"), None);
}

#[test]
fn a_ramped_rollout_of_a_failing_canary_is_rolled_back_without_its_ramp() {
    let c = Cluster::start();
    let run = c.rollout(10);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stdout
            .contains("step 1/2 at 10 % failed: error rate 20.00 %"),
        "{run:?}"
    );
    assert_eq!(c.ramps_written(), [(json!(0), json!(10), json!("1s"))]);
    let route = c.route();
    assert_eq!(weights(&route), (json!(100), json!(0)));
    assert_eq!(route.get("ramp"), None, "the rollback removes the ramp");
    let record = c.record();
    assert_eq!(record["state"], "rolled-back");
    assert_eq!(record.get("ramp"), None);
}
