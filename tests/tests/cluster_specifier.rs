//! The dynamic module as a route cluster specifier in a real Envoy: every request goes to the
//! cluster of the variant the decision core picks for it, requests no route matches to the
//! default cluster, the decision counters count them, a configuration that needs the response
//! is refused with each reason at its path, and a panic sends the request to the default
//! cluster.

use std::collections::HashMap;

use canary_e2e::envoy::{specifier_config, Routing};
use canary_e2e::{client, concurrently, dynmod_dir, dynmod_probe_dir, get, Envoy, Reply, Upstream};
use canary_filter::{Reason, RequestHeaders, RoutingTable};

const MODULE: &str = "canary_router";

fn routing() -> String {
    serde_json::json!({
        "routes": [
            {
                "name": "web",
                "match": { "pathPrefixes": ["/web/"] },
                "variants": [ { "name": "stable", "weight": 80 }, { "name": "canary", "weight": 20 } ],
                "targeting": [
                    { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
                    { "name": "optout", "query": "canary", "equals": "never", "variant": "stable" }
                ],
                "stickiness": {
                    "keys": [ { "header": "x-user-id" }, { "cookie": "session_id" } ],
                    "salt": "web-2026-12"
                }
            },
            {
                "name": "api",
                "match": { "pathPrefixes": ["/api/"] },
                "variants": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
                "stickiness": { "keys": [ { "header": "x-user-id" } ] }
            }
        ]
    })
    .to_string()
}

struct Setup {
    envoy: Envoy,
    _stable: Upstream,
    _canary: Upstream,
}

async fn setup(module_dir: &std::path::Path, routing: &str) -> Setup {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .dynamic_module(module_dir, MODULE)
        .routing(Routing::ClusterSpecifier {
            module: MODULE.to_owned(),
            specifier_config: specifier_config(routing, "stable"),
        })
        .start()
        .await;
    Setup {
        envoy,
        _stable: stable,
        _canary: canary,
    }
}

/// One request: its path and headers.
#[derive(Clone)]
struct Request {
    path: String,
    headers: Vec<(&'static str, String)>,
}

/// The route, variant and reason the decision core gives `request`; `None` for no route.
fn core(table: &RoutingTable, request: &Request) -> Option<(String, String, Reason)> {
    let mut headers = vec![
        (":authority".to_owned(), b"localhost".to_vec()),
        (":path".to_owned(), request.path.as_bytes().to_vec()),
    ];
    for (name, value) in &request.headers {
        headers.push(((*name).to_owned(), value.as_bytes().to_vec()));
    }
    let decision = table.decide(&RequestHeaders::from_pairs(&headers), || 0, |_| true)?;
    Some((
        decision.route.name.clone(),
        decision.variant.name.clone(),
        decision.reason,
    ))
}

async fn send(envoy: &Envoy, requests: &[Request]) -> Vec<Reply> {
    let client = client();
    concurrently(requests.to_vec(), 16, |request| {
        let client = client.clone();
        let url = envoy.url(&request.path);
        async move {
            let headers: Vec<(&str, &str)> = request
                .headers
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            get(&client, &url, &headers)
                .await
                .unwrap_or_else(|e| panic!("{} failed: {e}", request.path))
        }
    })
    .await
}

fn requests() -> Vec<Request> {
    let mut requests = Vec::new();
    let mut add = |path: &str, headers: Vec<(&'static str, String)>| {
        requests.push(Request {
            path: path.to_owned(),
            headers,
        });
    };
    for i in 0..1000 {
        add("/web/page", vec![("x-user-id", format!("user-{i}"))]);
    }
    for i in 0..200 {
        add(
            "/web/page",
            vec![("cookie", format!("theme=dark; session_id=s-{i}"))],
        );
    }
    for i in 0..300 {
        add("/api/items", vec![("x-user-id", format!("user-{i}"))]);
    }
    for i in 0..50 {
        let user = format!("user-{i}");
        add(
            "/web/page",
            vec![("x-canary", "always".into()), ("x-user-id", user.clone())],
        );
        add("/web/page?canary=never", vec![("x-user-id", user)]);
    }
    for i in 0..100 {
        // A decision header from the client steers nothing: the route trusts no incoming one.
        add(
            "/web/page",
            vec![
                ("x-canary-variant", "canary".into()),
                ("x-user-id", format!("forger-{i}")),
            ],
        );
        add("/other", vec![("x-user-id", format!("user-{i}"))]);
    }
    requests
}

/// Sends `requests` through an Envoy deciding with `routing`: each must go to the cluster of
/// the variant the decision core gives it (the default cluster for no route), every variant of
/// `routes` must be served, and each decision counter must count what the core decided.
async fn decided_as_the_core_decides(routing: &str, requests: &[Request], routes: &[&str]) {
    let setup = setup(&dynmod_dir(), routing).await;
    let table = canary_filter::parse(routing.as_bytes()).expect("valid routing");
    let replies = send(&setup.envoy, requests).await;

    let mut counted: HashMap<String, u64> = HashMap::new();
    let mut served: HashMap<(String, String), u64> = HashMap::new();
    let mut reasons: HashMap<&str, u64> = HashMap::new();
    for (request, reply) in requests.iter().zip(&replies) {
        assert_eq!(reply.status, 200, "{}: {reply:?}", request.path);
        let upstream = reply.upstream.clone().expect("x-upstream");
        match core(&table, request) {
            Some((route, variant, reason)) => {
                assert_eq!(upstream, variant, "{} {:?}", request.path, request.headers);
                let metric = canary_filter::metrics::Metric::Decision(reason);
                *counted.entry(metric.name(&route, &variant)).or_default() += 1;
                *served.entry((route, variant)).or_default() += 1;
                *reasons.entry(reason.label()).or_default() += 1;
            }
            // No route: the default cluster.
            None => assert_eq!(upstream, "stable", "{}", request.path),
        }
    }
    // Both variants of every route are served, so the comparison above tells them apart.
    for route in routes {
        for variant in ["stable", "canary"] {
            let n = served.get(&((*route).into(), variant.into())).copied();
            assert!(n.unwrap_or(0) >= 20, "{route}/{variant}: {served:?}");
        }
    }
    for (name, expected) in &counted {
        let got = setup
            .envoy
            .counted(std::slice::from_ref(name), *expected)
            .await;
        assert_eq!(got, *expected, "{name}");
    }
    assert!(reasons.contains_key("rule"), "{reasons:?}");
    assert_eq!(setup.envoy.counter("canary.panic").await, Some(0));
    let log = setup.envoy.log();
    let accepted = format!(
        "cluster specifier configuration accepted: {} route(s)",
        routes.len()
    );
    assert!(log.contains(&accepted), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_goes_to_the_cluster_the_decision_core_picks() {
    decided_as_the_core_decides(&routing(), &requests(), &["web", "api"]).await;
}

const SEAL: &str = "0123456789abcdef0123456789abcdef";

/// A route that trusts incoming decisions and reads its identity from a header or a cookie.
fn lanes_and_cookies() -> String {
    serde_json::json!({
        "seal": SEAL,
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 60 }, { "name": "canary", "weight": 40 } ],
            "targeting": [ { "name": "beta", "cookie": "beta", "present": true, "variant": "canary" } ],
            "stickiness": { "keys": [ { "header": "x-user-id" }, { "cookie": "sid" } ] },
            "trustIncoming": true
        }]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_cookie_headers_and_lanes_decide_as_the_core_does() {
    let table = canary_filter::parse(lanes_and_cookies().as_bytes()).expect("valid routing");
    let lane = format!("canary.{SEAL}");
    let mut requests = Vec::new();
    let mut add = |headers: Vec<(&'static str, String)>| {
        requests.push(Request {
            path: "/page".to_owned(),
            headers,
        });
    };
    for i in 0..300 {
        add(vec![("x-user-id", format!("user-{i}"))]);
    }
    for i in 0..200 {
        // The identity is in the second `cookie` header.
        add(vec![
            ("cookie", "theme=dark".into()),
            ("cookie", format!("sid=s-{i}")),
        ]);
    }
    for i in 0..50 {
        let user = format!("user-{i}");
        add(vec![
            ("cookie", "theme=dark".into()),
            ("cookie", "beta=1".into()),
            ("x-user-id", user.clone()),
        ]);
        add(vec![
            ("x-canary-variant", lane.clone()),
            ("x-user-id", user.clone()),
        ]);
        // Two values, or a bare variant: no lane, the user is hashed.
        add(vec![
            ("x-canary-variant", lane.clone()),
            ("x-canary-variant", lane.clone()),
            ("x-user-id", user.clone()),
        ]);
        add(vec![
            ("x-canary-variant", "canary".into()),
            ("x-user-id", user),
        ]);
    }
    let kept = requests
        .iter()
        .filter(|r| core(&table, r).is_some_and(|(_, _, reason)| reason == Reason::Lane))
        .count();
    assert_eq!(kept, 50, "one lane per user is kept");
    decided_as_the_core_decides(&lanes_and_cookies(), &requests, &["web"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_are_split_by_the_weights() {
    let setup = setup(&dynmod_dir(), &routing()).await;
    let requests: Vec<Request> = (0..400)
        .map(|_| Request {
            path: "/api/items".to_owned(),
            headers: Vec::new(),
        })
        .collect();
    let replies = send(&setup.envoy, &requests).await;
    let canary = replies
        .iter()
        .filter(|r| r.upstream.as_deref() == Some("canary"))
        .count();
    // 50/50 over 400 requests: 200 ± 5 standard deviations (10 each).
    assert!((150..=250).contains(&canary), "{canary} of 400 on canary");
    let new = setup
        .envoy
        .counted(
            &[
                "canary.route.api.variant.stable.decision.new".to_owned(),
                "canary.route.api.variant.canary.decision.new".to_owned(),
            ],
            400,
        )
        .await;
    assert_eq!(new, 400);
}

/// `envoy --mode validate` on a bootstrap whose route's cluster the module picks with
/// `specifier_config`.
fn validate(specifier_config: &str) -> canary_e2e::Validation {
    let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    Envoy::builder()
        .variant_at("stable", nowhere)
        .variant_at("canary", nowhere)
        .dynamic_module(&dynmod_dir(), MODULE)
        .routing(Routing::ClusterSpecifier {
            module: MODULE.to_owned(),
            specifier_config: specifier_config.to_owned(),
        })
        .validate()
}

/// A configuration Envoy must refuse, and the lines the module logs for it.
fn refused(specifier_config: &str) -> String {
    let validation = validate(specifier_config);
    assert!(!validation.accepted, "accepted: {}", validation.log);
    validation.log
}

#[test]
fn what_the_response_would_do_is_refused_at_its_path() {
    let routing = serde_json::json!({
        "debugHeader": true,
        "metrics": { "responses": true },
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
            "targeting": [
                { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary", "pin": true }
            ],
            "stickiness": { "keys": [], "cookie": { "name": "canary_id" } }
        }]
    })
    .to_string();
    let log = refused(&specifier_config(&routing, "stable"));
    for path in [
        "routing.debugHeader",
        "routing.metrics.responses",
        "routing.routes[0].stickiness.cookie",
        "routing.routes[0].targeting[0].pin",
    ] {
        assert!(
            log.contains(&format!(
                "cluster specifier configuration rejected: {path}: "
            )),
            "{path}: {log}"
        );
    }
}

#[test]
fn a_bad_configuration_is_refused_with_what_is_wrong() {
    let routing = routing();
    let routing: serde_json::Value = serde_json::from_str(&routing).expect("JSON");
    let cases = [
        (
            serde_json::json!({ "cluster": "variant-{variant}", "defaultCluster": "variant-stable",
                                "routing": routing, "extra": 1 })
            .to_string(),
            "rejected: $: unknown field `extra`",
        ),
        (
            serde_json::json!({ "cluster": "variant-stable", "defaultCluster": "variant-stable",
                                "routing": routing })
            .to_string(),
            "rejected: cluster: must contain {variant}",
        ),
        (
            serde_json::json!({ "cluster": "variant-{variant}", "defaultCluster": "",
                                "routing": routing })
            .to_string(),
            "rejected: defaultCluster: must not be empty",
        ),
        (
            specifier_config(
                r#"{"routes": [{"name": "web", "variants": [{"name": "stable", "weight": 90}]}]}"#,
                "stable",
            ),
            "rejected: routing.routes[0].variants: weights must sum to 100, not 90",
        ),
    ];
    for (config, expected) in cases {
        let log = refused(&config);
        assert!(log.contains(expected), "{expected}: {log}");
    }
    // The same bootstrap with a good configuration is accepted, so the refusals above are the
    // configurations'.
    let validation = validate(&specifier_config(&routing.to_string(), "stable"));
    assert!(validation.accepted, "{}", validation.log);
}

/// The request header that makes the `panic-probe` build panic.
const PANIC_PROBE: &str = "x-canary-panic-probe";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_sends_the_request_to_the_default_cluster_and_is_counted() {
    let setup = setup(&dynmod_probe_dir(), &routing()).await;
    let table = canary_filter::parse(routing().as_bytes()).expect("valid routing");
    // A user the core sends to the canary, so that the default cluster is seen to be taken.
    let user = (0..1000)
        .map(|i| format!("user-{i}"))
        .find(|user| {
            let request = Request {
                path: "/api/items".to_owned(),
                headers: vec![("x-user-id", user.clone())],
            };
            core(&table, &request).is_some_and(|(_, variant, _)| variant == "canary")
        })
        .expect("a canary user");
    let client = client();
    let url = setup.envoy.url("/api/items");
    let panicked = get(&client, &url, &[("x-user-id", &user), (PANIC_PROBE, "1")])
        .await
        .expect("served");
    assert_eq!(panicked.status, 200, "{panicked:?}");
    assert_eq!(panicked.upstream.as_deref(), Some("stable"), "{panicked:?}");
    assert_eq!(setup.envoy.counter("canary.panic").await, Some(1));
    let log = setup.envoy.log();
    assert!(
        log.contains(&format!(
            "[canary] panic #1 in on_cluster_specifier_select: {PANIC_PROBE} asked for a panic"
        )),
        "{log}"
    );
    // The next request is decided again.
    let next = get(&client, &url, &[("x-user-id", &user)])
        .await
        .expect("served");
    assert_eq!(next.upstream.as_deref(), Some("canary"), "{next:?}");
}

fn web(canary_weight: u32) -> String {
    serde_json::json!({ "routes": [{
        "name": "web",
        "variants": [
            { "name": "stable", "weight": 100 - canary_weight },
            { "name": "canary", "weight": canary_weight }
        ],
        "stickiness": { "keys": [ { "header": "x-user-id" } ], "salt": "web-2026-12" }
    }] })
    .to_string()
}

/// Each user's variant, as served; every request must succeed.
async fn served_to(envoy: &Envoy, users: &[String]) -> Vec<String> {
    let requests: Vec<Request> = users
        .iter()
        .map(|user| Request {
            path: "/".to_owned(),
            headers: vec![("x-user-id", user.clone())],
        })
        .collect();
    send(envoy, &requests)
        .await
        .into_iter()
        .map(|reply| {
            assert_eq!(reply.status, 200, "{reply:?}");
            reply.upstream.expect("x-upstream")
        })
        .collect()
}

fn core_variants(routing: &str, users: &[String]) -> Vec<String> {
    let table = canary_filter::parse(routing.as_bytes()).expect("valid routing");
    users
        .iter()
        .map(|user| {
            let request = Request {
                path: "/".to_owned(),
                headers: vec![("x-user-id", user.clone())],
            };
            core(&table, &request).expect("a route").1
        })
        .collect()
}

/// `canaryctl set-weight --target file:` on the RDS file that holds the route: Envoy takes the
/// new route configuration, every user then gets the variant the decision core gives at the new
/// weights, the canary's users stay on it as it grows, and the specifier's own fields stay as
/// they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_weight_on_the_route_file_moves_users_as_the_core_does() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .dynamic_module(&dynmod_dir(), MODULE)
        .routing(Routing::ClusterSpecifier {
            module: MODULE.to_owned(),
            specifier_config: specifier_config(&web(10), "stable"),
        })
        .routes_from_file()
        .start()
        .await;
    let users: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let before = served_to(&envoy, &users).await;
    assert_eq!(before, core_variants(&web(10), &users));

    let rds = envoy.rds_path();
    let stat = format!(
        "http.ingress.rds.{}.update_success",
        canary_e2e::envoy::FILE_ROUTES
    );
    let applied = envoy.stat(&stat).await.unwrap_or(0);
    canary_e2e::canaryctl::run(canaryctl::args::Command::SetWeight {
        target: canaryctl::args::TargetArg {
            target: format!("file:{}", rds.display()),
        },
        route: "web".to_owned(),
        weights: vec!["canary=50".to_owned()],
    })
    .await
    .expect("set-weight");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while envoy.stat(&stat).await.unwrap_or(0) <= applied {
        assert!(std::time::Instant::now() < deadline, "{}", envoy.log());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = served_to(&envoy, &users).await;
    assert_eq!(after, core_variants(&web(50), &users));
    for (user, (was, is)) in users.iter().zip(before.iter().zip(&after)) {
        assert!(was != "canary" || is == "canary", "{user} left the canary");
    }
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert!(moved >= 80, "only {moved} of 400 users moved to the canary");

    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rds).expect("read RDS file")).expect("JSON");
    let text = document
        .pointer("/resources/0/virtual_hosts/0/routes/0/route/inline_cluster_specifier_plugin/extension/typed_config/specifier_config/value")
        .and_then(serde_json::Value::as_str)
        .expect("the specifier's configuration");
    let specifier: serde_json::Value = serde_json::from_str(text).expect("JSON");
    assert_eq!(specifier["cluster"], "variant-{variant}");
    assert_eq!(specifier["defaultCluster"], "variant-stable");
    assert_eq!(
        specifier["routing"]["routes"][0]["variants"][1]["weight"],
        50
    );
}
