//! The route is picked again after the filter writes or removes the decision header, wherever
//! the filter sits in the chain, although the filter asks nothing of Envoy for it: Envoy's
//! proxy-wasm host clears the route cache itself when a filter changes request headers.
//!
//! Istio puts a WasmPlugin in the AUTHN, AUTHZ or STATS phase, or an EnvoyFilter's
//! `INSERT_BEFORE envoy.filters.http.router`: in the STATS phase and before the router, filters
//! such as CORS and fault injection run first, and both read the route (for their per-route
//! configuration), so Envoy has picked and cached it before the decision header is written.
//! Each route here carries a CORS policy that names it in `access-control-expose-headers`, so
//! a response shows both the route CORS saw and, by the upstream that answered, the route the
//! router used.

use canary_e2e::{client, Envoy, Upstream};
use serde_json::{json, Value};

const CORS: &str = "envoy.filters.http.cors";
const FAULT: &str = "envoy.filters.http.fault";

fn config() -> String {
    json!({
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 100 }, { "name": "canary", "weight": 0 } ],
            "targeting": [
                { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" }
            ]
        }]
    })
    .to_string()
}

fn cors_filter() -> Value {
    json!({ "name": CORS, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
    } })
}

fn fault_filter() -> Value {
    json!({ "name": FAULT, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    } })
}

/// A CORS policy for the routes to `variant`: any origin, and the variant's name exposed.
fn cors_policy(variant: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{ "safe_regex": { "regex": ".*" } }],
        "expose_headers": format!("x-route-{variant}"),
    })
}

/// A fault policy that never fires, so that the fault filter reads the route and does nothing.
fn fault_policy() -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        "abort": { "http_status": 503, "percentage": { "numerator": 0 } },
    })
}

struct Setup {
    envoy: Envoy,
    _stable: Upstream,
    _canary: Upstream,
}

async fn setup(before: Vec<Value>, after: Vec<Value>) -> Setup {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let mut builder = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config())
        .filters_before(before)
        .filters_after(after);
    for variant in ["stable", "canary"] {
        builder = builder
            .route_filter_config(variant, CORS, cors_policy(variant))
            .route_filter_config(variant, FAULT, fault_policy());
    }
    Setup {
        envoy: builder.start().await,
        _stable: stable,
        _canary: canary,
    }
}

/// The route CORS saw (the variant its policy exposes) and the upstream that answered.
async fn send(envoy: &Envoy, headers: &[(&str, &str)]) -> (String, String) {
    let mut request = client()
        .get(envoy.url("/"))
        .header("origin", "https://client.example");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let cors_saw = header("access-control-expose-headers")
        .trim_start_matches("x-route-")
        .to_owned();
    (cors_saw, header(canary_e2e::upstream::UPSTREAM_HEADER))
}

/// STATS phase and `INSERT_BEFORE envoy.filters.http.router`: CORS and fault run first and pick
/// the route from the request as the client sent it; the router still routes on the decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_uses_the_decision_after_filters_that_picked_the_route_first() {
    let s = setup(vec![cors_filter(), fault_filter()], vec![]).await;

    // No decision header yet when CORS ran: it saw the default route, to stable.
    let targeted = send(&s.envoy, &[("x-canary", "always")]).await;
    assert_eq!(
        targeted,
        ("stable".to_owned(), "canary".to_owned()),
        "(route CORS saw, upstream): the route was picked before the decision, and again after"
    );

    // A forged decision header picked the canary route for CORS; the filter removed it and
    // decided stable, and the router followed the filter, not the stale route.
    let forged = send(&s.envoy, &[("x-canary-variant", "canary")]).await;
    assert_eq!(forged, ("canary".to_owned(), "stable".to_owned()));

    let plain = send(&s.envoy, &[]).await;
    assert_eq!(plain, ("stable".to_owned(), "stable".to_owned()));
}

/// AUTHN and AUTHZ phases: the filter runs before CORS and fault, which see the decided route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_after_the_filter_see_the_decided_route() {
    let s = setup(vec![], vec![cors_filter(), fault_filter()]).await;
    let targeted = send(&s.envoy, &[("x-canary", "always")]).await;
    assert_eq!(targeted, ("canary".to_owned(), "canary".to_owned()));
    let forged = send(&s.envoy, &[("x-canary-variant", "canary")]).await;
    assert_eq!(forged, ("stable".to_owned(), "stable".to_owned()));
}
