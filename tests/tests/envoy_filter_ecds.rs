//! The EnvoyFilter `canaryctl` renders and edits routes in a real Envoy.
//!
//! The EnvoyFilter `canaryctl render --api envoyfilter` makes is stored in the controller's
//! stand-in Kubernetes API server (the real EnvoyFilter CRD schema). Its `EXTENSION_CONFIG`
//! patch value is a `TypedExtensionConfig`, which istiod sends the proxies over ECDS as it is:
//! here it is written to the ECDS file of an Envoy whose filter chain holds the filter the
//! `HTTP_FILTER` patch names, in front of routes that match the sealed decision values as the
//! rendered VirtualService's do. The split Envoy serves follows the rendered weights, then the
//! weights `canaryctl set-weight kube://NAMESPACE/envoyfilter/NAME` writes into the object, and
//! the weights before it again when the earlier object is served.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use canary_e2e::canaryctl::canaryctl_bin;
use canary_e2e::{client, concurrently, get, wasm_path, Envoy, Upstream};
use serde::Deserialize;
use serde_json::{json, Value};

// The stand-in Kubernetes API server of the controller's tests (only part of which this test
// uses), with the schema validation and the RBAC checks it uses as `super::schema` and
// `super::rbac`.
#[allow(dead_code)]
#[path = "../../controller/tests/support/kube_api.rs"]
mod kube_api;
#[allow(dead_code)]
#[path = "../../controller/tests/support/rbac.rs"]
mod rbac;
#[path = "../../controller/tests/support/schema.rs"]
mod schema;

use kube_api::KubeApi;

const NAMESPACE: &str = "shop";
const NAME: &str = "web-canary";
const SEAL: &str = "3f1c9a7e5b2d4f6081a3c5e7092b4d6f8a1c3e5f7092b4d6e8f0a2c4e6081a3c";
/// Distinct users per measurement (see [`users`]), one request each.
const USERS: usize = 400;

/// A spec whose route `web` splits between the upstreams `stable` and `canary`, 90/10, sticky
/// on the `x-user-id` header.
fn spec() -> String {
    format!(
        r#"name: {NAME}
namespace: {NAMESPACE}
module:
  url: oci://registry.example.com/canary-router/canary-filter:0.1.0
  sha256: "0000000000000000000000000000000000000000000000000000000000000000"
attachment:
  selector:
    matchLabels:
      app: frontend
seal:
  current: "{SEAL}"
services:
  web:
    host: web.shop.svc.cluster.local
    port: 8080
    hosts: [web]
    subsets:
      stable: {{ track: stable }}
      canary: {{ track: canary }}
pluginConfig:
  routes:
    - name: web
      match:
        hosts: [web]
      variants:
        - {{ name: stable, weight: 90 }}
        - {{ name: canary, weight: 10 }}
      stickiness:
        keys:
          - header: x-user-id
        salt: web-2026-11
"#
    )
}

/// Runs the `canaryctl` binary with the Kubernetes client configured by `kubeconfig` only;
/// its standard output.
fn canaryctl(args: &[&str], kubeconfig: &Path) -> String {
    let output = Command::new(canaryctl_bin())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().expect("a directory"))
        .env_remove("CANARYCTL_TARGET")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("run canaryctl");
    assert!(
        output.status.success(),
        "canaryctl {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The EnvoyFilter among the resources `canaryctl render --api envoyfilter` makes of `spec`.
fn rendered_envoy_filter(spec: &Path, kubeconfig: &Path) -> Value {
    let spec = spec.to_str().expect("UTF-8 path");
    let text = canaryctl(&["render", spec, "--api", "envoyfilter"], kubeconfig);
    let found = serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .find(|object| object["kind"] == "EnvoyFilter");
    found.expect("an EnvoyFilter among the rendered resources")
}

/// The value of the EnvoyFilter's patch that applies to `apply_to`.
fn patch_value<'a>(envoy_filter: &'a Value, apply_to: &str) -> &'a Value {
    let patches = envoy_filter["spec"]["configPatches"]
        .as_array()
        .expect("configPatches");
    let patch = patches.iter().find(|p| p["applyTo"] == apply_to);
    &patch.unwrap_or_else(|| panic!("no {apply_to} patch"))["patch"]["value"]
}

/// Where the plugin configuration string sits in the EnvoyFilter.
fn config_pointer(envoy_filter: &Value) -> String {
    let patches = envoy_filter["spec"]["configPatches"]
        .as_array()
        .expect("configPatches");
    let i = patches
        .iter()
        .position(|p| p["applyTo"] == "EXTENSION_CONFIG")
        .expect("an EXTENSION_CONFIG patch");
    format!("/spec/configPatches/{i}/patch/value/typed_config/config/configuration/value")
}

/// The plugin configuration the EnvoyFilter carries, parsed.
fn plugin_config(envoy_filter: &Value) -> Value {
    let text = envoy_filter
        .pointer(&config_pointer(envoy_filter))
        .and_then(Value::as_str)
        .expect("the plugin configuration string");
    serde_json::from_str(text).expect("the plugin configuration is JSON")
}

/// The ECDS resource istiod makes of the EnvoyFilter: its `EXTENSION_CONFIG` patch value, the
/// `TypedExtensionConfig`, as it is but for where the module comes from. The rendered
/// `vm_config.code` names the published module (an OCI image), which Istio's agent fetches and
/// replaces with a `local` file of its module cache before Envoy sees the configuration; the
/// file here is the module this build made.
fn extension_config(envoy_filter: &Value) -> Value {
    let mut resource = patch_value(envoy_filter, "EXTENSION_CONFIG").clone();
    let code = resource
        .pointer_mut("/typed_config/config/vm_config/code")
        .expect("vm_config.code");
    assert_eq!(
        code["remote"]["http_uri"]["uri"],
        "oci://registry.example.com/canary-router/canary-filter:0.1.0",
        "the rendered module is the spec's"
    );
    *code = json!({ "local": { "filename": wasm_path() } });
    resource
}

fn users() -> Vec<String> {
    (0..USERS).map(|i| format!("user-{i}")).collect()
}

/// The variant that serves each of [`users`], one request each to host `web`.
async fn served(envoy: &Envoy) -> Vec<String> {
    let (client, url) = (client(), envoy.url("/"));
    concurrently(users(), 32, |user| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let reply = get(&client, &url, &[("host", "web"), ("x-user-id", &user)])
                .await
                .unwrap_or_else(|e| panic!("request for {user} failed: {e}"));
            assert_eq!(reply.status, 200, "{user}: {reply:?}");
            reply.upstream.expect("x-upstream")
        }
    })
    .await
}

/// The variant the EnvoyFilter's plugin configuration gives each of [`users`], by the filter's
/// own assignment.
fn assigned(envoy_filter: &Value) -> Vec<String> {
    let table =
        canary_filter::parse(plugin_config(envoy_filter).to_string().as_bytes()).expect("valid");
    let route = &table.routes[0];
    users()
        .iter()
        .map(|user| route.variants[route.assign(user.as_bytes())].name.clone())
        .collect()
}

/// Waits until Envoy serves each of [`users`] the variant in `want` (its workers take a new
/// configuration shortly after the update is counted), and returns that.
async fn served_as(envoy: &Envoy, want: &[String], label: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let served = served(envoy).await;
        if served == want {
            return served;
        }
        let wrong = served.iter().zip(want).filter(|(s, w)| s != w).count();
        assert!(
            Instant::now() < deadline,
            "{label}: {wrong} of {USERS} users still served another variant than assigned \
             after 5 s; Envoy log:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many requests each variant served.
fn counts(served: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for variant in served {
        *counts.entry(variant.as_str()).or_default() += 1;
    }
    counts
}

/// Asserts that each variant served its weight's share of `served`, within five standard
/// deviations of the binomial distribution of [`USERS`] users (a correct split strays further
/// with a chance below one in a million; the users are fixed, so the outcome is too).
fn assert_split(served: &[String], weights: &[(&str, f64)], label: &str) {
    let counts = counts(served);
    let n = served.len() as f64;
    for (variant, percent) in weights {
        let p = percent / 100.0;
        let expected = n * p;
        let tolerance = 5.0 * (n * p * (1.0 - p)).sqrt();
        let seen = counts.get(variant).copied().unwrap_or(0) as f64;
        assert!(
            (seen - expected).abs() <= tolerance,
            "{label}: {variant} served {seen} of {n}, want {expected} ± {tolerance:.1}; {counts:?}"
        );
    }
}

/// The weights of route `web` in the EnvoyFilter's plugin configuration.
fn weights(envoy_filter: &Value) -> Vec<(String, f64)> {
    plugin_config(envoy_filter)["routes"][0]["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| {
            let name = v["name"].as_str().expect("name").to_owned();
            (name, v["weight"].as_f64().expect("weight"))
        })
        .collect()
}

/// Asserts that Envoy accepted every ECDS update so far, `accepted` of them.
async fn assert_accepted(envoy: &Envoy, accepted: u64) {
    let stat = |name| envoy.ecds_stat(name);
    assert_eq!(
        envoy.stat(&stat("update_success")).await,
        Some(accepted),
        "Envoy log:\n{}",
        envoy.log()
    );
    assert_eq!(envoy.stat(&stat("update_rejected")).await.unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_weight_on_the_envoy_filter_moves_the_split_envoy_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = KubeApi::start_with_crds(
        &canary_e2e::workspace_root().join("controller/tests/fixtures/istio-crds"),
    );
    let kubeconfig = api.kubeconfig(dir.path());
    let spec_path = dir.path().join("spec.yaml");
    std::fs::write(&spec_path, spec()).expect("write spec");
    api.create(rendered_envoy_filter(&spec_path, &kubeconfig));
    let before = api
        .get("envoyfilters", NAMESPACE, NAME)
        .expect("the EnvoyFilter exists");
    assert_eq!(
        weights(&before),
        [("stable".to_owned(), 90.0), ("canary".to_owned(), 10.0)]
    );

    // The filter in the chain is the one the HTTP_FILTER patch inserts; it subscribes to the
    // extension configuration of its name, which must be the EXTENSION_CONFIG patch's.
    let filter_name = patch_value(&before, "HTTP_FILTER")["name"]
        .as_str()
        .expect("the filter's name");
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .sealed_routes(&[SEAL])
        .filter_name(filter_name)
        .ecds_resource(&extension_config(&before))
        .start()
        .await;
    assert_accepted(&envoy, 1).await;
    let at_rendered_weights = served_as(&envoy, &assigned(&before), "rendered").await;
    assert_split(
        &at_rendered_weights,
        &[("stable", 90.0), ("canary", 10.0)],
        "rendered",
    );

    let target = format!("kube://{NAMESPACE}/envoyfilter/{NAME}");
    let out = canaryctl(
        &[
            "set-weight",
            "--target",
            &target,
            "--route",
            "web",
            "canary=50",
        ],
        &kubeconfig,
    );
    assert_eq!(
        out,
        format!("{target} route web: stable 50 %, canary 50 %\n")
    );
    let after = api
        .get("envoyfilters", NAMESPACE, NAME)
        .expect("the EnvoyFilter exists");

    // Between the two reads only the plugin configuration string changed (and the server's
    // bookkeeping), and in it only the weights: what Envoy gets next is set-weight's doing.
    let pointer = config_pointer(&before);
    let mut want = before.clone();
    *want.pointer_mut(&pointer).expect("the string") =
        after.pointer(&pointer).expect("the string").clone();
    want["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"].clone();
    want["metadata"]["generation"] = json!(2);
    assert_eq!(after, want, "only the plugin configuration string changed");
    let mut config = plugin_config(&before);
    config["routes"][0]["variants"] =
        json!([{"name": "stable", "weight": 50}, {"name": "canary", "weight": 50}]);
    assert_eq!(plugin_config(&after), config, "only the weights changed");

    // Until the new object is served over ECDS, Envoy keeps the old split, user for user.
    assert_ne!(assigned(&after), at_rendered_weights, "users move at 50 %");
    assert_eq!(served(&envoy).await, at_rendered_weights);

    let update = envoy.push_ecds_resource(&extension_config(&after)).await;
    assert_eq!(update.rejected, 0, "Envoy log:\n{}", envoy.log());
    assert_accepted(&envoy, 2).await;
    let at_new_weights = served_as(&envoy, &assigned(&after), "after set-weight").await;
    assert_split(
        &at_new_weights,
        &[("stable", 50.0), ("canary", 50.0)],
        "after set-weight",
    );
    // Sticky: a user on the canary at 10 % is still on it at 50 %.
    for (old, new) in at_rendered_weights.iter().zip(&at_new_weights) {
        assert!(
            old != "canary" || new == "canary",
            "a canary user moved back"
        );
    }

    // The object read before set-weight brings back the old split, user for user.
    envoy.push_ecds_resource(&extension_config(&before)).await;
    assert_accepted(&envoy, 3).await;
    served_as(&envoy, &at_rendered_weights, "the earlier object again").await;
}
