//! Sealed decisions through a real Envoy whose routes are a rendered VirtualService's, translated
//! by hand as istiod would: per variant a route matching `x-canary-variant` exactly against
//! `<variant>.<seal>`, then a default route to the baseline, every route removing the header.
//!
//! A forged decision header (the bare variant name, upper case, two values, a retired seal,
//! another spec's seal) reaches the baseline whether the filter is configured, absent, or
//! failing open because its module does not load; decided requests reach their variant, and no
//! upstream ever sees the header. A seal rotation under load misroutes and fails no request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use canary_e2e::{client, filter_failures, get, Envoy, Reply, Routing, Upstream};
use serde_json::json;

/// The seal the filter writes.
const SEAL: &str = "Qm7rT2vX9kLp4sWz8bNc1dFg";
/// A seal retired by a finished rotation.
const OLD: &str = "0123456789abcdef0123456789abcdef";
/// Another spec's seal.
const OTHER: &str = "Other-spec_seal-0000000000";

/// Stable takes every hashed request; canary is reachable through the `qa` rule only, so a
/// request that reaches canary was either decided so or forged.
fn plugin_config(seal: &str, canary_weight: u32) -> String {
    json!({
        "debugHeader": true,
        "seal": seal,
        "routes": [{
            "name": "web",
            "variants": [
                { "name": "stable", "weight": 100 - canary_weight },
                { "name": "canary", "weight": canary_weight },
            ],
            "targeting": [
                { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
            ],
            "stickiness": { "keys": [{ "header": "x-user-id" }] },
        }],
    })
    .to_string()
}

/// Decision headers a client without the seal could send.
fn forgeries() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("bare variant name", vec!["canary".to_owned()]),
        ("upper case", vec!["CANARY".to_owned()]),
        ("upper-case sealed", vec![format!("CANARY.{SEAL}")]),
        (
            "two values",
            vec!["canary".to_owned(), format!("canary.{OLD}")],
        ),
        ("retired seal", vec![format!("canary.{OLD}")]),
        ("another spec's seal", vec![format!("canary.{OTHER}")]),
        ("seal alone", vec![SEAL.to_owned()]),
    ]
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

async fn send(envoy: &Envoy, values: &[String], extra: &[(&str, &str)]) -> Reply {
    let mut headers: Vec<(&str, &str)> = values
        .iter()
        .map(|v| ("x-canary-variant", v.as_str()))
        .collect();
    headers.extend_from_slice(extra);
    get(&client(), &envoy.url("/"), &headers)
        .await
        .unwrap_or_else(|e| panic!("{values:?}: {e}"))
}

/// Every forgery reaches the baseline, and the upstream sees no decision header.
async fn assert_forgeries_reach_the_baseline(envoy: &Envoy, state: &str) {
    for (label, values) in forgeries() {
        for user in [None, Some("user-7")] {
            let extra: Vec<(&str, &str)> = user.iter().map(|u| ("x-user-id", *u)).collect();
            let reply = send(envoy, &values, &extra).await;
            assert_eq!(reply.status, 200, "{state}, {label}: {reply:?}");
            assert_eq!(
                reply.upstream.as_deref(),
                Some("stable"),
                "{state}, {label} {values:?}: to the baseline"
            );
            assert_eq!(
                reply.seen_variant.as_deref(),
                Some(""),
                "{state}, {label}: the upstream sees no decision header"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_filter_configured_forgeries_reach_the_baseline() {
    let upstreams = upstreams().await;
    let envoy = Envoy::builder()
        .variant("stable", &upstreams.stable)
        .variant("canary", &upstreams.canary)
        .sealed_routes(&[SEAL])
        .plugin_config(&plugin_config(SEAL, 0))
        .start()
        .await;
    assert_forgeries_reach_the_baseline(&envoy, "filter configured").await;

    // Even the right sealed value, sent by a client, is replaced by the filter's decision.
    let sealed = [format!("canary.{SEAL}")];
    let reply = send(&envoy, &sealed, &[("x-user-id", "user-1")]).await;
    assert_eq!(reply.upstream.as_deref(), Some("stable"), "{reply:?}");
    assert_eq!(reply.decision.as_deref(), Some("web;stable;hash"));

    // Header names are case-insensitive: the filter removes the header however the client
    // wrote its name (Envoy presents names in lowercase).
    let reply = raw_get(
        &envoy,
        &[
            format!("X-Canary-Variant: canary.{SEAL}"),
            format!("X-CANARY-VARIANT: canary.{SEAL}"),
            "x-user-id: user-1".to_owned(),
        ],
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\r\nx-upstream: stable\r\n"), "{reply}");
    assert!(reply.contains("\r\nx-seen-variant: \r\n"), "{reply}");

    // A decided request reaches its variant; neither the upstream nor the debug header sees
    // the seal.
    let reply = send(&envoy, &[], &[("x-canary", "always")]).await;
    assert_eq!(reply.upstream.as_deref(), Some("canary"), "{reply:?}");
    assert_eq!(reply.seen_variant.as_deref(), Some(""), "{reply:?}");
    assert_eq!(reply.decision.as_deref(), Some("web;canary;rule:qa"));
    let stats = envoy.prometheus().await;
    assert!(!stats.contains(SEAL), "no metric carries the seal");
    assert!(
        stats.contains("canary_variant=\"canary\""),
        "the decision is counted under the bare variant name"
    );
    assert!(!envoy.log().contains(SEAL), "the seal is never logged");
    assert_eq!(filter_failures(&envoy.log()), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_filter_forgeries_reach_the_baseline() {
    let upstreams = upstreams().await;
    let envoy = Envoy::builder()
        .variant("stable", &upstreams.stable)
        .variant("canary", &upstreams.canary)
        .routing(Routing::Plain)
        .sealed_routes(&[SEAL])
        .start()
        .await;
    assert_forgeries_reach_the_baseline(&envoy, "no filter").await;
    let reply = raw_get(&envoy, &["X-CANARY-VARIANT: CANARY".to_owned()]).await;
    assert!(reply.contains("\r\nx-upstream: stable\r\n"), "{reply}");
    assert!(reply.contains("\r\nx-seen-variant: \r\n"), "{reply}");
    // The routes do work: the sealed value, which only the filter knows, reaches the variant.
    let reply = send(&envoy, &[format!("canary.{SEAL}")], &[]).await;
    assert_eq!(reply.upstream.as_deref(), Some("canary"), "{reply:?}");
    assert_eq!(reply.seen_variant.as_deref(), Some(""), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_module_failing_to_load_open_forgeries_reach_the_baseline() {
    let upstreams = upstreams().await;
    // The module is fetched from the stable upstream, which answers with its name: the bytes do
    // not match the sha256 (nor are they a module), so the filter never loads, and the ECDS
    // resource's `failure_policy: FAIL_OPEN` lets requests through undecided.
    let envoy = Envoy::builder()
        .variant("stable", &upstreams.stable)
        .variant("canary", &upstreams.canary)
        .sealed_routes(&[SEAL])
        .plugin_config(&plugin_config(SEAL, 0))
        .module_server(upstreams.stable.addr)
        .remote_module(
            &format!("http://{}/canary_filter.wasm", upstreams.stable.addr),
            &"0".repeat(64),
        )
        .start()
        .await;
    let reply = send(&envoy, &[], &[("x-canary", "always")]).await;
    assert_eq!(reply.decision, None, "no filter ran: {reply:?}");
    assert_eq!(reply.status, 200, "failing open: {reply:?}");
    assert_forgeries_reach_the_baseline(&envoy, "module failing open").await;
    let reply = send(&envoy, &[format!("canary.{SEAL}")], &[]).await;
    assert_eq!(reply.upstream.as_deref(), Some("canary"), "{reply:?}");
    assert_eq!(reply.seen_variant.as_deref(), Some(""), "{reply:?}");
}

/// Sends `GET /` with these header lines, written exactly so, and returns the response head.
async fn raw_get(envoy: &Envoy, headers: &[String]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = "GET / HTTP/1.1\r\nhost: web\r\nconnection: close\r\n".to_owned();
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(envoy.listener())
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    text.split("\r\n\r\n").next().unwrap_or_default().to_owned() + "\r\n"
}

/// Requests from many users until stopped; each must be served 200 by the variant the filter
/// decided (named in the debug header).
struct CheckedLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    misrouted: Arc<AtomicU64>,
    decided: Arc<[AtomicU64; 2]>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl CheckedLoad {
    fn start(envoy: &Envoy, workers: usize) -> CheckedLoad {
        let load = CheckedLoad {
            stop: Arc::default(),
            sent: Arc::default(),
            failed: Arc::default(),
            misrouted: Arc::default(),
            decided: Arc::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..workers)
            .map(|worker| {
                let stop = Arc::clone(&load.stop);
                let sent = Arc::clone(&load.sent);
                let failed = Arc::clone(&load.failed);
                let misrouted = Arc::clone(&load.misrouted);
                let decided = Arc::clone(&load.decided);
                let url = envoy.url("/");
                tokio::spawn(async move {
                    let client = client();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) && i < 100_000 {
                        i += 1;
                        let user = format!("rotation-{worker}-{}", i % 500);
                        let reply = get(&client, &url, &[("x-user-id", &user)]).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        let Ok(reply) = reply.map_err(|_| failed.fetch_add(1, Ordering::Relaxed))
                        else {
                            continue;
                        };
                        if reply.status != 200 {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        let variant = reply
                            .decision
                            .as_deref()
                            .and_then(|d| d.split(';').nth(1))
                            .unwrap_or("none");
                        match variant {
                            "stable" => decided[0].fetch_add(1, Ordering::Relaxed),
                            "canary" => decided[1].fetch_add(1, Ordering::Relaxed),
                            _ => 0,
                        };
                        if reply.upstream.as_deref() != Some(variant)
                            || reply.seen_variant.as_deref() != Some("")
                        {
                            misrouted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        CheckedLoad { tasks, ..load }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until `more` requests were sent since `since` (10 s at most).
    async fn wait_for(&self, since: u64, more: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.sent() < since + more && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops and returns (sent, failed, misrouted, decided stable, decided canary).
    async fn stop(self) -> (u64, u64, u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            load(&self.sent),
            load(&self.failed),
            load(&self.misrouted),
            load(&self.decided[0]),
            load(&self.decided[1]),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seal_rotation_under_load_misroutes_and_fails_nothing() {
    let upstreams = upstreams().await;
    let envoy = Envoy::builder()
        .variant("stable", &upstreams.stable)
        .variant("canary", &upstreams.canary)
        .sealed_routes(&[OLD])
        .plugin_config(&plugin_config(OLD, 50))
        .start()
        .await;
    let load = CheckedLoad::start(&envoy, 8);
    load.wait_for(0, 300).await;

    // 1. The routes accept the new seal too; the filter still writes the old one.
    envoy.push_sealed_routes(&[OLD, SEAL]).await;
    load.wait_for(load.sent(), 300).await;
    // 2. The filter writes the new seal; the routes accept both.
    let update = envoy.push_config(&plugin_config(SEAL, 50)).await;
    assert_eq!(update.rejected, 0, "the new seal is accepted");
    load.wait_for(load.sent(), 300).await;
    // 3. The old seal is dropped.
    envoy.push_sealed_routes(&[SEAL]).await;
    load.wait_for(load.sent(), 300).await;

    let (sent, failed, misrouted, stable, canary) = load.stop().await;
    assert!(sent >= 1200, "enough traffic across the rotation: {sent}");
    assert_eq!(failed, 0, "no request failed of {sent}");
    assert_eq!(misrouted, 0, "no request misrouted of {sent}");
    assert!(
        stable > 0 && canary > 0,
        "both variants decided: {stable} stable, {canary} canary"
    );

    assert_eq!(filter_failures(&envoy.log()), Vec::<&str>::new());
}
