//! `kube://NAMESPACE/envoyextensionpolicy/NAME` on the Envoy Gateway EnvoyExtensionPolicy
//! `canaryctl render --api envoyextensionpolicy` makes: the plugin configuration is the
//! `config` object of its `dynamicModule` entry, edited against the stand-in Kubernetes API
//! server (Envoy Gateway's EnvoyExtensionPolicy CRD schema, resourceVersion conflicts, JSON merge
//! patch, RBAC), and the rollout record is an annotation on the policy.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::canaryctl;
use support::kube_api::KubeApi;

const TARGET: &str = "kube://bookinfo/envoyextensionpolicy/reviews-canary";
const ACCOUNT: &str = "canary-system/canaryctl";
const USER: &str = "system:serviceaccount:canary-system:canaryctl";
const TOKEN: &str = "canaryctl-service-account-token";

/// What `canaryctl render --api envoyextensionpolicy --rbac canary-system/canaryctl` prints for
/// `examples/bookinfo-reviews.yaml` attached to the Gateway `web` by targetRefs (route
/// `reviews`: v1 80, v2 10, v3 10), as objects.
fn render(dir: &Path) -> Vec<Value> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo-reviews.yaml");
    let text = std::fs::read_to_string(example).expect("read the example");
    let mut spec: Value = serde_yaml::from_str(&text).expect("YAML");
    spec["attachment"] = json!({"targetRefs": [{"kind": "Gateway", "name": "web"}]});
    let path = dir.join("spec.yaml");
    std::fs::write(&path, serde_yaml::to_string(&spec).expect("YAML")).expect("write the spec");
    let path = path.to_str().expect("UTF-8 path");
    let args = [
        "render",
        path,
        "--api",
        "envoyextensionpolicy",
        "--rbac",
        ACCOUNT,
    ];
    let run = canaryctl(&args, None);
    assert!(run.succeeded(), "{run:?}");
    serde_yaml::Deserializer::from_str(&run.stdout)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML"))
        .collect()
}

fn of_kind(objects: &[Value], kind: &str) -> Value {
    let found = objects.iter().find(|object| object["kind"] == kind);
    found
        .cloned()
        .unwrap_or_else(|| panic!("a rendered {kind}"))
}

struct Cluster {
    api: KubeApi,
    dir: tempfile::TempDir,
    objects: Vec<Value>,
}

impl Cluster {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let objects = render(dir.path());
        let api = KubeApi::start();
        api.create(of_kind(&objects, "EnvoyExtensionPolicy"));
        Cluster { api, dir, objects }
    }

    fn run(&self, args: &[&str]) -> support::Run {
        canaryctl(args, Some(&self.api.kubeconfig(self.dir.path())))
    }

    fn policy(&self) -> Value {
        self.api
            .get("envoyextensionpolicies", "bookinfo", "reviews-canary")
            .expect("the EnvoyExtensionPolicy exists")
    }

    fn weights(&self) -> Vec<Value> {
        self.policy()["spec"]["dynamicModule"][0]["config"]["routes"][0]["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .map(|v| v["weight"].clone())
            .collect()
    }
}

#[test]
fn set_weight_rewrites_only_the_dynamic_modules_config() {
    let cluster = Cluster::new();
    let before = cluster.policy();

    let run = cluster.run(&[
        "set-weight",
        "--target",
        TARGET,
        "--route",
        "reviews",
        "v2=30",
    ]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        run.stdout,
        format!("{TARGET} route reviews: v1 60 %, v2 30 %, v3 10 %\n")
    );

    let after = cluster.policy();
    let config = |policy: &Value| policy["spec"]["dynamicModule"][0]["config"].clone();
    let mut want = before.clone();
    want["spec"]["dynamicModule"][0]["config"]["routes"] = config(&after)["routes"].clone();
    want["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"].clone();
    want["metadata"]["generation"] = json!(2);
    assert_eq!(
        after, want,
        "only the routes (and the server's bookkeeping) changed; the defaults spelled out stay"
    );
    assert_eq!(config(&after)["decisionHeader"], "x-canary-variant");
    let mut want_config = config(&before);
    want_config["routes"][0]["variants"] = json!([
        {"name": "v1", "weight": 60}, {"name": "v2", "weight": 30}, {"name": "v3", "weight": 10}]);
    let decode = |config: Value| {
        canary_filter::config::decode(config.to_string().as_bytes()).expect("valid")
    };
    assert_eq!(
        decode(config(&after)),
        decode(want_config),
        "the same configuration, but the weights"
    );

    let patches = cluster.api.served_with("PATCH");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].content_type, "application/merge-patch+json");
    assert_eq!(
        patches[0].body,
        json!({
            "metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
            "spec": {"dynamicModule": want["spec"]["dynamicModule"]}
        }),
        "the patch holds the resourceVersion read and the dynamicModule list"
    );
    assert!(patches[0].uri.starts_with(
        "/apis/gateway.envoyproxy.io/v1alpha1/namespaces/bookinfo/envoyextensionpolicies/reviews-canary"
    ));
}

#[test]
fn status_promote_and_abort_and_conflicts() {
    let cluster = Cluster::new();
    let run = cluster.run(&["status", "--target", TARGET, "--output", "json"]);
    assert!(run.succeeded(), "{run:?}");
    let status: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(status["target"], TARGET, "{status}");
    let weights: Vec<&Value> = status["routes"][0]["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| &v["weight"])
        .collect();
    assert_eq!(weights, [&json!(80), &json!(10), &json!(10)], "{status}");

    cluster.api.force_conflicts(2);
    let run = cluster.run(&["promote", "--target", TARGET, "--route", "reviews", "v3"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(cluster.weights(), [json!(0), json!(0), json!(100)]);
    let statuses: Vec<u16> = cluster
        .api
        .served_with("PATCH")
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(statuses, [409, 409, 200]);

    let run = cluster.run(&["abort", "--target", TARGET, "--route", "reviews"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(cluster.weights(), [json!(100), json!(0), json!(0)]);
}

#[test]
fn a_policy_is_named_by_its_kind_and_needs_the_canary_filter() {
    let cluster = Cluster::new();
    let run = cluster.run(&["status", "--target", "kube://bookinfo/reviews-canary"]);
    assert_eq!(run.code, Some(1), "Istio's kinds only: {run:?}");
    assert!(
        run.stderr.contains(
            "no WasmPlugin, TrafficExtension or EnvoyFilter named \"reviews-canary\" in namespace \"bookinfo\""
        ),
        "{run:?}"
    );

    let mut other = of_kind(&cluster.objects, "EnvoyExtensionPolicy");
    other["metadata"]["name"] = json!("other");
    other["spec"]["dynamicModule"][0]["filterName"] = json!("auth");
    cluster.api.create(other);
    let run = cluster.run(&[
        "status",
        "--target",
        "kube://bookinfo/envoyextensionpolicy/other",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(
            "EnvoyExtensionPolicy bookinfo/other has no spec.dynamicModule[].config (an entry with filterName \"canary\""
        ),
        "{run:?}"
    );
}

/// As the controller's ServiceAccount, bound to nothing but the rendered Role and RoleBinding.
#[test]
fn the_rendered_role_is_enough() {
    let cluster = Cluster::new();
    let (role, binding) = (
        of_kind(&cluster.objects, "Role"),
        of_kind(&cluster.objects, "RoleBinding"),
    );
    cluster.api.token(TOKEN, USER);
    let yaml: Vec<String> = [&role, &binding]
        .into_iter()
        .map(|object| serde_yaml::to_string(object).expect("YAML"))
        .collect();
    cluster.api.apply_rbac(&yaml.join("---\n"));
    let kubeconfig = cluster
        .api
        .kubeconfig_at(&cluster.dir.path().join("service-account"), TOKEN);

    let run = canaryctl(&["status", "--target", TARGET], Some(&kubeconfig));
    assert!(run.succeeded(), "status: {run:?}");
    let run = canaryctl(
        &[
            "set-weight",
            "--target",
            TARGET,
            "--route",
            "reviews",
            "v2=30",
        ],
        Some(&kubeconfig),
    );
    assert!(run.succeeded(), "set-weight: {run:?}");
    assert_eq!(cluster.weights(), [json!(60), json!(30), json!(10)]);
    let refused = cluster
        .api
        .served()
        .into_iter()
        .filter(|s| s.status == 401 || s.status == 403)
        .count();
    assert_eq!(refused, 0, "nothing was refused");
}

const RECORD: &str = "rollout.canary-router.io/reviews";

impl Cluster {
    /// The rollout record the policy carries, as an annotation.
    fn record(&self) -> Value {
        let policy = self.policy();
        let text = policy["metadata"]["annotations"][RECORD]
            .as_str()
            .expect("the rollout record");
        serde_json::from_str(text).expect("JSON")
    }

    /// A rollout of v2 in steps of 10 and 50 %, `errors_in_50` of its responses failing.
    fn rollout(&self, errors_in_50: u64) -> support::Run {
        let metrics = support::stand_in_envoy_admin("reviews", "v1", "v2", errors_in_50);
        self.run(&support::rollout_args(TARGET, "v2", &metrics))
    }
}

#[test]
fn a_rollout_is_promoted_or_rolled_back_and_recorded_on_the_policy() {
    let healthy = Cluster::new();
    healthy.api.force_conflicts(1);
    let run = healthy.rollout(0);
    assert!(run.succeeded(), "{run:?}");
    assert!(run.stdout.contains("step 2/2 passed"), "{run:?}");
    assert_eq!(healthy.weights(), [json!(0), json!(100), json!(0)]);
    assert_eq!(healthy.record()["state"], "promoted");
    assert!(healthy
        .api
        .served_with("PATCH")
        .iter()
        .all(|s| s.uri.contains("/envoyextensionpolicies/")));

    let failing = Cluster::new();
    let run = failing.rollout(10);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stdout.contains("step 1/2 at 10 % failed"), "{run:?}");
    assert_eq!(
        failing.weights(),
        [json!(90), json!(0), json!(10)],
        "v2 back to 0, the baseline takes it, v3 keeps its weight"
    );
    assert_eq!(failing.record()["state"], "rolled-back");
}

#[test]
fn resume_lifts_a_pause_recorded_on_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = render(dir.path());
    let mut policy = of_kind(&objects, "EnvoyExtensionPolicy");
    let record = json!({"id": "run-1", "route": "reviews", "variant": "v2", "step": 2,
                        "steps": ["10", "50", "100"], "state": "paused"});
    policy["metadata"]["annotations"] = json!({RECORD: record.to_string(), "team": "reviews"});
    let api = KubeApi::start();
    api.create(policy);
    let cluster = Cluster { api, dir, objects };

    let run = cluster.run(&["resume", "--target", TARGET, "--route", "reviews"]);
    assert!(run.succeeded(), "{run:?}");
    assert!(
        run.stdout.contains("rollout of v2 resumed at step 2/3"),
        "{run:?}"
    );
    assert_eq!(cluster.record()["state"], "running");
    assert_eq!(
        cluster.policy()["metadata"]["annotations"]["team"],
        "reviews"
    );

    let run = cluster.run(&["abort", "--target", TARGET, "--route", "reviews"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(cluster.record()["state"], "aborted");
    assert_eq!(
        cluster.weights(),
        [json!(100), json!(0), json!(0)],
        "abort sends the whole route to its first variant"
    );
}
