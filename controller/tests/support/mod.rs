//! Shared by the integration tests: the stand-in Kubernetes API server and a way to run
//! the `canaryctl` binary.
#![allow(dead_code)]

pub mod kube_api;
pub mod rbac;
pub mod schema;

use std::path::Path;
use std::process::{Command, Output};

/// What a `canaryctl` run did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the `canaryctl` binary with `args`, the Kubernetes client configured by `kubeconfig`
/// only (no home directory, no in-cluster environment, no target from the environment).
pub fn canaryctl(args: &[&str], kubeconfig: Option<&Path>) -> Run {
    canaryctl_with_env(args, kubeconfig, &[])
}

/// [`canaryctl`], with these environment variables set as well.
pub fn canaryctl_with_env(args: &[&str], kubeconfig: Option<&Path>, env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_canaryctl"));
    command
        .args(args)
        .env_remove("CANARYCTL_TARGET")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("HOME", std::env::temp_dir().join("canaryctl-test-no-home"))
        .env("CANARYCTL_LOG", "info")
        .envs(env.iter().copied());
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        None => command.env_remove("KUBECONFIG"),
    };
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run canaryctl");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The EnvoyFilter `canaryctl render --api envoyfilter` makes of `examples/bookinfo-reviews.yaml`
/// (namespace `bookinfo`, name `reviews-canary`; route `reviews` with v1 80, v2 10, v3 10).
pub fn rendered_envoy_filter() -> serde_json::Value {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo-reviews.yaml");
    let spec = spec.to_str().expect("UTF-8 path");
    let run = canaryctl(&["render", spec, "--api", "envoyfilter"], None);
    assert!(run.succeeded(), "{run:?}");
    let found = serde_yaml::Deserializer::from_str(&run.stdout)
        .map(|document| {
            <serde_json::Value as serde::Deserialize>::deserialize(document).expect("YAML")
        })
        .find(|object| object["kind"] == "EnvoyFilter");
    found.expect("an EnvoyFilter among the rendered resources")
}

/// Where an EnvoyFilter rendered by `canaryctl` keeps the plugin configuration string.
pub const ENVOY_FILTER_CONFIG: &str =
    "/spec/configPatches/0/patch/value/typed_config/config/configuration/value";

/// The plugin configuration an EnvoyFilter rendered by `canaryctl` carries, parsed.
pub fn envoy_filter_config(object: &serde_json::Value) -> serde_json::Value {
    let text = object
        .pointer(ENVOY_FILTER_CONFIG)
        .and_then(serde_json::Value::as_str)
        .expect("the plugin configuration string");
    serde_json::from_str(text).expect("the plugin configuration is JSON")
}

/// `canaryctl rollout` of `variant` on route `reviews` of `target`, in steps of 10 and 50 %
/// of 1 s, judged on `metrics` once 20 requests were seen, printing a line per event.
pub fn rollout_args<'a>(target: &'a str, variant: &'a str, metrics: &'a str) -> Vec<&'a str> {
    vec![
        "rollout",
        "--target",
        target,
        "--route",
        "reviews",
        "--variant",
        variant,
        "--steps",
        "10,50",
        "--interval",
        "1s",
        "--metrics",
        metrics,
        "--min-requests",
        "20",
        "--progress",
        "lines",
    ]
}

/// A stand-in Envoy admin endpoint for `canaryctl rollout --metrics envoy:URL`: its `/stats`
/// shows 50 more responses for each of the two variants of `route` at every read,
/// `errors_in_50` of the canary's being 5xx. The metrics source, as `--metrics` takes it.
pub fn stand_in_envoy_admin(
    route: &str,
    baseline: &str,
    canary: &str,
    errors_in_50: u64,
) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let prefix = format!("wasmcustom.canary.route.{route}.variant");
    let (baseline, canary) = (baseline.to_owned(), canary.to_owned());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let reads = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/stats",
        axum::routing::get(move || {
            let n = reads.fetch_add(1, Ordering::Relaxed) + 1;
            let stat = |name: &str, value: u64| {
                serde_json::json!({"name": format!("{prefix}.{name}"), "value": value})
            };
            let body = serde_json::json!({"stats": [
                stat(&format!("{canary}.response.2xx"), n * (50 - errors_in_50)),
                stat(&format!("{canary}.response.5xx"), n * errors_in_50),
                stat(&format!("{baseline}.response.2xx"), n * 50),
            ]});
            async move { axum::Json(body) }
        }),
    );
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    format!("envoy:http://{addr}")
}
