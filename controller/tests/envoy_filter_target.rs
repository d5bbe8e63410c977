//! `kube://NAMESPACE/NAME` on an EnvoyFilter as `canaryctl render --api envoyfilter` makes it,
//! against the stand-in Kubernetes API server (the real EnvoyFilter CRD schema, resourceVersion
//! conflicts, JSON merge patch), and `kube://NAMESPACE/KIND/NAME` when kinds share a name.

mod support;

use serde_json::{json, Value};
use support::kube_api::KubeApi;
use support::{canaryctl, envoy_filter_config, rendered_envoy_filter, Run, ENVOY_FILTER_CONFIG};

const TARGET: &str = "kube://bookinfo/reviews-canary";

struct Cluster {
    api: KubeApi,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn with(objects: Vec<Value>) -> Self {
        let api = KubeApi::start();
        for object in objects {
            api.create(object);
        }
        Cluster {
            api,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        canaryctl(args, Some(&self.api.kubeconfig(self.dir.path())))
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
}

/// A WasmPlugin of the same name and namespace as the rendered EnvoyFilter.
fn wasm_plugin() -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "reviews-canary", "namespace": "bookinfo"},
        "spec": {
            "url": "oci://registry.example.com/canary-router:0.1.0",
            "pluginConfig": {"routes": [{"name": "reviews", "variants": [
                {"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]}]},
        }
    })
}

#[test]
fn set_weight_rewrites_only_the_plugin_configuration_string() {
    let cluster = Cluster::with(vec![rendered_envoy_filter()]);
    let before = cluster.envoy_filter();

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
        "kube://bookinfo/reviews-canary route reviews: v1 60 %, v2 30 %, v3 10 %\n"
    );

    let after = cluster.envoy_filter();
    let mut config = envoy_filter_config(&before);
    config["routes"][0]["variants"] = json!([
        {"name": "v1", "weight": 60}, {"name": "v2", "weight": 30}, {"name": "v3", "weight": 10}]);
    // Written as canaryctl writes a configuration: the filter's field order, defaults left out.
    let config = canary_filter::config::decode(config.to_string().as_bytes()).unwrap();
    let written = serde_json::to_string(&config).unwrap();
    assert!(
        !written.contains("decisionHeader"),
        "the default header is left out: {written}"
    );
    let mut want = before.clone();
    *want.pointer_mut(ENVOY_FILTER_CONFIG).unwrap() = json!(written);
    want["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"].clone();
    want["metadata"]["generation"] = json!(2);
    assert_eq!(
        after, want,
        "only the configuration string (and the server's bookkeeping) changed"
    );

    let patches = cluster.api.served_with("PATCH");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].content_type, "application/merge-patch+json");
    assert_eq!(
        patches[0].body,
        json!({
            "metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
            "spec": {"configPatches": want["spec"]["configPatches"]}
        }),
        "the patch holds the resourceVersion read and the patch list"
    );
    assert!(patches[0].uri.starts_with(
        "/apis/networking.istio.io/v1alpha3/namespaces/bookinfo/envoyfilters/reviews-canary"
    ));
}

#[test]
fn set_weight_survives_conflicts_and_keeps_the_other_writers_change() {
    let cluster = Cluster::with(vec![rendered_envoy_filter()]);
    // Someone else changes the salt in the configuration string, then someone else touches an
    // annotation: the first two writes are stale.
    cluster.api.concurrent_write(Box::new(|object| {
        let mut config = envoy_filter_config(object);
        config["routes"][0]["stickiness"]["salt"] = json!("reviews-2026-12");
        *object.pointer_mut(ENVOY_FILTER_CONFIG).unwrap() = json!(config.to_string());
    }));
    cluster.api.force_conflicts(1);

    let run = cluster.run(&[
        "set-weight",
        "--target",
        TARGET,
        "--route",
        "reviews",
        "v3=0",
    ]);
    assert!(run.succeeded(), "{run:?}");
    let statuses: Vec<u16> = cluster
        .api
        .served_with("PATCH")
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(statuses, [409, 409, 200]);
    assert_eq!(cluster.weights(), [json!(90), json!(10), json!(0)]);
    assert_eq!(
        envoy_filter_config(&cluster.envoy_filter())["routes"][0]["stickiness"]["salt"],
        "reviews-2026-12",
        "the other writer's change is kept"
    );
}

#[test]
fn promote_abort_and_status_on_an_envoy_filter() {
    let cluster = Cluster::with(vec![rendered_envoy_filter()]);

    let run = cluster.run(&["status", "--target", TARGET, "--output", "json"]);
    assert!(run.succeeded(), "{run:?}");
    let status: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(status["routes"][0]["name"], "reviews", "{status}");
    let weights: Vec<&Value> = status["routes"][0]["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| &v["weight"])
        .collect();
    assert_eq!(weights, [&json!(80), &json!(10), &json!(10)], "{status}");

    let run = cluster.run(&["promote", "--target", TARGET, "--route", "reviews", "v3"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(cluster.weights(), [json!(0), json!(0), json!(100)]);

    let run = cluster.run(&["abort", "--target", TARGET, "--route", "reviews"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(cluster.weights(), [json!(100), json!(0), json!(0)]);

    let run = cluster.run(&["status", "--target", TARGET]);
    assert!(run.succeeded(), "{run:?}");
    assert!(run.stdout.contains("v1"), "{run:?}");
    assert_eq!(cluster.api.served_with("PATCH").len(), 2);
}

#[test]
fn an_invalid_configuration_is_never_written_into_the_envoy_filter() {
    let cluster = Cluster::with(vec![rendered_envoy_filter()]);
    let run = cluster.run(&[
        "set-weight",
        "--target",
        TARGET,
        "--route",
        "reviews",
        "v2=95",
    ]);
    assert_eq!(run.code, Some(1), "the baseline would go below 0: {run:?}");
    assert!(cluster.api.served_with("PATCH").is_empty());
    assert_eq!(cluster.weights(), [json!(80), json!(10), json!(10)]);
}

#[test]
fn a_name_several_kinds_share_needs_the_kind() {
    let cluster = Cluster::with(vec![rendered_envoy_filter(), wasm_plugin()]);

    let run = cluster.run(&[
        "set-weight",
        "--target",
        TARGET,
        "--route",
        "reviews",
        "v2=30",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    for expected in [
        "kube://bookinfo/reviews-canary is ambiguous: there are WasmPlugin and EnvoyFilter objects of that name; name the kind:",
        "kube://bookinfo/wasmplugin/reviews-canary",
        "kube://bookinfo/envoyfilter/reviews-canary",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {run:?}");
    }
    assert!(cluster.api.served_with("PATCH").is_empty());

    let run = cluster.run(&[
        "set-weight",
        "--target",
        "kube://bookinfo/envoyfilter/reviews-canary",
        "--route",
        "reviews",
        "v2=30",
    ]);
    assert!(run.succeeded(), "{run:?}");
    assert!(
        run.stdout
            .starts_with("kube://bookinfo/envoyfilter/reviews-canary route reviews: v1 60 %"),
        "{run:?}"
    );
    assert_eq!(cluster.weights(), [json!(60), json!(30), json!(10)]);
    let plugin = cluster
        .api
        .get("wasmplugins", "bookinfo", "reviews-canary")
        .unwrap();
    assert_eq!(
        plugin["spec"]["pluginConfig"]["routes"][0]["variants"][1]["weight"], 10,
        "the WasmPlugin is untouched"
    );

    let run = cluster.run(&[
        "promote",
        "--target",
        "kube://bookinfo/wasmplugin/reviews-canary",
        "--route",
        "reviews",
        "v2",
    ]);
    assert!(run.succeeded(), "{run:?}");
    let plugin = cluster
        .api
        .get("wasmplugins", "bookinfo", "reviews-canary")
        .unwrap();
    assert_eq!(
        plugin["spec"]["pluginConfig"]["routes"][0]["variants"][1]["weight"],
        100
    );
    assert_eq!(
        cluster.weights(),
        [json!(60), json!(30), json!(10)],
        "the EnvoyFilter is untouched"
    );

    let run = cluster.run(&[
        "status",
        "--target",
        "kube://bookinfo/trafficextension/reviews-canary",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("no TrafficExtension named \"reviews-canary\" in namespace \"bookinfo\""),
        "{run:?}"
    );
}

#[test]
fn an_envoy_filter_without_the_plugin_configuration_is_not_a_target() {
    let mut other = rendered_envoy_filter();
    other["metadata"]["name"] = json!("other");
    // Only the HTTP_FILTER patch: no EXTENSION_CONFIG carrying a plugin configuration.
    let patches = other["spec"]["configPatches"].as_array_mut().unwrap();
    patches.remove(0);
    let cluster = Cluster::with(vec![other, wasm_plugin()]);

    let run = cluster.run(&["status", "--target", "kube://bookinfo/other"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(
            "no WasmPlugin, TrafficExtension or EnvoyFilter named \"other\" in namespace \"bookinfo\""
        ),
        "{run:?}"
    );

    let run = cluster.run(&["status", "--target", "kube://bookinfo/envoyfilter/other"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("EnvoyFilter bookinfo/other has no spec.configPatches[]"),
        "{run:?}"
    );
}
