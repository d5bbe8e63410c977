//! The dynamic-module EnvoyFilter `canaryctl` renders, served by `canaryctl serve` over ECDS to
//! a real Envoy running `libcanary_router.so`.
//!
//! The EnvoyFilter `canaryctl render --api envoyfilter --module-kind dynamic` makes is stored
//! in the controller's stand-in Kubernetes API server (the real EnvoyFilter CRD schema).
//! `canaryctl serve --target kube://NAMESPACE/envoyfilter/NAME` reads it and pushes its
//! `EXTENSION_CONFIG` patch value, the `TypedExtensionConfig` of the dynamic module's filter, as
//! it stands, over its ECDS gRPC server to an Envoy whose filter chain holds the filter the
//! `HTTP_FILTER` patch names, in front of routes that match the sealed decision values as the
//! rendered VirtualService's do. The split Envoy serves follows the rendered weights, then the
//! weights `canaryctl set-weight` writes into the object, which `serve` picks up and pushes.
//! The same from a `file:` target holding the dynamic module's ECDS document.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use canary_e2e::canaryctl::canaryctl_bin;
use canary_e2e::{client, concurrently, get, Build, Envoy, Upstream};
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
/// Where the rendered dynamic-module EnvoyFilter keeps the plugin configuration string.
const CONFIG: &str = "/spec/configPatches/0/patch/value/typed_config/filter_config/value";
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

/// `canaryctl` with the Kubernetes client configured by `kubeconfig` only.
fn command(args: &[&str], kubeconfig: &Path) -> Command {
    let mut command = Command::new(canaryctl_bin());
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().expect("a directory"))
        .env_remove("CANARYCTL_TARGET")
        .env_remove("CANARYCTL_TOKEN")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    command
}

/// Runs `canaryctl`; its standard output.
fn canaryctl(args: &[&str], kubeconfig: &Path) -> String {
    let output = command(args, kubeconfig).output().expect("run canaryctl");
    assert!(
        output.status.success(),
        "canaryctl {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// `canaryctl serve` on a target, its ECDS server in plaintext (`--insecure-grpc`), polling the
/// target every 100 ms; killed when dropped.
struct Serve {
    child: Child,
    grpc: SocketAddr,
}

impl Serve {
    fn start(target: &str, kubeconfig: &Path) -> Serve {
        let dir = kubeconfig.parent().expect("a directory");
        std::fs::write(dir.join("token"), "api-token\n").expect("write token");
        let mut child = command(&["serve"], kubeconfig)
            .arg(format!("--target={target}"))
            .args([
                "--listen=127.0.0.1:0",
                "--grpc-listen=127.0.0.1:0",
                "--poll-ms=100",
                "--insecure-grpc",
            ])
            .arg("--token-file")
            .arg(dir.join("token"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start canaryctl serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the first line");
        let words: Vec<&str> = line.split_whitespace().collect();
        let grpc = match words.as_slice() {
            ["serving:", "http", _, "grpc", grpc] => grpc.parse().expect("an address"),
            _ => panic!("canaryctl serve did not start: {line:?}"),
        };
        Serve { child, grpc }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The EnvoyFilter among the resources `canaryctl render --api envoyfilter --module-kind
/// dynamic` makes of `spec`.
fn rendered_envoy_filter(spec: &Path, kubeconfig: &Path) -> Value {
    let spec = spec.to_str().expect("UTF-8 path");
    let args = [
        "render",
        spec,
        "--api",
        "envoyfilter",
        "--module-kind",
        "dynamic",
    ];
    let text = canaryctl(&args, kubeconfig);
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

/// The plugin configuration the EnvoyFilter carries, parsed.
fn plugin_config(envoy_filter: &Value) -> Value {
    let text = envoy_filter
        .pointer(CONFIG)
        .and_then(Value::as_str)
        .expect("the plugin configuration string");
    serde_json::from_str(text).expect("the plugin configuration is JSON")
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

/// The variant the plugin configuration `config` gives each of [`users`], by the filter's own
/// assignment.
fn assigned(config: &Value) -> Vec<String> {
    let table = canary_filter::parse(config.to_string().as_bytes()).expect("valid");
    let route = &table.routes[0];
    users()
        .iter()
        .map(|user| route.variants[route.assign(user.as_bytes())].name.clone())
        .collect()
}

/// Waits until Envoy serves each of [`users`] the variant in `want`, and returns that.
async fn served_as(envoy: &Envoy, want: &[String], label: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let served = served(envoy).await;
        if served == want {
            return served;
        }
        let wrong = served.iter().zip(want).filter(|(s, w)| s != w).count();
        assert!(
            Instant::now() < deadline,
            "{label}: {wrong} of {USERS} users still served another variant than assigned \
             after 10 s; Envoy log:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that each variant served its weight's share of `served`, within five standard
/// deviations of the binomial distribution of [`USERS`] users (a correct split strays further
/// with a chance below one in a million; the users are fixed, so the outcome is too).
fn assert_split(served: &[String], weights: &[(&str, f64)], label: &str) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for variant in served {
        *counts.entry(variant.as_str()).or_default() += 1;
    }
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

/// Waits until Envoy has accepted `accepted` ECDS updates, and asserts it rejected none.
async fn assert_accepted(envoy: &Envoy, accepted: u64) {
    let stat = |name| envoy.ecds_stat(name);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut success = 0;
    while Instant::now() < deadline {
        success = envoy.stat(&stat("update_success")).await.unwrap_or(0);
        if success >= accepted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rejected = envoy.stat(&stat("update_rejected")).await.unwrap_or(0);
    assert_eq!(
        (success, rejected),
        (accepted, 0),
        "accepted and rejected ECDS updates; Envoy log:\n{}",
        envoy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_pushes_the_dynamic_envoy_filter_and_set_weight_moves_the_split() {
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
        patch_value(&before, "EXTENSION_CONFIG")["typed_config"]["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
    );

    let target = format!("kube://{NAMESPACE}/envoyfilter/{NAME}");
    let serve = Serve::start(&target, &kubeconfig);

    // The filter in the chain is the one the HTTP_FILTER patch inserts; it subscribes to the
    // extension configuration of its name, which must be the EXTENSION_CONFIG patch's.
    let filter_name = patch_value(&before, "HTTP_FILTER")["name"]
        .as_str()
        .expect("the filter's name");
    assert_eq!(
        patch_value(&before, "EXTENSION_CONFIG")["name"],
        filter_name
    );
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let envoy = Envoy::builder()
        .build(Build::DynamicModule)
        .variant("stable", &stable)
        .variant("canary", &canary)
        .sealed_routes(&[SEAL])
        .filter_name(filter_name)
        .ecds_grpc(serve.grpc)
        .start()
        .await;
    assert_accepted(&envoy, 1).await;
    let at_rendered_weights =
        served_as(&envoy, &assigned(&plugin_config(&before)), "rendered").await;
    assert_split(
        &at_rendered_weights,
        &[("stable", 90.0), ("canary", 10.0)],
        "rendered",
    );

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
    let mut config = plugin_config(&before);
    config["routes"][0]["variants"] =
        json!([{"name": "stable", "weight": 50}, {"name": "canary", "weight": 50}]);
    assert_eq!(plugin_config(&after), config, "only the weights changed");
    assert_ne!(
        assigned(&plugin_config(&after)),
        at_rendered_weights,
        "users move at 50 %"
    );

    // serve reads the object again within its poll interval and pushes the new resource.
    assert_accepted(&envoy, 2).await;
    let at_new_weights = served_as(
        &envoy,
        &assigned(&plugin_config(&after)),
        "after set-weight",
    )
    .await;
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
    assert!(
        api.served_with("PATCH").len() == 1,
        "serve itself wrote nothing"
    );
    drop(serve);
}

/// `serve --target file:PATH` on the dynamic module's ECDS document: pushed to a real Envoy
/// loading `libcanary_router.so` as it is, and again after `set-weight` on the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_pushes_the_dynamic_modules_ecds_file() {
    use canaryctl::ecds::{self, ModuleSource};

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig-unused");
    let config = json!({"routes": [{"name": "web", "match": {"hosts": ["web"]},
        "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
        "stickiness": {"keys": [{"header": "x-user-id"}], "salt": "web-2026-11"}}]});
    let module = ModuleSource::Dynamic {
        name: canary_e2e::envoy::DYNAMIC_MODULE.to_owned(),
    };
    let path = dir.path().join("ecds.json");
    let document = ecds::document("canary", &module, &config.to_string());
    std::fs::write(&path, document.to_string()).expect("write the ECDS file");
    let target = format!("file:{}", path.display());
    let serve = Serve::start(&target, &kubeconfig);

    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let envoy = Envoy::builder()
        .build(Build::DynamicModule)
        .variant("stable", &stable)
        .variant("canary", &canary)
        .ecds_grpc(serve.grpc)
        .start()
        .await;
    assert_accepted(&envoy, 1).await;
    let before = served_as(&envoy, &assigned(&config), "as written").await;
    assert_split(&before, &[("stable", 90.0), ("canary", 10.0)], "as written");

    canaryctl(
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
    let mut config = config;
    config["routes"][0]["variants"] =
        json!([{"name": "stable", "weight": 50}, {"name": "canary", "weight": 50}]);
    assert_accepted(&envoy, 2).await;
    let after = served_as(&envoy, &assigned(&config), "after set-weight").await;
    assert_split(
        &after,
        &[("stable", 50.0), ("canary", 50.0)],
        "after set-weight",
    );
    drop(serve);
}
