//! `canaryctl serve --target kube://NAMESPACE/NAME`, as the Kubernetes Deployment runs it: the
//! API's changes patch the WasmPlugin's `pluginConfig` (istiod delivers it), against the
//! stand-in Kubernetes API server; the same for an EnvoyFilter, whose plugin configuration is a
//! string inside its EXTENSION_CONFIG patch.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use support::kube_api::KubeApi;

fn wasm_plugin() -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "reviews-canary", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "url": "http://canaryctl.canary-system:8080/filter.wasm",
            "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "pluginName": "canary",
            "pluginConfig": {"routes": [{"name": "reviews", "variants": [
                {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}]},
        }
    })
}

/// One HTTP/1.1 request: the status and the body as JSON.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: canaryctl\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `canaryctl serve --target TARGET` against `api`, with the bearer token `k8s-token`; its
/// HTTP address.
fn serve(api: &KubeApi, dir: &std::path::Path, target: &str) -> (Serve, SocketAddr) {
    let kubeconfig = api.kubeconfig(dir);
    std::fs::write(dir.join("token"), "k8s-token\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_canaryctl"))
        .arg("serve")
        .arg(format!("--target={target}"))
        .args([
            "--listen=127.0.0.1:0",
            "--grpc-listen=127.0.0.1:0",
            "--poll-ms=100",
        ])
        .arg("--token-file")
        .arg(dir.join("token"))
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("CANARYCTL_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let serve = Serve(child);
    let http: SocketAddr = line
        .split_whitespace()
        .nth(2)
        .expect("serving: http ADDR …")
        .parse()
        .unwrap();
    (serve, http)
}

#[test]
fn the_api_patches_the_wasm_plugin() {
    let api = KubeApi::start();
    api.create(wasm_plugin());
    let dir = tempfile::tempdir().unwrap();
    let (serve, http) = serve(&api, dir.path(), "kube://shop/reviews-canary");

    let (status, routes) = request(http, "GET", "/v1/routes", None, "");
    assert_eq!(status, 200);
    assert_eq!(routes["target"], "kube://shop/reviews-canary");
    assert_eq!(
        routes["routes"][0]["variants"][1],
        json!({"name": "canary", "weight": 10})
    );

    let body = r#"{"weights":{"canary":25}}"#;
    let (status, _) = request(
        http,
        "PUT",
        "/v1/routes/reviews/weights",
        Some("wrong"),
        body,
    );
    assert_eq!(status, 401);
    assert!(
        api.served_with("PATCH").is_empty(),
        "nothing patched without the token"
    );

    let (status, answer) = request(
        http,
        "PUT",
        "/v1/routes/reviews/weights",
        Some("k8s-token"),
        body,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["route"]["variants"],
        json!([
        {"name": "stable", "weight": 75}, {"name": "canary", "weight": 25}])
    );
    let live = api.get("wasmplugins", "shop", "reviews-canary").unwrap();
    assert_eq!(
        live["spec"]["pluginConfig"]["routes"][0]["variants"],
        json!([
        {"name": "stable", "weight": 75}, {"name": "canary", "weight": 25}])
    );
    assert_eq!(api.served_with("PATCH").len(), 1);

    let (status, answer) = request(
        http,
        "POST",
        "/v1/routes/reviews/abort",
        Some("k8s-token"),
        "",
    );
    assert_eq!(status, 200, "{answer}");
    let live = api.get("wasmplugins", "shop", "reviews-canary").unwrap();
    assert_eq!(
        live["spec"]["pluginConfig"]["routes"][0]["variants"][1]["weight"],
        0
    );
    drop(serve);
}

#[test]
fn the_api_patches_the_envoy_filter() {
    let api = KubeApi::start();
    let rendered = support::rendered_envoy_filter();
    api.create(rendered.clone());
    let dir = tempfile::tempdir().unwrap();
    let (serve, http) = serve(&api, dir.path(), "kube://bookinfo/reviews-canary");

    let (status, routes) = request(http, "GET", "/v1/routes", None, "");
    assert_eq!(status, 200, "{routes}");
    assert_eq!(
        routes["routes"][0]["variants"][1],
        json!({"name": "v2", "weight": 10})
    );

    let (status, answer) = request(
        http,
        "PUT",
        "/v1/routes/reviews/weights",
        Some("k8s-token"),
        r#"{"weights":{"v2":25}}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let live = api
        .get("envoyfilters", "bookinfo", "reviews-canary")
        .unwrap();
    assert_eq!(
        support::envoy_filter_config(&live)["routes"][0]["variants"],
        json!([{"name": "v1", "weight": 65}, {"name": "v2", "weight": 25},
               {"name": "v3", "weight": 10}])
    );
    assert_eq!(
        live["spec"]["configPatches"][1], rendered["spec"]["configPatches"][1],
        "the HTTP_FILTER patch is kept"
    );
    let patches = api.served_with("PATCH");
    assert_eq!(patches.len(), 1);
    assert!(patches[0].uri.contains("/networking.istio.io/v1alpha3/"));
    drop(serve);
}
