//! The bodies of the fuzz targets in `filter/fuzz/`, kept in the crate so that the replay of
//! the committed corpus (`tests/fuzz_corpus.rs`, part of `cargo test`) runs exactly the code
//! the fuzzer ran.
//!
//! Each function takes arbitrary bytes and must not panic; beyond that it asserts what has to
//! hold whatever the input, so that the fuzzer finds wrong answers as well as crashes. A broken
//! promise is reported the way the fuzzer and the test harness understand: a panic.
#![allow(clippy::panic)]

use std::rc::Rc;

use crate::assign::Weight;
use crate::config::{self, SameSite};
use crate::cookie::{self, IdentityCookie};
use crate::host::Host;
use crate::http::{Plugin, Stream, DEBUG_HEADER};
use crate::table::{RoutingTable, MAX_ROUTES, MAX_VARIANTS};
use crate::testing::MockHost;

/// Configuration parsing: any bytes as a plugin configuration, parsed by [`crate::parse`].
///
/// canaryctl parses the JSON it writes from the tree it read ([`config::read`]): that must give
/// the verdict the bytes themselves get, the same errors or the same table. An accepted
/// configuration is within the limits, its weights sum to 100 %, it still parses after being
/// decoded and serialized again, and it serves a request.
pub fn config(data: &[u8]) {
    let parsed = crate::parse(data);
    if let Ok(tree) = config::read(data) {
        let rewritten = crate::parse(tree.to_string().as_bytes());
        match (&parsed, &rewritten) {
            (Ok(table), Ok(again)) => assert_eq!(
                table_form(table),
                table_form(again),
                "the same document compiles to two tables"
            ),
            (Err(errors), Err(again)) => assert_eq!(errors, again, "two verdicts"),
            _ => panic!("two verdicts: {parsed:?} and, written back, {rewritten:?}"),
        }
    }
    let Ok(table) = parsed else {
        return;
    };
    check_table(&table);

    let written = config::decode(data)
        .map_err(|e| e.to_string())
        .and_then(|decoded| serde_json::to_vec(&decoded).map_err(|e| e.to_string()));
    match written.map(|bytes| crate::parse(&bytes).map(|_| ())) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("configuration rejected once written back: {e}"),
        Err(e) => panic!("accepted configuration does not decode and serialize: {e}"),
    }

    let host = MockHost::request(&[
        (":authority", "reviews.example.com:8080"),
        (":path", "/api/v1"),
        ("x-user-id", "user-1"),
        ("cookie", "session_id=s; canary_id=c"),
    ]);
    run_stream(&host, Rc::new(Plugin::new(table)), "200");
}

/// Cookie parsing: the first line is a cookie name, every other line a `cookie` header value.
///
/// A value found is a piece of one of the headers; any name the validator accepts renders a
/// `Set-Cookie` from which the same parser reads the identity back.
pub fn cookies(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let name = lines.next().unwrap_or_default();
    let headers: Vec<&[u8]> = lines.collect();
    if let Some(value) = cookie::find(headers.iter().copied(), name) {
        let inside = |header: &&[u8]| {
            let range = header.as_ptr_range();
            range.start <= value.as_ptr() && value.as_ptr_range().end <= range.end
        };
        assert!(
            headers.iter().any(inside),
            "a value not taken from a header"
        );
    }

    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    if cookie::is_valid_name(name) {
        let identity = "0123456789abcdef0123456789abcdef";
        let set_cookie = IdentityCookie::new(name.to_owned(), 60, "/", true, true, SameSite::Lax)
            .set_cookie(identity);
        assert_eq!(
            cookie::find([set_cookie.as_bytes()], name.as_bytes()),
            Some(identity.as_bytes()),
            "the identity does not read back from {set_cookie:?}"
        );
    }
}

/// The whole decision path, request and response, through the host double.
///
/// The first byte picks one of [`STREAM_CONFIGS`]; each following line is a header: its first
/// byte picks the name from [`STREAM_HEADERS`], the rest is the value (any bytes). The
/// upstream's `:status` is a header like the others.
///
/// Whatever the request, the upstream sees at most one decision header, naming a variant of
/// the matched route and nothing when no route matched; the debug header agrees with it; at most
/// one identity cookie is added, only for a new identity.
pub fn stream(data: &[u8]) {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let index = usize::from(*selector) % STREAM_CONFIGS.len();
    let mut request: Vec<(&str, &[u8])> = Vec::new();
    let mut status = String::from("200");
    for line in rest.split(|b| *b == b'\n') {
        let Some((which, value)) = line.split_first() else {
            continue;
        };
        let name = STREAM_HEADERS
            .get(usize::from(*which) % STREAM_HEADERS.len())
            .copied()
            .unwrap_or_default();
        if name == ":status" {
            status = String::from_utf8_lossy(value).into_owned();
        } else {
            request.push((name, value));
        }
    }

    let plugin = STREAM_PLUGINS.with(|plugins| plugins.get(index).cloned().flatten());
    let Some(plugin) = plugin else {
        panic!("built-in configuration {index} is rejected");
    };
    run_stream(&MockHost::request_bytes(&request), plugin, &status);
}

/// Configurations the stream target runs under: every predicate, wildcard and exact hosts, path
/// prefixes, the largest number of variants with zero and 0.001 % weights, a custom decision
/// header, a sealed decision value, a query parameter, identity from headers, cookies and the
/// identity cookie, signed or not, pins and session stickiness.
pub const STREAM_CONFIGS: [&str; 4] = [
    r#"{
      "debugHeader": true,
      "routes": [{
        "name": "reviews",
        "match": { "hosts": ["reviews", "*.example.com"], "pathPrefixes": ["/api/"] },
        "variants": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
        "targeting": [
          { "name": "optout", "cookie": "canary", "equals": "never", "variant": "stable" },
          { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
          { "name": "rings", "header": "x-user-group", "in": ["beta", "staff"], "variant": "canary" },
          { "name": "builds", "header": "x-build", "prefix": "rc-", "variant": "canary" },
          { "name": "tenants", "header": "x-tenant", "matches": "t-[0-9]{1,6}(-eu)?", "variant": "canary" },
          { "name": "debug", "header": "x-debug", "present": true, "variant": "canary" },
          { "name": "anon", "cookie": "session_id", "present": false, "variant": "stable" },
          { "name": "query", "query": "canary", "in": ["always", "yes please"], "variant": "canary" }
        ],
        "stickiness": {
          "keys": [ { "header": "x-user-id" }, { "cookie": "session_id" } ],
          "cookie": { "name": "canary_id", "maxAge": 2592000, "path": "/", "secure": true,
                      "httpOnly": true, "sameSite": "Lax", "secret": "Fz9_signed-stream-cookie0",
                      "previousSecrets": ["0123456789abcdef0123456789abcdef"] },
          "salt": "reviews-2026-11"
        }
      }]
    }"#,
    r#"{
      "debugHeader": true,
      "seal": "Fz9_sealed-stream-config0",
      "routes": [
        { "name": "exact", "match": { "hosts": ["shop", "shop.example.com"], "pathPrefixes": ["/cart", "/checkout/"] },
          "variants": [ { "name": "a", "weight": 0.001 }, { "name": "b", "weight": 99.999 } ] },
        { "name": "wild", "match": { "hosts": ["*.example.com", "*.svc.cluster.local"] },
          "variants": [
            { "name": "v0", "weight": 0 }, { "name": "v1", "weight": 6.25 }, { "name": "v2", "weight": 6.25 },
            { "name": "v3", "weight": 6.25 }, { "name": "v4", "weight": 6.25 }, { "name": "v5", "weight": 6.25 },
            { "name": "v6", "weight": 6.25 }, { "name": "v7", "weight": 6.25 }, { "name": "v8", "weight": 6.25 },
            { "name": "v9", "weight": 6.25 }, { "name": "v10", "weight": 6.25 }, { "name": "v11", "weight": 6.25 },
            { "name": "v12", "weight": 6.25 }, { "name": "v13", "weight": 6.25 }, { "name": "v14", "weight": 6.25 },
            { "name": "v15", "weight": 12.5 }
          ],
          "targeting": [ { "name": "zero", "header": "x-canary", "equals": "zero", "variant": "v0" } ],
          "stickiness": { "cookie": { "name": "canary_id" } } },
        { "name": "any", "match": { "hosts": ["*"], "pathPrefixes": ["/"] },
          "variants": [ { "name": "only", "weight": 100 } ] }
      ]
    }"#,
    r#"{
      "decisionHeader": "X-Route-To",
      "routes": [{
        "name": "api",
        "match": { "pathPrefixes": ["/v2/", "/v3/"] },
        "variants": [ { "name": "stable", "weight": 33.333 }, { "name": "canary", "weight": 66.667 } ],
        "targeting": [ { "name": "group", "cookie": "group", "in": ["a", "b", ""], "variant": "canary" } ],
        "stickiness": { "keys": [ { "cookie": "session_id" }, { "header": "x-user-id" } ], "salt": "api" }
      }]
    }"#,
    r#"{
      "debugHeader": true,
      "routes": [{
        "name": "web",
        "variants": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
        "targeting": [
          { "name": "pin", "header": "x-canary", "equals": "pin", "variant": "canary", "pin": true },
          { "name": "unpin", "header": "x-canary", "equals": "unpin", "variant": "stable", "unpin": true }
        ],
        "stickiness": {
          "mode": "session",
          "keys": [ { "header": "x-user-id" } ],
          "cookie": { "name": "canary_id", "secret": "Fz9_signed-stream-cookie0" },
          "pin": { "cookie": "canary_pin" }
        }
      }]
    }"#,
];

thread_local! {
    /// [`STREAM_CONFIGS`] parsed once: parsing and compiling them would be most of a run.
    /// (Metric ids stay defined with the first host; later hosts ignore them.)
    static STREAM_PLUGINS: Vec<Option<Rc<Plugin>>> = STREAM_CONFIGS
        .iter()
        .map(|config| Plugin::configure(&MockHost::default(), 1, Some(config.as_bytes())))
        .map(|plugin| plugin.map(Rc::new))
        .collect();
}

/// Header names the stream target picks from, by the first byte of each line.
pub const STREAM_HEADERS: [&str; 15] = [
    ":authority",
    ":path",
    "x-user-id",
    "cookie",
    "x-canary",
    "x-user-group",
    "x-build",
    "x-tenant",
    "x-debug",
    "x-canary-variant",
    "x-route-to",
    "host",
    ":method",
    "x-other",
    ":status",
];

/// Drives one request and its response through `plugin` and checks what the upstream and the
/// client see.
fn run_stream(host: &MockHost, plugin: Rc<Plugin>, status: &str) {
    let table = &plugin.table;
    let header = table.decision_header.clone();
    let mut stream = Stream::new(Rc::clone(&plugin), 2);
    stream.on_request_headers(host);

    let seen = host.request_values(&header);
    assert!(seen.len() <= 1, "the upstream sees {seen:?}");
    let request = host.request_headers();
    let route = table.decide(&request, || 0, |_| false).map(|d| d.route);
    // The variant whose decision value (`<variant>.<seal>`, or the bare name) the upstream saw.
    let variant = seen.first().and_then(|value| {
        route?
            .variants
            .iter()
            .find(|v| v.decision_value == *value)
            .map(|v| v.name.clone())
    });
    match (seen.first(), route) {
        (None, None) => {}
        (Some(value), Some(route)) => assert!(
            variant.is_some(),
            "{value:?} is not the decision value of a variant of route {}",
            route.name
        ),
        (seen, route) => panic!(
            "decision header {seen:?} and route {:?} disagree",
            route.map(|r| &r.name)
        ),
    }

    host.set_response_header(":status", status);
    host.advance_millis(3);
    stream.on_response_headers(host);

    let identity_cookies = host
        .response_values("set-cookie")
        .into_iter()
        .filter(|c| route.is_some_and(|r| is_identity_cookie(r, c)))
        .count();
    assert!(identity_cookies <= 1, "{identity_cookies} identity cookies");
    let pin_cookies = host
        .response_values("set-cookie")
        .into_iter()
        .filter(|c| {
            route
                .and_then(|r| r.stickiness.pins.as_ref())
                .is_some_and(|p| c.starts_with(&format!("{}=", p.cookie.name)))
        })
        .count();
    assert!(pin_cookies <= 1, "{pin_cookies} pin cookies");
    let debug = host.response_values(DEBUG_HEADER);
    match (route, variant) {
        (Some(route), Some(variant)) if table.debug_header => {
            let want = format!("{};{variant};", route.name);
            assert!(
                debug.len() == 1 && debug.iter().all(|d| d.starts_with(&want)),
                "debug header {debug:?}, decision {want}"
            );
        }
        _ => assert!(
            debug.is_empty(),
            "debug header {debug:?} without a decision"
        ),
    }
}

fn is_identity_cookie(route: &crate::table::Route, set_cookie: &str) -> bool {
    route
        .stickiness
        .cookie
        .as_ref()
        .is_some_and(|c| set_cookie.starts_with(&format!("{}=", c.name)))
}

/// Everything a table decides with, for comparing two: its debug form (which leaves the seal
/// out) and every decision value.
pub fn table_form(table: &RoutingTable) -> String {
    let values: Vec<&str> = table
        .routes
        .iter()
        .flat_map(|route| route.variants.iter().map(|v| v.decision_value.as_str()))
        .collect();
    format!("{table:?} {values:?}")
}

fn check_table(table: &RoutingTable) {
    assert!(
        (1..=MAX_ROUTES).contains(&table.routes.len()),
        "{} routes",
        table.routes.len()
    );
    for route in &table.routes {
        let variants = route.variants.len();
        assert!(
            (1..=MAX_VARIANTS).contains(&variants),
            "{variants} variants"
        );
        let total: u64 = route.variants.iter().map(|v| u64::from(v.weight.0)).sum();
        assert_eq!(total, u64::from(Weight::FULL.0), "route {}", route.name);
        for rule in &route.targeting {
            assert!(rule.variant < variants, "rule {} points nowhere", rule.name);
        }
    }
}
