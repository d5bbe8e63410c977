//! `canaryctl serve` against real Envoys: the filter's configuration comes from the
//! controller's ECDS gRPC server, weights change through its HTTP API, and the module can be
//! loaded from its `/filter.wasm`.
//!
//! The controller runs in the test process through its library entry point
//! ([`Server::start`], what `canaryctl serve` runs), backed by an ECDS file target. A real
//! Prometheus scrapes its `/metrics`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use canary_e2e::envoy::ecds_stat;
use canary_e2e::prometheus::Prometheus;
use canary_e2e::{client, get, wasm_path, Envoy, Upstream};
use canary_filter::Weight;
use canaryctl::ecds::{self, ModuleSource};
use canaryctl::serve::{Config, GrpcSecurity, Limits, Module, Server, Token};
use canaryctl::targets::Target;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789";
const SALT: &str = "web-2026-11";

fn plugin_config(canary: u32) -> String {
    json!({
        "debugHeader": true,
        "routes": [{
            "name": "web",
            "variants": [
                { "name": "stable", "weight": 100 - canary },
                { "name": "canary", "weight": canary }
            ],
            "stickiness": { "keys": [ { "header": "x-user-id" } ], "salt": SALT }
        }]
    })
    .to_string()
}

/// The variant the filter gives `user` at this canary weight, computed offline.
fn expected(user: &str, canary: u32) -> &'static str {
    let variants = [
        (&b"stable"[..], Weight((100 - canary) * 1000)),
        (&b"canary"[..], Weight(canary * 1000)),
    ];
    ["stable", "canary"][canary_filter::assign(SALT.as_bytes(), user.as_bytes(), variants)]
}

/// An ECDS document for the controller's target, the module given by `filename`.
fn write_document(path: &Path, filename: &str, canary: u32) {
    let module = ModuleSource::Local(filename.to_owned());
    let document = ecds::document("canary", &module, &plugin_config(canary));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A controller and the ECDS file behind it.
struct Controller {
    server: Option<Server>,
    target: PathBuf,
    http: SocketAddr,
    grpc: SocketAddr,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Controller {
    async fn start(canary: u32) -> Controller {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ecds.json");
        write_document(&target, &wasm_path().display().to_string(), canary);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = start_server(&target, any, any).await;
        Controller {
            http: server.http_addr(),
            grpc: server.grpc_addr(),
            server: Some(server),
            target,
            client: client(),
            _dir: dir,
        }
    }

    /// Stops the controller and starts a new one on the same addresses and target.
    async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("graceful shutdown");
        }
        self.server = Some(start_server(&self.target, self.http, self.grpc).await);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    async fn text(&self, path: &str) -> String {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// PUT/POST `body` (as JSON, if there is one) with an optional bearer token: the status and
    /// the JSON answer.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, self.url(path))
            .body(body.to_owned());
        if !body.is_empty() {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn set_canary(&self, canary: u32) -> Value {
        let body = json!({ "weights": { "canary": canary } }).to_string();
        let (status, answer) = self
            .send("PUT", "/v1/routes/web/weights", Some(TOKEN), &body)
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    async fn version(&self) -> String {
        self.get_json("/v1/routes").await["version"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `node`'s entry in `/v1/envoys`, as anyone may read it.
    async fn envoy_status(&self, node: &str) -> Value {
        Self::find_node(self.get_json("/v1/envoys").await, node)
    }

    /// `node`'s entry in `/v1/envoys`, read with the token: with Envoy's NACK reason.
    async fn envoy_status_with_token(&self, node: &str) -> Value {
        let response = self
            .client
            .get(self.url("/v1/envoys"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET /v1/envoys with the token");
        let envoys = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        Self::find_node(envoys, node)
    }

    fn find_node(envoys: Value, node: &str) -> Value {
        envoys["envoys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"] == node)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Waits until every Envoy has acknowledged `version` over an open stream.
    async fn wait_acked(&self, envoys: &[&Envoy], version: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut all = true;
            for envoy in envoys {
                let status = self.envoy_status(envoy.node_id()).await;
                all &= status["acked"] == version && status["streams"].as_u64() > Some(0);
            }
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not every Envoy acknowledged {version}: {}",
                self.get_json("/v1/envoys").await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metric(&self, line_prefix: &str) -> Option<f64> {
        self.text("/metrics").await.lines().find_map(|line| {
            line.strip_prefix(line_prefix)?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
    }
}

async fn start_server(target: &Path, http: SocketAddr, grpc: SocketAddr) -> Server {
    Server::start(Config {
        target: Target::File(target.to_owned()),
        listen: http,
        grpc_listen: grpc,
        module: Some(Module::read(&wasm_path()).unwrap()),
        token: Token::new(TOKEN).unwrap(),
        poll: Duration::from_millis(100),
        fleet: Limits::default(),
        grpc: GrpcSecurity::insecure(None),
        api_tls: None,
    })
    .await
    .expect("canaryctl serve starts")
}

struct Upstreams {
    stable: Upstream,
    canary: Upstream,
}

async fn upstreams() -> Upstreams {
    Upstreams {
        stable: Upstream::start("stable").await,
        canary: Upstream::start("canary").await,
    }
}

async fn grpc_envoy(controller: &Controller, upstreams: &Upstreams) -> Envoy {
    Envoy::builder()
        .variant("stable", &upstreams.stable)
        .variant("canary", &upstreams.canary)
        .ecds_grpc(controller.grpc)
        .start()
        .await
}

/// The variant `user` is served by `envoy` (every request must succeed through the filter).
async fn served(envoy: &Envoy, user: &str) -> String {
    let reply = get(&client(), &envoy.url("/"), &[("x-user-id", user)])
        .await
        .expect("request through Envoy");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.decision.is_some(), "the filter decided: {reply:?}");
    reply.upstream.expect("x-upstream")
}

/// Asserts `envoy` serves each of `users` as the filter does at `canary` %.
async fn assert_split(envoy: &Envoy, users: &[String], canary: u32, label: &str) {
    for user in users {
        assert_eq!(
            served(envoy, user).await,
            expected(user, canary),
            "{label}: user {user} at canary {canary} %"
        );
    }
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

/// Users on stable at `from` % and on canary at `to` %.
fn movers(from: u32, to: u32, n: usize) -> Vec<String> {
    (0..10_000)
        .map(|i| format!("mover-{i}"))
        .filter(|u| expected(u, from) == "stable" && expected(u, to) == "canary")
        .take(n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_envoys_follow_a_weight_change_through_the_api_within_a_second() {
    let controller = Controller::start(10).await;
    let upstreams = upstreams().await;
    let mut envoys = Vec::new();
    for _ in 0..3 {
        envoys.push(grpc_envoy(&controller, &upstreams).await);
    }
    let envoy_refs: Vec<&Envoy> = envoys.iter().collect();
    let v1 = controller.version().await;
    controller.wait_acked(&envoy_refs, &v1).await;
    let sample = users(60);
    for envoy in &envoys {
        assert_split(envoy, &sample, 10, "before").await;
    }

    let movers = movers(10, 50, 8);
    let started = Instant::now();
    let answer = controller.set_canary(50).await;
    assert_eq!(
        answer["route"]["variants"][1],
        json!({"name": "canary", "weight": 50})
    );
    let mut took = Vec::new();
    for envoy in &envoys {
        loop {
            let mut moved = true;
            for user in &movers {
                moved &= served(envoy, user).await == "canary";
            }
            if moved {
                took.push(started.elapsed());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{} still serves the old weights; log:\n{}",
                envoy.node_id(),
                envoy.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!("weight change seen by the three Envoys after {took:?}");
    let slowest = took.iter().max().copied().unwrap_or_default();
    assert!(slowest < Duration::from_secs(1), "took {slowest:?}");
    for envoy in &envoys {
        assert_split(envoy, &sample, 50, "after").await;
    }
    let v2 = answer["version"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    controller.wait_acked(&envoy_refs, &v2).await;
    let written = std::fs::read_to_string(&controller.target).unwrap();
    assert!(
        written.contains(r#"\"weight\":50"#),
        "the target holds the change: {written}"
    );
    assert_eq!(
        controller.metric("canaryctl_envoys_connected").await,
        Some(3.0)
    );
    assert_eq!(
        controller
            .metric(r#"canaryctl_route_weight_percent{route="web",variant="canary"}"#)
            .await,
        Some(50.0)
    );
    assert!(controller.metric("canaryctl_ecds_acks_total").await >= Some(6.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_and_malformed_changes_are_refused_and_reach_no_envoy() {
    let controller = Controller::start(10).await;
    let upstreams = upstreams().await;
    let envoy = grpc_envoy(&controller, &upstreams).await;
    let v1 = controller.version().await;
    controller.wait_acked(&[&envoy], &v1).await;
    let file_before = std::fs::read(&controller.target).unwrap();
    let pushes_before = controller.metric("canaryctl_ecds_pushes_total").await;
    let attempts_before = envoy.stat(&ecds_stat("update_attempt")).await;
    let good = r#"{"weights":{"canary":60}}"#;

    let weights = "/v1/routes/web/weights";
    for (label, token) in [
        ("no token", None),
        ("wrong token", Some("test-token-0123456780")),
        ("token prefix", Some("test-token")),
        ("empty token", Some("")),
    ] {
        let (status, answer) = controller.send("PUT", weights, token, good).await;
        assert_eq!(status, 401, "{label}: {answer}");
        assert!(
            answer["errors"][0]["reason"].is_string(),
            "{label}: {answer}"
        );
    }
    let (status, _) = controller
        .send(
            "POST",
            "/v1/routes/web/promote",
            None,
            r#"{"variant":"canary"}"#,
        )
        .await;
    assert_eq!(status, 401, "promote needs the token");
    let (status, _) = controller
        .send("POST", "/v1/routes/web/abort", Some("nope"), "")
        .await;
    assert_eq!(status, 401, "abort needs the token");

    for (label, path, body, status, error_path) in [
        ("not JSON", weights, "{weights:", 400, "$"),
        ("not an object", weights, "[1]", 400, "$"),
        ("no weights", weights, "{}", 400, "weights"),
        (
            "unknown field",
            weights,
            r#"{"weights":{"canary":5},"force":true}"#,
            400,
            "force",
        ),
        (
            "a string weight",
            weights,
            r#"{"weights":{"canary":"ten"}}"#,
            400,
            "weights.canary",
        ),
        (
            "above 100",
            weights,
            r#"{"weights":{"canary":150}}"#,
            400,
            "weights.canary",
        ),
        (
            "four decimals",
            weights,
            r#"{"weights":{"canary":1.2345}}"#,
            400,
            "weights.canary",
        ),
        (
            "unknown variant",
            weights,
            r#"{"weights":{"green":5}}"#,
            400,
            "weights.green",
        ),
        (
            "not 100",
            weights,
            r#"{"weights":{"stable":50,"canary":20}}"#,
            400,
            "weights",
        ),
        (
            "unknown route",
            "/v1/routes/shop/weights",
            good,
            404,
            "route",
        ),
        (
            "promote unknown",
            "/v1/routes/web/promote",
            r#"{"variant":"green"}"#,
            400,
            "variant",
        ),
        (
            "promote no variant",
            "/v1/routes/web/promote",
            r#"{"name":"canary"}"#,
            400,
            "name",
        ),
    ] {
        let method = if path.ends_with("weights") {
            "PUT"
        } else {
            "POST"
        };
        let (got, answer) = controller.send(method, path, Some(TOKEN), body).await;
        assert_eq!(got, status, "{label}: {answer}");
        assert_eq!(answer["errors"][0]["path"], error_path, "{label}: {answer}");
    }

    // Nothing changed anywhere: the target, the version, what was pushed, what Envoy saw.
    assert_eq!(std::fs::read(&controller.target).unwrap(), file_before);
    assert_eq!(controller.version().await, v1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        controller.metric("canaryctl_ecds_pushes_total").await,
        pushes_before
    );
    assert_eq!(
        envoy.stat(&ecds_stat("update_attempt")).await,
        attempts_before
    );
    assert_split(&envoy, &users(40), 10, "after the refusals").await;

    // The same request with the token goes through.
    let (status, answer) = controller.send("PUT", weights, Some(TOKEN), good).await;
    assert_eq!(status, 200, "{answer}");
    let v2 = answer["version"].as_str().unwrap().to_owned();
    controller.wait_acked(&[&envoy], &v2).await;
    assert_split(&envoy, &users(40), 60, "after the valid change").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_envoy_that_rejects_a_configuration_is_reported_and_keeps_the_last_good_one() {
    // The resource names its module by a relative path, which each Envoy resolves in its own
    // working directory: one Envoy's disk has the module there, the other's does not, so that
    // Envoy rejects the configuration (a NACK with Envoy's reason) and serves the one before.
    let controller = Controller::start(0).await;
    let upstreams = upstreams().await;
    let with_module = tempfile::tempdir().unwrap();
    std::fs::copy(wasm_path(), with_module.path().join("canary-filter.wasm")).unwrap();
    let without_module = tempfile::tempdir().unwrap();
    let start = |dir: PathBuf| {
        Envoy::builder()
            .variant("stable", &upstreams.stable)
            .variant("canary", &upstreams.canary)
            .ecds_grpc(controller.grpc)
            .current_dir(&dir)
            .start()
    };
    let good = start(with_module.path().to_owned()).await;
    let rejecting = start(without_module.path().to_owned()).await;
    let v1 = controller.version().await;
    controller.wait_acked(&[&good, &rejecting], &v1).await;
    let sample = users(40);
    assert_split(&rejecting, &sample, 0, "before").await;

    // A new module location and a new weight, written to the target by an operator.
    write_document(&controller.target, "canary-filter.wasm", 100);
    let deadline = Instant::now() + Duration::from_secs(10);
    let nack = loop {
        let status = controller.envoy_status(rejecting.node_id()).await;
        if !status["nack"].is_null() {
            break status;
        }
        assert!(Instant::now() < deadline, "no NACK reported: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let v2 = controller.version().await;
    assert_ne!(v1, v2);
    println!("NACK reported: {nack}");
    let withheld = nack["nack"]["reason"].as_str().unwrap();
    assert!(
        !withheld.contains("canary-filter.wasm") && withheld.contains("request id"),
        "a read without the token sees no internal text: {withheld}"
    );
    let nack = controller
        .envoy_status_with_token(rejecting.node_id())
        .await;
    let reason = nack["nack"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("canary-filter.wasm"),
        "Envoy's reason: {reason}"
    );
    assert_eq!(nack["nack"]["version"], v2.as_str());
    assert_eq!(nack["acked"], v1.as_str(), "it still serves v1");
    controller.wait_acked(&[&good], &v2).await;
    assert_eq!(
        controller.envoy_status(good.node_id()).await["nack"],
        Value::Null
    );

    // The rejecting Envoy keeps the last good configuration; the other serves the new one.
    assert_split(&rejecting, &sample, 0, "the rejecting Envoy").await;
    assert_split(&good, &sample, 100, "the accepting Envoy").await;
    assert_eq!(rejecting.stat(&ecds_stat("update_rejected")).await, Some(1));
    let node = rejecting.node_id();
    assert_eq!(
        controller
            .metric(&format!("canaryctl_envoy_rejecting{{node=\"{node}\"}}"))
            .await,
        Some(1.0)
    );
    assert_eq!(
        controller.metric("canaryctl_ecds_nacks_total").await,
        Some(1.0)
    );
    let metrics = controller.text("/metrics").await;
    let nack_info = format!("canaryctl_envoy_nack_info{{node=\"{node}\",version=\"{v2}\"}} 1");
    assert!(
        metrics.lines().any(|l| l == nack_info),
        "{nack_info} in the metrics:\n{metrics}"
    );
    assert!(
        !metrics.contains("canary-filter.wasm"),
        "no reason in the metrics:\n{metrics}"
    );

    // A real Prometheus scrapes the same, as OpenMetrics (an `info` family is OpenMetrics').
    let prometheus =
        Prometheus::scraping("canaryctl", &controller.http.to_string(), "/metrics").await;
    for (family, kind) in [
        ("canaryctl_config", "info"),
        ("canaryctl_envoy_nack", "info"),
        ("canaryctl_ecds_nacks", "counter"),
        ("canaryctl_envoy_rejecting", "gauge"),
    ] {
        assert_eq!(
            prometheus.metric_type(family).await.as_deref(),
            Some(kind),
            "{family}; Prometheus log:\n{}",
            prometheus.log()
        );
    }
    for (query, value) in [
        (
            format!(r#"canaryctl_envoy_rejecting{{node="{node}"}}"#),
            1.0,
        ),
        (
            format!(r#"canaryctl_envoy_nack_info{{node="{node}",version="{v2}"}}"#),
            1.0,
        ),
        ("count(canaryctl_envoy_nack_info)".to_owned(), 1.0),
        ("canaryctl_ecds_nacks_total".to_owned(), 1.0),
        (format!(r#"canaryctl_config_info{{version="{v2}"}}"#), 1.0),
        (
            r#"canaryctl_route_weight_percent{route="web",variant="canary"}"#.to_owned(),
            100.0,
        ),
        ("canaryctl_envoys_connected".to_owned(), 2.0),
    ] {
        assert_eq!(prometheus.query(&query).await, Some(value), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_envoys_and_a_restarted_controller_resync_without_interrupting_traffic() {
    let mut controller = Controller::start(10).await;
    let upstreams = upstreams().await;
    let steady = grpc_envoy(&controller, &upstreams).await;
    let mut restarted = grpc_envoy(&controller, &upstreams).await;
    let v1 = controller.version().await;
    controller.wait_acked(&[&steady, &restarted], &v1).await;

    // An Envoy down while the weights change gets the current configuration when it is back.
    restarted.stop();
    let v2 = controller.set_canary(40).await["version"]
        .as_str()
        .unwrap()
        .to_owned();
    restarted.restart().await;
    controller.wait_acked(&[&steady, &restarted], &v2).await;
    let sample = users(40);
    assert_split(&restarted, &sample, 40, "the restarted Envoy").await;

    // Traffic keeps flowing, and keeps its assignment, while the controller restarts.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (urls, stop) = (
            [steady.url("/"), restarted.url("/")],
            std::sync::Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let client = client();
            let mut served = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, url) in urls.iter().enumerate() {
                    let user = format!("user-{}", served % 40);
                    let reply = get(&client, url, &[("x-user-id", &user)])
                        .await
                        .expect("request during the controller restart");
                    assert_eq!(reply.status, 200, "envoy {i}: {reply:?}");
                    assert_eq!(
                        reply.upstream.as_deref(),
                        Some(expected(&user, 40)),
                        "envoy {i}, {user}"
                    );
                    served += 1;
                }
            }
            served
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    controller.restart().await;
    assert_eq!(
        controller.version().await,
        v2,
        "the same version after the restart"
    );
    controller.wait_acked(&[&steady, &restarted], &v2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = traffic.await.expect("no request failed");
    assert!(served > 20, "traffic flowed during the restart: {served}");
    for envoy in [&steady, &restarted] {
        assert_eq!(envoy.stat(&ecds_stat("update_rejected")).await, Some(0));
    }

    // The new controller pushes to both.
    let v3 = controller.set_canary(70).await["version"]
        .as_str()
        .unwrap()
        .to_owned();
    controller.wait_acked(&[&steady, &restarted], &v3).await;
    assert_split(&steady, &sample, 70, "steady after the controller restart").await;
    assert_split(
        &restarted,
        &sample,
        70,
        "restarted after the controller restart",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn envoy_loads_the_module_over_http_with_the_published_sha256() {
    let controller = Controller::start(0).await;
    let module = controller.get_json("/v1/module").await;
    let sha256 = module["sha256"].as_str().unwrap().to_owned();
    let bytes = controller
        .client
        .get(controller.url("/filter.wasm"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        bytes.as_ref(),
        std::fs::read(wasm_path()).unwrap().as_slice()
    );
    assert_eq!(module["size"], bytes.len());
    assert_eq!(sha256, Module::new(bytes.to_vec()).sha256);

    let upstreams = upstreams().await;
    let url = controller.url("/filter.wasm");
    let envoy = Envoy::builder()
        .variant("stable", &upstreams.stable)
        .variant("canary", &upstreams.canary)
        .plugin_config(&plugin_config(100))
        .module_server(controller.http)
        .remote_module(&url, &sha256)
        .start()
        .await;
    assert_split(&envoy, &users(20), 100, "module fetched over HTTP").await;

    // The sha256 is checked: with another one, Envoy refuses the module and the filter does
    // not run (the rendered configurations fail open: requests take the default route).
    let wrong = Envoy::builder()
        .variant("stable", &upstreams.stable)
        .variant("canary", &upstreams.canary)
        .plugin_config(&plugin_config(100))
        .module_server(controller.http)
        .remote_module(&url, &"0".repeat(64))
        .start()
        .await;
    let reply = get(&client(), &wrong.url("/"), &[("x-user-id", "user-1")])
        .await
        .unwrap();
    assert_eq!(reply.decision, None, "no filter ran: {reply:?}");
    assert_eq!(reply.upstream.as_deref(), Some("stable"));
}
