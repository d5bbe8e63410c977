//! The decision core and configuration compilation, natively: `cargo bench -p canary-filter`.
//!
//! The configurations are the ones the Envoy benchmark (`tests/src/bench.rs`) loads: two
//! variants with the identity in a header, and 1,000 routes with ten targeting rules on the
//! matched route, none of which the request meets. Two more measure a query rule and a signed
//! identity cookie: verified on a request, and signed for a `Set-Cookie`.

#![allow(clippy::panic)]

use std::hint::black_box;

use canary_filter::table::{RequestHeaders, IDENTITY_BYTES};
use canary_filter::RoutingTable;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

const MATCHED_ROUTE: usize = 500;

fn two_variants() -> Value {
    json!({
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
            "stickiness": {
                "keys": [{ "header": "x-user-id" }],
                "cookie": { "name": "canary_id", "maxAge": 2_592_000 },
                "salt": "web-2026-11",
            },
        }]
    })
}

/// Two variants, a query rule and a signed identity cookie.
fn query_and_signed() -> Value {
    json!({
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
            "targeting": [
                { "name": "qa", "query": "canary", "equals": "always", "variant": "canary" },
            ],
            "stickiness": {
                "cookie": { "name": "canary_id", "secret": "Qm3_vT8-xL2nR5pK9wZ4bY7c" },
            },
        }]
    })
}

fn many_routes() -> Value {
    let routes: Vec<Value> = (0..1000)
        .map(|i| {
            let targeting = if i == MATCHED_ROUTE {
                json!([
                    { "name": "optout", "cookie": "canary", "equals": "never", "variant": "stable" },
                    { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
                    { "name": "rings", "header": "x-user-group", "in": ["beta", "staff", "dogfood"], "variant": "canary" },
                    { "name": "builds", "header": "x-build", "prefix": "rc-", "variant": "canary" },
                    { "name": "tenants", "header": "x-tenant", "matches": "t-[0-9]{1,6}", "variant": "canary" },
                    { "name": "debug", "header": "x-debug-canary", "present": true, "variant": "canary" },
                    { "name": "optin", "cookie": "canary", "equals": "always", "variant": "canary" },
                    { "name": "region", "header": "x-region", "equals": "eu-west-9", "variant": "canary" },
                    { "name": "devices", "header": "x-device", "in": ["test-rig", "lab"], "variant": "canary" },
                    { "name": "beta-cookie", "cookie": "beta", "present": true, "variant": "canary" },
                ])
            } else {
                json!([
                    { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
                    { "name": "optout", "cookie": "canary", "equals": "never", "variant": "stable" },
                ])
            };
            json!({
                "name": format!("svc-{i}"),
                "match": { "hosts": [format!("svc-{i}.bench.svc.cluster.local")], "pathPrefixes": ["/"] },
                "variants": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
                "targeting": targeting,
                "stickiness": {
                    "keys": [{ "header": "x-user-id" }, { "cookie": "session_id" }],
                    "cookie": { "name": "canary_id" },
                },
            })
        })
        .collect();
    json!({ "routes": routes })
}

/// A request's headers, held the way the filter holds them after one host call: proxy-wasm's
/// serialised header map, read in place.
fn request(headers: &[(&str, &[u8])]) -> RequestHeaders {
    RequestHeaders::from_pairs(headers)
}

fn parse(config: &Value) -> RoutingTable {
    match canary_filter::parse(config.to_string().as_bytes()) {
        Ok(table) => table,
        Err(errors) => panic!("benchmark configuration rejected: {errors}"),
    }
}

fn random(buf: &mut [u8; IDENTITY_BYTES]) -> bool {
    buf.fill(0x5a);
    true
}

fn decide(c: &mut Criterion) {
    let two = parse(&two_variants());
    let many = parse(&many_routes());
    let identified = request(&[
        (":authority", b"web.example.com"),
        (":path", b"/products/42"),
        ("x-user-id", b"user-42"),
    ]);
    let anonymous = request(&[(":authority", b"web.example.com"), (":path", b"/")]);
    let matched = request(&[
        (":authority", b"svc-500.bench.svc.cluster.local"),
        (":path", b"/products/42"),
        ("x-user-id", b"user-42"),
    ]);
    let mut group = c.benchmark_group("decide");
    group.bench_function("2-variants-header", |b| {
        b.iter(|| two.decide(black_box(&identified), || 0, random))
    });
    group.bench_function("1000-routes-10-rules", |b| {
        b.iter(|| many.decide(black_box(&matched), || 0, random))
    });
    group.bench_function("anonymous-new-identity", |b| {
        b.iter(|| two.decide(black_box(&anonymous), || 0, random))
    });

    let signed = parse(&query_and_signed());
    let Some(cookie) = signed
        .routes
        .first()
        .and_then(|r| r.stickiness.cookie.as_ref())
    else {
        panic!("the identity cookie is configured");
    };
    let identity = "5a".repeat(IDENTITY_BYTES);
    let set_cookie = cookie.set_cookie(&identity);
    let value = set_cookie.split(';').next().unwrap_or_default();
    let queried = request(&[
        (":authority", b"web.example.com"),
        (":path", b"/products/42?ref=mail&canary=always"),
    ]);
    let returning = request(&[
        (":authority", b"web.example.com"),
        (":path", b"/products/42?ref=mail"),
        ("cookie", value.as_bytes()),
    ]);
    group.bench_function("query-rule", |b| {
        b.iter(|| signed.decide(black_box(&queried), || 0, random))
    });
    group.bench_function("signed-cookie-verified", |b| {
        b.iter(|| signed.decide(black_box(&returning), || 0, random))
    });
    group.bench_function("signed-set-cookie", |b| {
        b.iter(|| cookie.with_set_cookie(black_box(&identity), |v| v.len()))
    });
    group.finish();
}

fn configure(c: &mut Criterion) {
    let two = two_variants().to_string();
    let many = many_routes().to_string();
    let mut group = c.benchmark_group("configure");
    group.bench_function("1-route", |b| {
        b.iter(|| canary_filter::parse(black_box(two.as_bytes())))
    });
    group.sample_size(20);
    group.bench_function("1000-routes", |b| {
        b.iter(|| canary_filter::parse(black_box(many.as_bytes())))
    });
    group.finish();
}

criterion_group!(benches, decide, configure);
criterion_main!(benches);
