//! The two builds decide alike: the same 10,000 users, sent through an Envoy running the
//! proxy-wasm filter and one running the native dynamic module, get the same route, variant and
//! reason from both. The mix covers every kind of decision: identity headers and cookies, the
//! identity cookie, targeting rules of each predicate on headers and cookies, paths of a second
//! route and paths no route matches, client-sent decision headers, and clients with no identity
//! (a new random identity, so only its reason and its consistency are compared).

use canary_e2e::{client, concurrently, get, Build, Envoy, Reply, Upstream};
use canary_filter::RoutingTable;

const USERS: usize = 10_000;

fn config() -> String {
    serde_json::json!({
        "debugHeader": true,
        "routes": [
            {
                "name": "api",
                "match": { "pathPrefixes": ["/api/"] },
                "variants": [
                    { "name": "stable", "weight": 62.5 },
                    { "name": "canary", "weight": 30 },
                    { "name": "beta", "weight": 7.5 }
                ],
                "targeting": [
                    { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
                    { "name": "rings", "header": "x-user-group", "in": ["beta", "staff"], "variant": "beta" },
                    { "name": "eu", "header": "x-tenant", "matches": "^eu-[0-9]+$", "variant": "canary" },
                    { "name": "internal", "header": "x-tenant", "prefix": "int-", "variant": "stable" },
                    { "name": "optout", "cookie": "canary", "equals": "never", "variant": "stable" },
                    { "name": "debug", "header": "x-debug", "present": true, "variant": "beta" }
                ],
                "stickiness": {
                    "keys": [ { "header": "x-user-id" }, { "cookie": "session_id" } ],
                    "cookie": { "name": "canary_id", "maxAge": 3600 },
                    "salt": "differential-api"
                }
            },
            {
                "name": "web",
                "match": { "pathPrefixes": ["/web/"] },
                "variants": [ { "name": "stable", "weight": 80 }, { "name": "canary", "weight": 20 } ],
                "stickiness": { "keys": [ { "header": "x-user-id" } ], "cookie": { "name": "web_id" } }
            }
        ]
    })
    .to_string()
}

/// One user's request: its path and headers.
struct Request {
    path: String,
    headers: Vec<(&'static str, String)>,
}

/// User `i`'s request: `i % 12` (and `i % 24`) picks the kind of decision.
fn request(i: usize) -> Request {
    let id = format!("user-{i}");
    let (path, headers): (&str, Vec<(&str, String)>) = match i % 12 {
        0..=3 => ("/api/items", vec![("x-user-id", id)]),
        4 => (
            "/api/items",
            vec![("cookie", format!("a=1; session_id={id}"))],
        ),
        5 => (
            "/api/items",
            vec![("cookie", format!("canary_id={i:032x}; b=2"))],
        ),
        6 => (
            "/api/items",
            vec![
                ("x-user-id", id),
                ("x-user-group", ["beta", "staff", "ops"][i % 3].to_owned()),
            ],
        ),
        7 => (
            "/api/items",
            vec![
                ("x-user-id", id),
                (
                    "x-tenant",
                    format!("{}-{}", ["eu", "int", "us"][i % 3], i % 100),
                ),
            ],
        ),
        8 => (
            "/api/items",
            vec![
                ("x-user-id", id),
                ("cookie", format!("canary={}", ["never", "always"][i % 2])),
                ("x-canary-variant", "beta".to_owned()),
            ],
        ),
        9 if i.is_multiple_of(2) => (
            "/api/items",
            vec![("x-user-id", id), ("x-canary", "always".to_owned())],
        ),
        9 => (
            "/api/items",
            vec![("x-user-id", id), ("x-debug", "1".to_owned())],
        ),
        10 => ("/web/home", vec![("x-user-id", id)]),
        _ if i % 24 == 11 => ("/other", vec![("x-user-id", id)]),
        _ => ("/api/items", Vec::new()),
    };
    Request {
        path: path.to_owned(),
        headers,
    }
}

/// What one build decided for each user, in order.
async fn decisions(envoy: &Envoy) -> Vec<Reply> {
    let http = client();
    let url = envoy.url("");
    concurrently((0..USERS).collect(), 32, |i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let request = request(i);
            let headers: Vec<(&str, &str)> = request
                .headers
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            get(&http, &format!("{url}{}", request.path), &headers)
                .await
                .unwrap_or_else(|e| panic!("request {i} failed: {e}"))
        }
    })
    .await
}

/// The identity cookie `name` the reply sets, if any.
fn issued(reply: &Reply, name: &str) -> Option<String> {
    reply.set_cookies.iter().find_map(|cookie| {
        let (pair, _) = cookie.split_once(';').unwrap_or((cookie, ""));
        pair.strip_prefix(&format!("{name}=")).map(str::to_owned)
    })
}

/// For a reply to a request without identity: the route's variant for the identity cookie it
/// was issued.
fn hashed_issued(table: &RoutingTable, reply: &Reply) -> Option<String> {
    let route = table.routes.iter().find(|r| r.name == "api")?;
    let identity = issued(reply, "canary_id")?;
    Some(
        route.variants[route.assign(identity.as_bytes())]
            .name
            .clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_filter_and_the_dynamic_module_decide_alike_for_10000_users() {
    let upstreams = [
        Upstream::start("stable").await,
        Upstream::start("canary").await,
        Upstream::start("beta").await,
    ];
    let config = config();
    let table = canary_filter::parse(config.as_bytes()).expect("valid config");
    let mut replies = Vec::new();
    for build in Build::ALL {
        let envoy = Envoy::builder()
            .build(build)
            .variant("stable", &upstreams[0])
            .variant("canary", &upstreams[1])
            .variant("beta", &upstreams[2])
            .plugin_config(&config)
            .start()
            .await;
        replies.push(decisions(&envoy).await);
    }
    let [wasm, dynamic] = replies.as_slice() else {
        unreachable!("two builds")
    };

    let mut reasons = std::collections::BTreeMap::new();
    for (i, (w, d)) in wasm.iter().zip(dynamic).enumerate() {
        assert_eq!((w.status, d.status), (200, 200), "user {i}: {w:?} {d:?}");
        let reason = w
            .decision
            .as_deref()
            .map_or("none", |d| d.rsplit(';').next().unwrap_or_default());
        *reasons
            .entry(reason.split(':').next().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
        if reason == "new" {
            // A random identity each: the same kind of decision, each consistent with the
            // identity it issued.
            assert!(
                d.decision.as_deref().is_some_and(|d| d.ends_with(";new")),
                "user {i}: {w:?} {d:?}"
            );
            for reply in [w, d] {
                assert_eq!(
                    reply.upstream,
                    hashed_issued(&table, reply),
                    "user {i}: {reply:?}"
                );
            }
            continue;
        }
        assert_eq!(
            (&w.upstream, &w.seen_variant, &w.decision),
            (&d.upstream, &d.seen_variant, &d.decision),
            "user {i} ({} {:?})",
            request(i).path,
            request(i).headers
        );
        assert_eq!(
            issued(w, "canary_id").is_some(),
            issued(d, "canary_id").is_some(),
            "user {i}"
        );
    }
    // Every kind of decision was in the mix.
    eprintln!("decisions by reason: {reasons:?}");
    for reason in ["hash", "rule", "new", "none"] {
        assert!(
            reasons.get(reason).is_some_and(|n| *n >= 100),
            "{reason}: {reasons:?}"
        );
    }
}
