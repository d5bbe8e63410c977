//! `canaryctl rollout` end to end: a real Envoy running the filter, real upstreams, real load,
//! and a real Prometheus scraping Envoy (or Envoy's admin endpoint directly), plain or behind
//! HTTPS with basic auth or a bearer token. canaryctl runs as its own process — the binary
//! `make build` builds — so a test can read its report and kill it.

use std::convert::Infallible;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canary_e2e::canaryctl::canaryctl_bin;
use canary_e2e::pki::Pki;
use canary_e2e::prometheus::{Prometheus, WebSecurity};
use canary_e2e::{client, get, Envoy, Load, Upstream};
use canaryctl::http::{HttpClient, HttpError, HttpOptions};
use canaryctl::rollout::state::{self, Record, State};
use canaryctl::targets::{Clients, Target};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{header, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Envoy merges histograms at each stats flush: once a second here, so a step of a few seconds
/// sees its latency samples.
const FLUSH: Duration = Duration::from_secs(1);

/// The route every rollout here works on.
fn route() -> serde_json::Value {
    serde_json::json!({
        "name": "web",
        "variants": [ { "name": "stable", "weight": 100 }, { "name": "canary", "weight": 0 } ],
        "stickiness": { "keys": [ { "header": "x-user-id" } ], "salt": "web-rollout" }
    })
}

/// The filter-source rollouts read the filter's response counters and latency.
fn config() -> String {
    serde_json::json!({ "metrics": { "responses": true }, "routes": [route()] }).to_string()
}

/// A canary upstream whose failure rate can be changed while it runs.
struct Canary {
    addr: std::net::SocketAddr,
    /// Every n-th request fails with a 500 (0: none).
    fail_every: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Canary {
    async fn start() -> Canary {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let fail_every = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let task = {
            let fail_every = Arc::clone(&fail_every);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (fail_every, served) = (Arc::clone(&fail_every), Arc::clone(&served));
                    tokio::spawn(async move {
                        let service = service_fn(move |_request| {
                            let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                            let every = fail_every.load(Ordering::Relaxed);
                            let status = if every > 0 && n % every == 0 {
                                StatusCode::INTERNAL_SERVER_ERROR
                            } else {
                                StatusCode::OK
                            };
                            let response = Response::builder()
                                .status(status)
                                .header("x-upstream", "canary")
                                .body(Full::new(Bytes::from_static(b"canary")));
                            async move { Ok::<_, Infallible>(response.expect("response")) }
                        });
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Canary {
            addr,
            fail_every,
            task,
        }
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Setup {
    envoy: Envoy,
    canary: Canary,
    _stable: Upstream,
}

async fn setup_with(canary: Canary) -> Setup {
    setup_configured(canary, &config()).await
}

async fn setup_configured(canary: Canary, plugin_config: &str) -> Setup {
    let stable = Upstream::start("stable").await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant_at("canary", canary.addr)
        .plugin_config(plugin_config)
        .stats_flush_interval(FLUSH)
        .start()
        .await;
    Setup {
        envoy,
        canary,
        _stable: stable,
    }
}

async fn setup() -> Setup {
    setup_with(Canary::start().await).await
}

fn target(envoy: &Envoy) -> String {
    format!("file:{}", envoy.ecds_path().display())
}

/// The canary's weight in the live configuration.
async fn canary_weight(envoy: &Envoy) -> f64 {
    let target: Target = target(envoy).parse().expect("target");
    let config = target
        .read(&Clients::default())
        .await
        .expect("read the ECDS file");
    config.routes[0].variants[1].weight
}

async fn record(envoy: &Envoy) -> Option<Record> {
    let target: Target = target(envoy).parse().expect("target");
    state::load(&target, &Clients::default(), "web")
        .await
        .expect("read the record")
}

/// `canaryctl rollout` on route `web`, variant `canary`, with these options on top.
fn rollout(envoy: &Envoy, metrics: &str, options: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(canaryctl_bin());
    command
        .args(["rollout", "--target", &target(envoy)])
        .args([
            "--route",
            "web",
            "--variant",
            "canary",
            "--metrics",
            metrics,
        ])
        .args(["--progress", "lines", "--min-requests", "20"])
        .args(options)
        .env("CANARYCTL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs canaryctl to the end: exit code, stdout and stderr.
async fn finish(mut command: tokio::process::Command) -> (i32, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("canaryctl finished within 60 s")
        .expect("canaryctl ran");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("canaryctl rollout ({}):\n{out}", output.status);
    (
        output.status.code().unwrap_or(-1),
        out,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn prometheus_source(prometheus: &Prometheus) -> String {
    format!("prometheus:{}", prometheus.url())
}

/// Which upstream served each of `n` probe users (one request each).
async fn served(envoy: &Envoy, n: usize) -> Vec<String> {
    let client = client();
    let mut served = Vec::new();
    for i in 0..n {
        let user = format!("probe-{i}");
        let reply = get(&client, &envoy.url("/"), &[("x-user-id", &user)])
            .await
            .expect("probe");
        served.push(reply.upstream.unwrap_or_default());
    }
    served
}

/// The options of a healthy rollout: three steps, a loose latency check.
const HEALTHY: [&str; 8] = [
    "--steps",
    "10,50,100",
    "--interval",
    "3s",
    "--max-p99-ms",
    "1000",
    "--max-p99-ratio",
    "20",
];

/// A healthy rollout under load through `metrics` (and `options`, how to reach it): what it
/// printed, once it is checked that it promoted the canary through every step.
async fn promoted(s: &Setup, metrics: &str, options: &[&str]) -> (String, String) {
    let load = Load::start(&s.envoy, 8, 300);
    let options: Vec<&str> = HEALTHY.iter().chain(options).copied().collect();
    let (code, out, err) = finish(rollout(&s.envoy, metrics, &options)).await;
    load.stop().await;

    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for step in [
        "step 1/3 passed",
        "step 2/3 passed",
        "step 3/3 passed",
        "promoted: canary has 100 %",
    ] {
        assert!(out.contains(step), "{step:?} missing:\n{out}");
    }
    assert_eq!(canary_weight(&s.envoy).await, 100.0);
    assert_eq!(
        record(&s.envoy).await.map(|r| r.state),
        Some(State::Promoted)
    );
    assert!(
        served(&s.envoy, 50).await.iter().all(|u| u == "canary"),
        "every user is on the canary"
    );
    (out, err)
}

/// 1. A healthy canary goes through every step and is promoted to 100 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_through_every_step() {
    let s = setup().await;
    let prometheus = Prometheus::start(&s.envoy.admin_url("")[7..]).await;
    promoted(&s, &prometheus_source(&prometheus), &[]).await;
}

/// 2. A canary that starts failing 20 % of its requests at the second step is rolled back to
/// 0 % within that step's interval; users are back on the baseline; the report names the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_within_one_interval() {
    let s = setup().await;
    let prometheus = Prometheus::start(&s.envoy.admin_url("")[7..]).await;
    let load = Load::start(&s.envoy, 8, 300);
    let interval = Duration::from_secs(3);
    let child = rollout(
        &s.envoy,
        &prometheus_source(&prometheus),
        &["--steps", "10,50,100", "--interval", "3s"],
    );
    let run = tokio::spawn(finish(child));
    // The canary breaks as soon as the second step's weight is live.
    let deadline = Instant::now() + Duration::from_secs(30);
    while canary_weight(&s.envoy).await < 50.0 {
        assert!(Instant::now() < deadline, "the rollout never reached 50 %");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.canary.fail_every.store(5, Ordering::Relaxed);
    let broke = Instant::now();
    let (code, out, err) = run.await.expect("canaryctl task");
    let took = broke.elapsed();
    load.stop().await;

    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        took < interval + Duration::from_secs(2),
        "rolled back {took:?} after the canary broke; the interval is {interval:?}"
    );
    assert!(out.contains("step 1/3 passed"), "{out}");
    assert!(
        out.contains("rolled back: canary is back to 0 % (stable 100 %)"),
        "{out}"
    );
    let seen = rate_in_report(&out, "step 2/3 at 50 % failed: error rate ");
    assert!(
        (5.0..=40.0).contains(&seen),
        "error rate {seen} % in:\n{out}"
    );
    assert_eq!(canary_weight(&s.envoy).await, 0.0);
    let record = record(&s.envoy).await.expect("a record");
    assert_eq!(record.state, State::RolledBack);
    assert!(record.message.unwrap_or_default().contains("error rate"));
    assert!(
        served(&s.envoy, 50).await.iter().all(|u| u == "stable"),
        "every user is back on the baseline"
    );
}

/// The percentage right after `prefix` in the report.
fn rate_in_report(out: &str, prefix: &str) -> f64 {
    let at = out
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} not in:\n{out}"));
    out[at + prefix.len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rate after {prefix:?} in:\n{out}"))
}

/// 3. Without traffic nothing is ever judged healthy: the rollout says there is no data, does
/// not go past its first step, and takes the canary back to 0 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traffic_the_rollout_says_no_data_and_does_not_promote() {
    let s = setup().await;
    let prometheus = Prometheus::start(&s.envoy.admin_url("")[7..]).await;
    let options = [
        "--steps",
        "10,50,100",
        "--interval",
        "2s",
        "--no-data-retries",
        "1",
    ];
    let (code, out, err) =
        finish(rollout(&s.envoy, &prometheus_source(&prometheus), &options)).await;

    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("step 1/3: no data: the canary answered 0 requests"),
        "{out}"
    );
    assert!(
        !out.contains("step 2/3"),
        "never past the first step:\n{out}"
    );
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(canary_weight(&s.envoy).await, 0.0);
    let record = record(&s.envoy).await.expect("a record");
    assert_eq!(record.state, State::RolledBack);
    assert!(record.message.unwrap_or_default().contains("no data"));
}

/// 4. A rollout killed mid-way, started again, resumes at the step it had recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rollout_resumes_at_its_recorded_step() {
    let s = setup().await;
    let load = Load::start(&s.envoy, 8, 300);
    let metrics = format!("envoy:{}", s.envoy.admin_url(""));
    let options = ["--steps", "10,30,50,100", "--interval", "2s"];
    let mut first = rollout(&s.envoy, &metrics, &options)
        .spawn()
        .expect("start canaryctl");
    let deadline = Instant::now() + Duration::from_secs(30);
    while record(&s.envoy).await.map(|r| r.step) != Some(2) {
        assert!(
            Instant::now() < deadline,
            "the rollout never reached step 2"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _, err) = finish(rollout(&s.envoy, &metrics, &options)).await;
    assert_eq!(code, 1, "a second rollout while the first runs: {err}");
    assert!(err.contains("is being driven by process"), "{err}");
    first.kill().await.expect("kill canaryctl");
    let recorded = record(&s.envoy).await.expect("a record");
    assert_eq!((recorded.step, recorded.state), (2, State::Running));

    let (code, out, err) = finish(rollout(&s.envoy, &metrics, &options)).await;
    load.stop().await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains(&format!(
            "resuming the rollout recorded on {} at step 2/4 (30 %, running)",
            target(&s.envoy)
        )),
        "{out}"
    );
    assert!(!out.contains("step 1/4"), "step 1 is not run again:\n{out}");
    for step in ["step 2/4 passed", "step 3/4 passed", "step 4/4 passed"] {
        assert!(out.contains(step), "{step:?} missing:\n{out}");
    }
    assert_eq!(canary_weight(&s.envoy).await, 100.0);
    let done = record(&s.envoy).await.expect("a record");
    assert_eq!((done.state, done.id), (State::Promoted, recorded.id));
}

/// 5. A canary whose p99 is over the limit is rolled back on the latency check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_canary_is_rolled_back_on_the_latency_check() {
    let stable = Upstream::start("stable").await;
    let slow = Upstream::builder("canary")
        .delay(Duration::from_millis(80))
        .start()
        .await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &slow)
        .plugin_config(&config())
        .stats_flush_interval(FLUSH)
        .start()
        .await;
    let prometheus = Prometheus::start(&envoy.admin_url("")[7..]).await;
    let load = Load::start(&envoy, 8, 300);
    let options = [
        "--steps",
        "10,50,100",
        "--interval",
        "3s",
        "--max-p99-ms",
        "40",
    ];
    let (code, out, err) = finish(rollout(&envoy, &prometheus_source(&prometheus), &options)).await;
    load.stop().await;

    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("failed: p99 latency "), "{out}");
    assert!(out.contains("is over the maximum 40 ms"), "{out}");
    assert!(
        !out.contains("error rate"),
        "only the latency check failed:\n{out}"
    );
    assert!(
        !out.contains("step 2/3"),
        "rolled back at the first step:\n{out}"
    );
    assert_eq!(canary_weight(&envoy).await, 0.0);
}

/// A manual gate holds the rollout until `canaryctl resume`; `canaryctl abort` stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_waits_for_resume_and_abort_stops_the_rollout() {
    let s = setup().await;
    let load = Load::start(&s.envoy, 8, 300);
    let metrics = format!("envoy:{}", s.envoy.admin_url(""));
    let options = [
        "--steps",
        "10,50,100",
        "--interval",
        "2s",
        "--pause-at",
        "10",
    ];
    let run = tokio::spawn(finish(rollout(&s.envoy, &metrics, &options)));
    let ecds_target = target(&s.envoy);
    let canaryctl = |command: &'static str| {
        tokio::process::Command::new(canaryctl_bin())
            .args([command, "--target", &ecds_target, "--route", "web"])
            .output()
    };

    let nothing_paused = canaryctl("resume").await.expect("canaryctl ran");
    assert_eq!(nothing_paused.status.code(), Some(1), "{nothing_paused:?}");

    let deadline = Instant::now() + Duration::from_secs(30);
    while record(&s.envoy).await.map(|r| r.state) != Some(State::Paused) {
        assert!(Instant::now() < deadline, "the rollout never paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(canary_weight(&s.envoy).await, 10.0, "held at the gate");
    let resumed = canaryctl("resume").await.expect("canaryctl ran");
    assert!(resumed.status.success(), "{resumed:?}");

    while canary_weight(&s.envoy).await < 50.0 {
        assert!(
            Instant::now() < deadline,
            "the rollout never went on to 50 %"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let aborted = canaryctl("abort").await.expect("canaryctl ran");
    assert!(aborted.status.success(), "{aborted:?}");
    assert!(
        String::from_utf8_lossy(&aborted.stdout)
            .contains("the rollout of canary is marked aborted"),
        "{aborted:?}"
    );
    let (code, out, err) = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the rollout stopped soon after abort")
        .expect("canaryctl task");
    load.stop().await;

    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("paused at step 1/3"), "{out}");
    assert!(
        out.contains("aborted by canaryctl abort at step 2/3"),
        "{out}"
    );
    assert_eq!(canary_weight(&s.envoy).await, 0.0);
    assert_eq!(
        record(&s.envoy).await.map(|r| r.state),
        Some(State::Aborted)
    );
}

/// The Envoy admin source, with a check relative to the baseline: a canary failing one request
/// in five from the start is rolled back at the first step on the error-rate ratio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envoy_admin_source_rolls_back_on_a_relative_check() {
    let canary = Canary::start().await;
    canary.fail_every.store(5, Ordering::Relaxed);
    let s = setup_with(canary).await;
    let load = Load::start(&s.envoy, 8, 300);
    let metrics = format!("envoy:{}", s.envoy.admin_url(""));
    let options = [
        "--steps",
        "10,50,100",
        "--interval",
        "2s",
        "--max-error-rate",
        "1",
        "--max-error-rate-ratio",
        "3",
    ];
    let (code, out, err) = finish(rollout(&s.envoy, &metrics, &options)).await;
    load.stop().await;

    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    let seen = rate_in_report(&out, "step 1/3 at 10 % failed: error rate ratio: ");
    assert!(
        (15.0..=25.0).contains(&seen),
        "error rate {seen} % in:\n{out}"
    );
    assert!(out.contains("against the baseline's 0.00 %"), "{out}");
    assert_eq!(canary_weight(&s.envoy).await, 0.0);
}

/// A secret made for one test (a password, a token): nothing a reader of the tests could know.
fn secret(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{kind}-{}-{nanos:x}", std::process::id())
}

fn write(path: &Path, content: &str) -> String {
    std::fs::write(path, content).expect("write");
    path.display().to_string()
}

/// 8. Prometheus serving its API over TLS with basic auth (its own `--web.config.file`):
/// given the CA and the credentials file, the rollout reads it and promotes a healthy canary,
/// and prints the password nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_through_https_and_basic_auth() {
    let s = setup().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let password = secret("password");
    let web = WebSecurity {
        cert: &pki.cert("server"),
        key: &pki.key("server"),
        ca: &pki.cert("ca"),
        user: "rollout",
        password: &password,
    };
    let prometheus = Prometheus::start_secured(&s.envoy.admin_url("")[7..], web).await;
    assert!(prometheus.url().starts_with("https://"));
    let without_credentials = HttpOptions {
        ca_file: Some(pki.cert("ca")),
        ..HttpOptions::default()
    };
    let url = format!("{}/api/v1/query?query=up", prometheus.url());
    let refused = tokio::task::spawn_blocking(move || {
        HttpClient::new(&without_credentials).and_then(|client| client.get(&url))
    })
    .await
    .expect("request task");
    assert!(
        matches!(refused, Err(HttpError::Status { status: 401, .. })),
        "Prometheus asks for credentials: {refused:?}"
    );
    let credentials = write(
        &dir.path().join("basic-auth"),
        &format!("rollout:{password}\n"),
    );
    let ca = pki.cert("ca").display().to_string();
    let options = [
        "--metrics-ca",
        &ca,
        "--metrics-basic-auth-file",
        &credentials,
    ];
    let (out, err) = promoted(&s, &prometheus_source(&prometheus), &options).await;
    assert!(!format!("{out}{err}").contains(&password), "{out}{err}");
}

/// A TLS reverse proxy in front of a plain Prometheus that lets through only requests with
/// `Authorization: Bearer <token>`, as kube-rbac-proxy or a managed Prometheus's gateway does;
/// it counts what it let through and what it refused.
struct TokenProxy {
    url: String,
    passed: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenProxy {
    async fn start(pki: &Pki, token: &str, upstream: &str) -> TokenProxy {
        let certs = CertificateDer::pem_file_iter(pki.cert("server"))
            .expect("server certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate");
        let key = PrivateKeyDer::from_pem_file(pki.key("server")).expect("server key");
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server configuration");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().expect("address").port()
        );
        let (passed, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let expected = Arc::new(format!("Bearer {token}"));
        let upstream = Arc::new(upstream.to_owned());
        let client = client();
        let task = {
            let (passed, refused) = (Arc::clone(&passed), Arc::clone(&refused));
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        continue;
                    };
                    let (passed, refused) = (Arc::clone(&passed), Arc::clone(&refused));
                    let (expected, upstream, client) =
                        (Arc::clone(&expected), Arc::clone(&upstream), client.clone());
                    let service = service_fn(move |request: Request<Incoming>| {
                        let authorized = request
                            .headers()
                            .get(header::AUTHORIZATION)
                            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
                        let target = request
                            .uri()
                            .path_and_query()
                            .map_or(format!("{upstream}/"), |p| format!("{upstream}{p}"));
                        let (passed, refused, client) =
                            (Arc::clone(&passed), Arc::clone(&refused), client.clone());
                        async move {
                            if !authorized {
                                refused.fetch_add(1, Ordering::Relaxed);
                                return Ok::<_, Infallible>(reply(
                                    StatusCode::UNAUTHORIZED,
                                    Bytes::from_static(b"Unauthorized"),
                                ));
                            }
                            passed.fetch_add(1, Ordering::Relaxed);
                            Ok(match client.get(target).send().await {
                                Ok(answer) => {
                                    let status = StatusCode::from_u16(answer.status().as_u16())
                                        .unwrap_or(StatusCode::BAD_GATEWAY);
                                    reply(status, answer.bytes().await.unwrap_or_default())
                                }
                                Err(e) => {
                                    reply(StatusCode::BAD_GATEWAY, Bytes::from(e.to_string()))
                                }
                            })
                        }
                    });
                    tokio::spawn(
                        auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .into_owned(),
                    );
                }
            })
        };
        TokenProxy {
            url,
            passed,
            refused,
            task,
        }
    }
}

impl Drop for TokenProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

/// 9. Prometheus behind a TLS proxy that checks a bearer token: given the CA and the token
/// file, the rollout's every query carries the token and a healthy canary is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_through_a_proxy_checking_a_bearer_token() {
    let s = setup().await;
    let prometheus = Prometheus::start(&s.envoy.admin_url("")[7..]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let token = secret("token");
    let proxy = TokenProxy::start(&pki, &token, prometheus.url()).await;
    let token_file = write(&dir.path().join("token"), &format!("{token}\n"));
    let ca = pki.cert("ca").display().to_string();
    let options = ["--metrics-ca", &ca, "--metrics-token-file", &token_file];
    let (out, err) = promoted(&s, &format!("prometheus:{}", proxy.url), &options).await;
    assert!(!format!("{out}{err}").contains(&token), "{out}{err}");
    assert!(
        proxy.passed.load(Ordering::Relaxed) >= 9,
        "three queries per step"
    );
    assert_eq!(proxy.refused.load(Ordering::Relaxed), 0);
}

/// The configuration of the cluster-source tests: without `metrics`, so with the filter's
/// response metrics at their default, off. The cluster stats must do without them.
fn config_without_response_metrics() -> String {
    serde_json::json!({ "routes": [route()] }).to_string()
}

/// The cluster a variant's requests go to in the test Envoy (see `tests/src/envoy.rs`).
fn cluster_of(variant: &str) -> String {
    format!("variant-{variant}")
}

/// `--metrics envoy:URL` reading each variant's upstream cluster instead of the filter's stats.
fn cluster_source(envoy: &Envoy) -> (String, [String; 4]) {
    (
        format!("envoy:{}", envoy.admin_url("")),
        [
            "--envoy-cluster".to_owned(),
            format!("stable={}", cluster_of("stable")),
            "--envoy-cluster".to_owned(),
            format!("canary={}", cluster_of("canary")),
        ],
    )
}

/// The cluster source: a healthy canary on its own cluster is promoted through every step,
/// measured from Envoy's `cluster.variant-canary.*` stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_source_promotes_a_healthy_canary() {
    let s = setup_configured(Canary::start().await, &config_without_response_metrics()).await;
    let (metrics, clusters) = cluster_source(&s.envoy);
    let clusters: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let (out, _) = promoted(&s, &metrics, &clusters).await;
    assert!(
        out.contains("(clusters canary=variant-canary, stable=variant-stable)"),
        "{out}"
    );
}

/// The cluster source: a canary whose cluster answers one request in five with a 500 is rolled
/// back at the first step on the error rate, which the report gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_source_rolls_back_a_failing_canary() {
    let canary = Canary::start().await;
    canary.fail_every.store(5, Ordering::Relaxed);
    let s = setup_configured(canary, &config_without_response_metrics()).await;
    let load = Load::start(&s.envoy, 8, 300);
    let (metrics, clusters) = cluster_source(&s.envoy);
    let mut options = vec!["--steps", "10,50,100", "--interval", "2s"];
    options.extend(clusters.iter().map(String::as_str));
    let (code, out, err) = finish(rollout(&s.envoy, &metrics, &options)).await;
    load.stop().await;

    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    let seen = rate_in_report(&out, "step 1/3 at 10 % failed: error rate ");
    assert!(
        (15.0..=25.0).contains(&seen),
        "error rate {seen} % in:\n{out}"
    );
    assert_eq!(canary_weight(&s.envoy).await, 0.0);
    assert_eq!(
        record(&s.envoy).await.map(|r| r.state),
        Some(State::RolledBack)
    );
    assert!(
        served(&s.envoy, 50).await.iter().all(|u| u == "stable"),
        "every user is back on the baseline"
    );
}

/// The cluster source: a canary whose cluster answers in 80 ms is rolled back on p99, read from
/// the cluster's `upstream_rq_time` histogram.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_source_rolls_back_a_slow_canary() {
    let stable = Upstream::start("stable").await;
    let slow = Upstream::builder("canary")
        .delay(Duration::from_millis(80))
        .start()
        .await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &slow)
        .plugin_config(&config_without_response_metrics())
        .stats_flush_interval(FLUSH)
        .start()
        .await;
    let load = Load::start(&envoy, 8, 300);
    let (metrics, clusters) = cluster_source(&envoy);
    let mut options = vec![
        "--steps",
        "10,50,100",
        "--interval",
        "3s",
        "--max-p99-ms",
        "40",
    ];
    options.extend(clusters.iter().map(String::as_str));
    let (code, out, err) = finish(rollout(&envoy, &metrics, &options)).await;
    load.stop().await;

    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("step 1/3 at 10 % failed: p99 latency "),
        "{out}"
    );
    assert!(out.contains("is over the maximum 40 ms"), "{out}");
    assert!(
        !out.contains("error rate"),
        "only the latency check failed:\n{out}"
    );
    assert_eq!(canary_weight(&envoy).await, 0.0);
}

/// The cluster source: a cluster Envoy does not have stops the rollout before its first step,
/// with an error naming it and the clusters Envoy has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_source_names_a_missing_cluster() {
    let s = setup().await;
    let metrics = format!("envoy:{}", s.envoy.admin_url(""));
    let options = [
        "--envoy-cluster",
        "stable=variant-stable",
        "--envoy-cluster",
        "canary=reviews-v2",
    ];
    let (code, out, err) = finish(rollout(&s.envoy, &metrics, &options)).await;

    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(r#"has no cluster "reviews-v2" (--envoy-cluster canary=reviews-v2)"#),
        "{err}"
    );
    assert!(err.contains("variant-canary, variant-stable"), "{err}");
    assert!(!out.contains("step 1/"), "no step was run:\n{out}");
    assert_eq!(canary_weight(&s.envoy).await, 0.0);
    assert!(record(&s.envoy).await.is_none(), "nothing recorded");

    let options = ["--envoy-cluster", "canary=variant-canary"];
    let (code, _, err) = finish(rollout(&s.envoy, &metrics, &options)).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("variant stable has no cluster"), "{err}");
}
