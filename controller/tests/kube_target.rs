//! `kube://NAMESPACE/NAME` against a stand-in Kubernetes API server that keeps the real
//! semantics: resourceVersion conflicts, JSON merge patch, 404, schema validation.

mod support;

use serde_json::{json, Value};
use support::kube_api::{merge_patch, KubeApi};
use support::{canaryctl, Run};

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn plugin_config() -> Value {
    json!({
        "decisionHeader": "x-canary-variant",
        "routes": [
            {"name": "reviews", "match": {"hosts": ["reviews"]},
             "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
             "targeting": [{"name": "qa", "header": "x-canary", "equals": "always", "variant": "canary"}],
             "stickiness": {"keys": [{"header": "x-user-id"}], "salt": "reviews-2026-11"}},
            {"name": "ratings",
             "variants": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}]}
        ]
    })
}

fn wasm_plugin(name: &str, config: Value) -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "reviews"}},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "url": "oci://registry.example.com/canary-router:0.1.0",
            "sha256": SHA,
            "phase": "AUTHN",
            "failStrategy": "FAIL_OPEN",
            "pluginName": "canary",
            "pluginConfig": config,
        }
    })
}

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

    fn wasm_plugin(&self, name: &str) -> Value {
        self.api
            .get("wasmplugins", "shop", name)
            .expect("the WasmPlugin exists")
    }
}

fn weights(config: &Value, route: usize) -> Vec<Value> {
    config["routes"][route]["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["weight"].clone())
        .collect()
}

#[test]
fn set_weight_patches_only_the_weights() {
    let cluster = Cluster::with(vec![wasm_plugin("reviews-canary", plugin_config())]);
    let before = cluster.wasm_plugin("reviews-canary");

    let run = cluster.run(&[
        "set-weight",
        "--target",
        "kube://shop/reviews-canary",
        "--route",
        "reviews",
        "canary=30",
    ]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        run.stdout,
        "kube://shop/reviews-canary route reviews: stable 70 %, canary 30 %\n"
    );

    let after = cluster.wasm_plugin("reviews-canary");
    let mut want = before.clone();
    want["spec"]["pluginConfig"]["routes"][0]["variants"] =
        json!([{"name": "stable", "weight": 70}, {"name": "canary", "weight": 30}]);
    want["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"].clone();
    want["metadata"]["generation"] = json!(2);
    assert_eq!(
        after, want,
        "only the weights (and the server's bookkeeping) changed"
    );
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    let patches = cluster.api.served_with("PATCH");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].content_type, "application/merge-patch+json");
    assert_eq!(
        patches[0].body,
        json!({
            "metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
            "spec": {"pluginConfig": {"routes": want["spec"]["pluginConfig"]["routes"]}}
        }),
        "the patch holds the resourceVersion read and only the routes"
    );
    assert_eq!(patches[0].status, 200);
    assert!(patches[0].uri.starts_with(
        "/apis/extensions.istio.io/v1alpha1/namespaces/shop/wasmplugins/reviews-canary"
    ));
}

#[test]
fn set_weight_survives_conflicts_and_keeps_the_other_writers_change() {
    let cluster = Cluster::with(vec![wasm_plugin("reviews-canary", plugin_config())]);
    // Someone else moves the ratings route, then someone else touches an annotation: the
    // first two writes are stale.
    cluster.api.concurrent_write(Box::new(|object| {
        object["spec"]["pluginConfig"]["routes"][1]["variants"] =
            json!([{"name": "v1", "weight": 20}, {"name": "v2", "weight": 80}]);
    }));
    cluster.api.force_conflicts(1);

    let run = cluster.run(&[
        "set-weight",
        "--target",
        "kube://shop/reviews-canary",
        "--route",
        "reviews",
        "canary=25",
    ]);
    assert!(run.succeeded(), "{run:?}");
    assert!(
        run.stderr.contains("conflict"),
        "the retries are logged: {run:?}"
    );

    let statuses: Vec<u16> = cluster
        .api
        .served_with("PATCH")
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(statuses, [409, 409, 200]);
    let config = &cluster.wasm_plugin("reviews-canary")["spec"]["pluginConfig"];
    assert_eq!(weights(config, 0), [json!(75), json!(25)], "our change");
    assert_eq!(weights(config, 1), [json!(20), json!(80)], "theirs, kept");
}

#[test]
fn set_weight_gives_up_after_bounded_conflicts() {
    let cluster = Cluster::with(vec![wasm_plugin("reviews-canary", plugin_config())]);
    cluster.api.force_conflicts(50);

    let run = cluster.run(&[
        "set-weight",
        "--target",
        "kube://shop/reviews-canary",
        "--route",
        "reviews",
        "canary=25",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("gave up after 5 conflicting writes"),
        "{run:?}"
    );
    assert_eq!(cluster.api.served_with("PATCH").len(), 5);
    let config = &cluster.wasm_plugin("reviews-canary")["spec"]["pluginConfig"];
    assert_eq!(weights(config, 0), [json!(90), json!(10)]);
}

#[test]
fn a_missing_resource_is_reported_clearly() {
    let cluster = Cluster::with(vec![wasm_plugin("reviews-canary", plugin_config())]);
    let run = cluster.run(&[
        "set-weight",
        "--target",
        "kube://shop/nope",
        "--route",
        "reviews",
        "canary=30",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(
            "no WasmPlugin, TrafficExtension or EnvoyFilter named \"nope\" in namespace \"shop\""
        ),
        "{run:?}"
    );
    assert!(cluster.api.served_with("PATCH").is_empty());
    let run = cluster.run(&["status", "--target", "kube://other/reviews-canary"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("in namespace \"other\""), "{run:?}");
}

#[test]
fn an_invalid_configuration_is_never_written() {
    let mut config = plugin_config();
    // Live, but the filter rejects it: a targeting rule pointing at a variant that is gone.
    config["routes"][1]["targeting"] =
        json!([{"name": "beta", "header": "x-beta", "present": true, "variant": "v3"}]);
    let cluster = Cluster::with(vec![wasm_plugin("reviews-canary", config)]);
    let before = cluster.wasm_plugin("reviews-canary");

    for (args, fragment) in [
        (
            vec!["--route", "reviews", "canary=30"],
            "routes[1].targeting[0].variant: unknown variant \"v3\"",
        ),
        (
            vec!["--route", "reviews", "canary=95", "blue=1"],
            "no variant named \"blue\"",
        ),
        (
            vec!["--route", "reviews", "canary=101"],
            "must be between 0 and 100",
        ),
        (
            vec!["--route", "reviews", "stable=50", "canary=30"],
            "must sum to 100",
        ),
        (
            vec!["--route", "nope", "canary=30"],
            "no route named \"nope\" (routes: reviews, ratings)",
        ),
    ] {
        let mut all = vec!["set-weight", "--target", "kube://shop/reviews-canary"];
        all.extend(args);
        let run = cluster.run(&all);
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(
            run.stderr.contains(fragment),
            "expected {fragment:?}: {run:?}"
        );
    }
    assert!(cluster.api.served_with("PATCH").is_empty());
    assert_eq!(cluster.wasm_plugin("reviews-canary"), before);
}

#[test]
fn promote_abort_and_status_on_a_traffic_extension() {
    let extension = json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "TrafficExtension",
        "metadata": {"name": "reviews-canary", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "phase": "AUTHN",
            "wasm": {"url": "oci://registry.example.com/canary-router:0.1.0", "pluginConfig": plugin_config()},
        }
    });
    let cluster = Cluster::with(vec![extension]);
    let target = "kube://shop/reviews-canary";
    let get = || {
        cluster
            .api
            .get("trafficextensions", "shop", "reviews-canary")
            .expect("exists")
    };

    let run = cluster.run(&[
        "promote", "--target", target, "--route", "reviews", "canary",
    ]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        weights(&get()["spec"]["wasm"]["pluginConfig"], 0),
        [json!(0), json!(100)]
    );

    let run = cluster.run(&["status", "--target", target, "--output", "json"]);
    assert!(run.succeeded(), "{run:?}");
    let status: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(
        status,
        json!({"target": target, "routes": [
            {"name": "reviews", "variants": [{"name": "stable", "weight": 0}, {"name": "canary", "weight": 100}]},
            {"name": "ratings", "variants": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}]}]})
    );

    let run = cluster.run(&["abort", "--target", target, "--route", "reviews"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        run.stdout,
        "kube://shop/reviews-canary route reviews: stable 100 %, canary 0 %\n"
    );
    assert_eq!(
        weights(&get()["spec"]["wasm"]["pluginConfig"], 0),
        [json!(100), json!(0)]
    );

    let run = cluster.run(&["abort", "--target", target, "--route", "reviews"]);
    assert!(run.stdout.ends_with("(unchanged)\n"), "{run:?}");
    assert_eq!(
        cluster.api.served_with("PATCH").len(),
        2,
        "nothing written when unchanged"
    );
}

#[test]
fn a_resource_without_plugin_config_is_reported() {
    let mut plugin = wasm_plugin("bare", json!({}));
    plugin["spec"]
        .as_object_mut()
        .unwrap()
        .remove("pluginConfig");
    let cluster = Cluster::with(vec![plugin]);
    let run = cluster.run(&["status", "--target", "kube://shop/bare"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("WasmPlugin shop/bare has no spec.pluginConfig"),
        "{run:?}"
    );
}

#[test]
fn no_kubernetes_configuration_is_an_error() {
    let run = canaryctl(&["status", "--target", "kube://shop/reviews-canary"], None);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("no Kubernetes client configuration"),
        "{run:?}"
    );
}

// The stand-in's own semantics, through kube-rs as canaryctl uses it.
mod stand_in {
    use super::*;
    use kube::api::{
        Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    };
    use kube::{Client, Config};

    fn client(api: &KubeApi) -> Client {
        let config = Config::new(api.url().parse().expect("url"));
        Client::try_from(config).expect("client")
    }

    fn wasm_plugins(client: Client) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("extensions.istio.io", "v1alpha1", "WasmPlugin");
        Api::namespaced_with(
            client,
            "shop",
            &ApiResource::from_gvk_with_plural(&gvk, "wasmplugins"),
        )
    }

    fn code(error: kube::Error) -> u16 {
        match error {
            kube::Error::Api(status) => status.code,
            other => panic!("not an API error: {other}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn keeps_real_api_server_semantics() {
        let server = KubeApi::start();
        server.create(wasm_plugin("p", plugin_config()));
        let api = wasm_plugins(client(&server));
        let params = PatchParams::default();

        assert_eq!(code(api.get("missing").await.unwrap_err()), 404);
        let live = api.get("p").await.expect("get");
        let rv = live
            .metadata
            .resource_version
            .clone()
            .expect("resourceVersion");

        // A merge patch with the current resourceVersion succeeds and bumps it.
        let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"phase": "STATS"}});
        let written = api
            .patch("p", &params, &Patch::Merge(&patch))
            .await
            .expect("patch");
        assert_ne!(
            written.metadata.resource_version.as_deref(),
            Some(rv.as_str())
        );
        assert_eq!(
            written.data["spec"]["url"], live.data["spec"]["url"],
            "merge keeps the rest"
        );
        assert_eq!(written.metadata.generation, Some(2));

        // The same resourceVersion again is stale: 409, for patch and for replace.
        assert_eq!(
            code(
                api.patch("p", &params, &Patch::Merge(&patch))
                    .await
                    .unwrap_err()
            ),
            409
        );
        let mut stale = written.clone();
        stale.metadata.resource_version = Some(rv);
        assert_eq!(
            code(
                api.replace("p", &PostParams::default(), &stale)
                    .await
                    .unwrap_err()
            ),
            409
        );
        // A replace without resourceVersion is refused as for any custom resource.
        stale.metadata.resource_version = None;
        assert_eq!(
            code(
                api.replace("p", &PostParams::default(), &stale)
                    .await
                    .unwrap_err()
            ),
            422
        );
        let replaced = api
            .replace("p", &PostParams::default(), &written)
            .await
            .expect("replace");
        assert_ne!(
            replaced.metadata.resource_version,
            written.metadata.resource_version
        );

        // Schema: pluginConfig must be an object, enums hold, url is required.
        for bad in [
            json!({"spec": {"pluginConfig": "{\"routes\": []}"}}),
            json!({"spec": {"phase": "LATE"}}),
            json!({"spec": {"url": null}}),
            json!({"spec": {"sha256": "not-hex"}}),
        ] {
            let error = api
                .patch("p", &params, &Patch::Merge(&bad))
                .await
                .unwrap_err();
            assert_eq!(code(error), 422, "{bad}");
        }
        // Unknown fields are pruned, as the API server does by default.
        let unknown = json!({"spec": {"notAField": 1}});
        let pruned = api
            .patch("p", &params, &Patch::Merge(&unknown))
            .await
            .expect("patch");
        assert!(pruned.data["spec"].get("notAField").is_none());

        // Strategic merge patch does not exist for custom resources.
        let error = api
            .patch("p", &params, &Patch::Strategic(&unknown))
            .await
            .unwrap_err();
        assert_eq!(code(error), 415);
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }
}
