//! Every configuration error the filter reports, with its JSON path and reason.

// Test code: indexing and unwrapping are how a table test says what it expects.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use canary_filter::parse;
use serde_json::{json, Value};

/// A valid configuration, changed by `edit` at one place.
fn with(edit: impl FnOnce(&mut Value)) -> String {
    let mut config = json!({
        "routes": [{
            "name": "reviews",
            "match": { "hosts": ["reviews"], "pathPrefixes": ["/api/"] },
            "variants": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
            "targeting": [ { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" } ],
            "stickiness": {
                "keys": [ { "header": "x-user-id" } ],
                "cookie": { "name": "canary_id" }
            }
        }]
    });
    edit(&mut config);
    config.to_string()
}

fn route(edit: impl FnOnce(&mut Value)) -> String {
    with(|c| edit(&mut c["routes"][0]))
}

fn errors(config: &str) -> Vec<(String, String)> {
    match parse(config.as_bytes()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| (e.path.clone(), e.reason.clone()))
            .collect(),
    }
}

#[test]
fn the_base_configuration_is_valid() {
    assert_eq!(errors(&with(|_| {})), Vec::<(String, String)>::new());
}

#[test]
fn each_error_names_its_path_and_reason() {
    let many_routes: Vec<Value> = (0..1025)
        .map(|i| json!({ "name": format!("r{i}"), "variants": [{ "name": "a", "weight": 100 }] }))
        .collect();
    let many_variants: Vec<Value> = (0..17)
        .map(|i| json!({ "name": format!("v{i}"), "weight": if i == 0 { 100 } else { 0 } }))
        .collect();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "seal too short",
            with(|c| c["seal"] = json!("aZ3_kQ9-aB7cD1eF2gH4i")),
            "seal",
            "is too short: 21 base64url characters carry fewer than 128 bits; at least 22",
        ),
        (
            "hex seal too short",
            with(|c| c["seal"] = json!("0123456789abcdef0123456789abcde")),
            "seal",
            "is too short: 31 hexadecimal digits carry fewer than 128 bits; at least 32",
        ),
        (
            "seal with a dot",
            with(|c| c["seal"] = json!("aZ3_kQ9-aB7cD1eF2gH4iJ.x")),
            "seal",
            "must be 22 to 128 characters of A-Z, a-z, 0-9, '-' and '_'",
        ),
        (
            "empty seal",
            with(|c| c["seal"] = json!("")),
            "seal",
            "is too short: 0 hexadecimal digits",
        ),
        (
            "seal too long",
            with(|c| c["seal"] = json!("a".repeat(129))),
            "seal",
            "is too long: 129 characters; at most 128",
        ),
        (
            "trustIncoming without a seal",
            route(|r| r["trustIncoming"] = json!(true)),
            "routes[0].trustIncoming",
            "needs seal: an incoming decision is kept only when it carries the configuration's seal",
        ),
        (
            "seal not a string",
            with(|c| c["seal"] = json!(128)),
            "seal",
            "invalid type: integer `128`, expected a string",
        ),
        ("not JSON", "{routes: }".into(), "$", "invalid JSON"),
        ("empty document", "  ".into(), "$", "configuration is empty"),
        ("not an object", "[]".into(), "$", "must be a JSON object"),
        (
            "route not an object",
            with(|c| c["routes"] = json!([[1]])),
            "routes[0]",
            "must be an object",
        ),
        (
            "unknown top-level field",
            with(|c| c["decisionheader"] = json!("x")),
            "decisionheader",
            "unknown field `decisionheader`",
        ),
        ("routes missing", "{}".into(), "$", "missing field `routes`"),
        (
            "routes not a list",
            with(|c| c["routes"] = json!({})),
            "routes",
            "invalid type",
        ),
        (
            "no routes",
            with(|c| c["routes"] = json!([])),
            "routes",
            "must have at least one route",
        ),
        (
            "too many routes",
            with(|c| c["routes"] = json!(many_routes)),
            "routes",
            "at most 1024",
        ),
        (
            "debugHeader not a bool",
            with(|c| c["debugHeader"] = json!("yes")),
            "debugHeader",
            "invalid type",
        ),
        (
            "decision header not a token",
            with(|c| c["decisionHeader"] = json!("x canary")),
            "decisionHeader",
            "not a valid HTTP header name",
        ),
        (
            "decision header empty",
            with(|c| c["decisionHeader"] = json!("")),
            "decisionHeader",
            "not a valid HTTP header name",
        ),
        (
            "unknown route field",
            route(|r| r["weight"] = json!(1)),
            "routes[0].weight",
            "unknown field `weight`",
        ),
        (
            "route name missing",
            route(|r| {
                r.as_object_mut().unwrap().remove("name");
            }),
            "routes[0]",
            "missing field `name`",
        ),
        (
            "route name uppercase",
            route(|r| r["name"] = json!("Reviews")),
            "routes[0].name",
            "a-z, 0-9 and '-'",
        ),
        (
            "route name too long",
            route(|r| r["name"] = json!("a".repeat(64))),
            "routes[0].name",
            "1 to 63 characters",
        ),
        (
            "route name empty",
            route(|r| r["name"] = json!("")),
            "routes[0].name",
            "1 to 63 characters",
        ),
        (
            "unknown match field",
            route(|r| r["match"]["paths"] = json!(["/"])),
            "routes[0].match.paths",
            "unknown field `paths`",
        ),
        (
            "hosts empty",
            route(|r| r["match"]["hosts"] = json!([])),
            "routes[0].match.hosts",
            "must not be empty",
        ),
        (
            "host wildcard in the middle",
            route(|r| r["match"]["hosts"] = json!(["a.*.com"])),
            "routes[0].match.hosts[0]",
            "wildcard",
        ),
        (
            "host with port",
            route(|r| r["match"]["hosts"] = json!(["reviews", "reviews:9080"])),
            "routes[0].match.hosts[1]",
            "without the port",
        ),
        (
            "host with a path",
            route(|r| r["match"]["hosts"] = json!(["reviews/api"])),
            "routes[0].match.hosts[0]",
            "not a host name",
        ),
        (
            "path prefixes empty",
            route(|r| r["match"]["pathPrefixes"] = json!([])),
            "routes[0].match.pathPrefixes",
            "must not be empty",
        ),
        (
            "path prefix without /",
            route(|r| r["match"]["pathPrefixes"] = json!(["api/"])),
            "routes[0].match.pathPrefixes[0]",
            "must start with '/'",
        ),
        (
            "no variants",
            route(|r| r["variants"] = json!([])),
            "routes[0].variants",
            "at least one variant",
        ),
        (
            "too many variants",
            route(|r| r["variants"] = json!(many_variants)),
            "routes[0].variants",
            "at most 16",
        ),
        (
            "variant name invalid",
            route(|r| r["variants"][1]["name"] = json!("can_ary")),
            "routes[0].variants[1].name",
            "a-z, 0-9 and '-'",
        ),
        (
            "variant name duplicated",
            route(|r| r["variants"][1]["name"] = json!("stable")),
            "routes[0].variants[1].name",
            "duplicate variant name",
        ),
        (
            "weight above 100",
            route(|r| r["variants"][1]["weight"] = json!(130)),
            "routes[0].variants[1].weight",
            "must be between 0 and 100",
        ),
        (
            "weight negative",
            route(|r| r["variants"][0]["weight"] = json!(-1)),
            "routes[0].variants[0].weight",
            "must be between 0 and 100",
        ),
        (
            "weight with 4 decimals",
            route(|r| {
                r["variants"][0]["weight"] = json!(89.9995);
                r["variants"][1]["weight"] = json!(10.0005);
            }),
            "routes[0].variants[0].weight",
            "more than 3 decimals",
        ),
        (
            "weight as a string",
            route(|r| r["variants"][1]["weight"] = json!("10")),
            "routes[0].variants[1].weight",
            "invalid type",
        ),
        (
            "weights not summing to 100",
            route(|r| r["variants"][1]["weight"] = json!(20)),
            "routes[0].variants",
            "weights must sum to 100, not 110",
        ),
        (
            "unknown variant field",
            route(|r| r["variants"][0]["subset"] = json!("v1")),
            "routes[0].variants[0].subset",
            "unknown field `subset`",
        ),
        (
            "rule name invalid",
            route(|r| r["targeting"][0]["name"] = json!("QA")),
            "routes[0].targeting[0].name",
            "a-z, 0-9 and '-'",
        ),
        (
            "rule name duplicated",
            route(|r| {
                r["targeting"] = json!([
            { "name": "qa", "header": "a", "present": true, "variant": "canary" },
            { "name": "qa", "header": "b", "present": true, "variant": "canary" }])
            }),
            "routes[0].targeting[1].name",
            "duplicate rule name",
        ),
        (
            "rule without source",
            route(|r| {
                r["targeting"][0] = json!({ "name": "qa", "equals": "x", "variant": "canary" })
            }),
            "routes[0].targeting[0]",
            "needs a source",
        ),
        (
            "rule with two sources",
            route(|r| r["targeting"][0]["cookie"] = json!("c")),
            "routes[0].targeting[0]",
            "both header and cookie",
        ),
        (
            "rule with header and query",
            route(|r| r["targeting"][0]["query"] = json!("canary")),
            "routes[0].targeting[0]",
            "has both header and query; use exactly one",
        ),
        (
            "rule with three sources",
            route(|r| {
                r["targeting"][0]["cookie"] = json!("c");
                r["targeting"][0]["query"] = json!("q");
            }),
            "routes[0].targeting[0]",
            "has header, cookie and query; use exactly one",
        ),
        (
            "rule without source names query",
            route(|r| {
                r["targeting"][0] = json!({ "name": "qa", "equals": "x", "variant": "canary" })
            }),
            "routes[0].targeting[0]",
            "needs a source: one of header, cookie, query",
        ),
        (
            "rule with empty query name",
            route(|r| {
                r["targeting"][0] =
                    json!({ "name": "qa", "query": "", "equals": "x", "variant": "canary" })
            }),
            "routes[0].targeting[0].query",
            "must name a query parameter",
        ),
        (
            "query rule with a bad regex",
            route(|r| {
                r["targeting"][0] =
                    json!({ "name": "qa", "query": "q", "matches": "(", "variant": "canary" })
            }),
            "routes[0].targeting[0].matches",
            "invalid regex",
        ),
        (
            "key from a query parameter",
            route(|r| r["stickiness"]["keys"][0] = json!({ "query": "user" })),
            "routes[0].stickiness.keys[0].query",
            "unknown field `query`",
        ),
        (
            "cookie secret too short",
            route(|r| r["stickiness"]["cookie"]["secret"] = json!("aZ3_kQ9-aB7cD1eF2gH4i")),
            "routes[0].stickiness.cookie.secret",
            "is too short: 21 base64url characters carry fewer than 128 bits",
        ),
        (
            "cookie secret outside the alphabet",
            route(|r| r["stickiness"]["cookie"]["secret"] = json!("aZ3_kQ9-aB7cD1eF2gH4iJ.x")),
            "routes[0].stickiness.cookie.secret",
            "(the secret is not shown)",
        ),
        (
            "previous secret too short",
            route(|r| {
                r["stickiness"]["cookie"]["secret"] = json!("aZ3_kQ9-aB7cD1eF2gH4iJ");
                r["stickiness"]["cookie"]["previousSecrets"] =
                    json!(["bY4-mR8_cC6dE2fG3hI5jK", "0123456789abcdef"]);
            }),
            "routes[0].stickiness.cookie.previousSecrets[1]",
            "is too short: 16 hexadecimal digits",
        ),
        (
            "previous secret equal to the secret",
            route(|r| {
                r["stickiness"]["cookie"]["secret"] = json!("aZ3_kQ9-aB7cD1eF2gH4iJ");
                r["stickiness"]["cookie"]["previousSecrets"] = json!(["aZ3_kQ9-aB7cD1eF2gH4iJ"]);
            }),
            "routes[0].stickiness.cookie.previousSecrets[0]",
            "is the same as secret",
        ),
        (
            "previous secret repeated",
            route(|r| {
                r["stickiness"]["cookie"]["secret"] = json!("aZ3_kQ9-aB7cD1eF2gH4iJ");
                r["stickiness"]["cookie"]["previousSecrets"] =
                    json!(["bY4-mR8_cC6dE2fG3hI5jK", "bY4-mR8_cC6dE2fG3hI5jK"]);
            }),
            "routes[0].stickiness.cookie.previousSecrets[1]",
            "is the same as previousSecrets[0]",
        ),
        (
            "previous secrets without a secret",
            route(|r| {
                r["stickiness"]["cookie"]["previousSecrets"] = json!(["bY4-mR8_cC6dE2fG3hI5jK"])
            }),
            "routes[0].stickiness.cookie.previousSecrets",
            "needs secret",
        ),
        (
            "too many previous secrets",
            route(|r| {
                r["stickiness"]["cookie"]["secret"] = json!("aZ3_kQ9-aB7cD1eF2gH4iJ");
                r["stickiness"]["cookie"]["previousSecrets"] = json!([
                    "bY4-mR8_cC6dE2fG3hI5j1",
                    "bY4-mR8_cC6dE2fG3hI5j2",
                    "bY4-mR8_cC6dE2fG3hI5j3",
                    "bY4-mR8_cC6dE2fG3hI5j4",
                    "bY4-mR8_cC6dE2fG3hI5j5"
                ]);
            }),
            "routes[0].stickiness.cookie.previousSecrets",
            "has 5 secrets; at most 4 are allowed",
        ),
        (
            "rule header not a token",
            route(|r| r["targeting"][0]["header"] = json!("x:canary")),
            "routes[0].targeting[0].header",
            "not a valid HTTP header name",
        ),
        (
            "rule on the decision header",
            route(|r| r["targeting"][0]["header"] = json!("X-Canary-Variant")),
            "routes[0].targeting[0].header",
            "cannot target on the decision header",
        ),
        (
            "rule cookie name invalid",
            route(|r| {
                r["targeting"][0] =
                    json!({ "name": "qa", "cookie": "a b", "equals": "x", "variant": "canary" })
            }),
            "routes[0].targeting[0].cookie",
            "not a valid cookie name",
        ),
        (
            "rule without predicate",
            route(|r| {
                r["targeting"][0] = json!({ "name": "qa", "header": "x", "variant": "canary" })
            }),
            "routes[0].targeting[0]",
            "needs a predicate",
        ),
        (
            "rule with two predicates",
            route(|r| r["targeting"][0]["prefix"] = json!("a")),
            "routes[0].targeting[0]",
            "more than one predicate",
        ),
        (
            "rule with empty in",
            route(|r| {
                r["targeting"][0] =
                    json!({ "name": "qa", "header": "x", "in": [], "variant": "canary" })
            }),
            "routes[0].targeting[0].in",
            "at least one value",
        ),
        (
            "rule with invalid regex",
            route(|r| {
                r["targeting"][0] =
                    json!({ "name": "qa", "header": "x", "matches": "(a", "variant": "canary" })
            }),
            "routes[0].targeting[0].matches",
            "invalid regex",
        ),
        (
            "rule with oversized regex",
            route(
                |r| r["targeting"][0] = json!({ "name": "qa", "header": "x", "matches": "(a{1000}){1000}", "variant": "canary" }),
            ),
            "routes[0].targeting[0].matches",
            "invalid regex",
        ),
        (
            "present not a bool",
            route(|r| {
                r["targeting"][0] =
                    json!({ "name": "qa", "header": "x", "present": "yes", "variant": "canary" })
            }),
            "routes[0].targeting[0].present",
            "invalid type",
        ),
        (
            "rule to unknown variant",
            route(|r| r["targeting"][0]["variant"] = json!("v3")),
            "routes[0].targeting[0].variant",
            "unknown variant \"v3\"",
        ),
        (
            "key without source",
            route(|r| r["stickiness"]["keys"][0] = json!({})),
            "routes[0].stickiness.keys[0]",
            "needs a source: one of header, cookie",
        ),
        (
            "key with two sources",
            route(|r| r["stickiness"]["keys"][0]["cookie"] = json!("sid")),
            "routes[0].stickiness.keys[0]",
            "both header and cookie",
        ),
        (
            "key on the decision header",
            route(|r| r["stickiness"]["keys"][0]["header"] = json!("x-canary-variant")),
            "routes[0].stickiness.keys[0].header",
            "decision header",
        ),
        (
            "key cookie name invalid",
            route(|r| r["stickiness"]["keys"][0] = json!({ "cookie": "a;b" })),
            "routes[0].stickiness.keys[0].cookie",
            "not a valid cookie name",
        ),
        (
            "identity cookie name invalid",
            route(|r| r["stickiness"]["cookie"]["name"] = json!("canary id")),
            "routes[0].stickiness.cookie.name",
            "not a valid cookie name",
        ),
        (
            "identity cookie maxAge 0",
            route(|r| r["stickiness"]["cookie"]["maxAge"] = json!(0)),
            "routes[0].stickiness.cookie.maxAge",
            "at least 1 second",
        ),
        (
            "identity cookie maxAge negative",
            route(|r| r["stickiness"]["cookie"]["maxAge"] = json!(-5)),
            "routes[0].stickiness.cookie.maxAge",
            "invalid value",
        ),
        (
            "identity cookie path without /",
            route(|r| r["stickiness"]["cookie"]["path"] = json!("app")),
            "routes[0].stickiness.cookie.path",
            "must start with '/'",
        ),
        (
            "identity cookie path with ;",
            route(|r| r["stickiness"]["cookie"]["path"] = json!("/a;Domain=evil")),
            "routes[0].stickiness.cookie.path",
            "no ';'",
        ),
        (
            "sameSite unknown",
            route(|r| r["stickiness"]["cookie"]["sameSite"] = json!("lax")),
            "routes[0].stickiness.cookie.sameSite",
            "unknown variant `lax`",
        ),
        (
            "sameSite None without secure",
            route(|r| r["stickiness"]["cookie"]["sameSite"] = json!("None")),
            "routes[0].stickiness.cookie.sameSite",
            "requires secure: true",
        ),
        (
            "salt empty",
            route(|r| r["stickiness"]["salt"] = json!("")),
            "routes[0].stickiness.salt",
            "must not be empty",
        ),
        (
            "unknown stickiness field",
            route(|r| r["stickiness"]["ttl"] = json!(1)),
            "routes[0].stickiness.ttl",
            "unknown field `ttl`",
        ),
    ];
    for (label, config, path, reason) in &cases {
        let found = errors(config);
        assert!(
            found.iter().any(|(p, r)| p == path && r.contains(reason)),
            "{label}: expected `{path}: …{reason}…`, got {found:?}"
        );
    }
}

#[test]
fn every_error_is_listed_not_just_the_first() {
    let config = with(|c| {
        c["routes"] = json!([
            { "name": "a", "variants": [{ "name": "x", "weight": 50 }] },
            { "name": "b", "variants": [{ "name": "x", "weight": 100 }], "bogus": 1 },
            { "name": "a", "variants": [{ "name": "Y", "weight": 100 }] }
        ]);
    });
    let found = errors(&config);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["routes[1].bogus"],
        "decoding errors come first and alone: {found:?}"
    );

    let config = with(|c| {
        c["routes"] = json!([
            { "name": "a", "variants": [{ "name": "x", "weight": 50 }] },
            { "name": "a", "variants": [{ "name": "Y", "weight": 100 }],
              "targeting": [{ "name": "t", "header": "h", "present": true, "variant": "z" }] }
        ]);
    });
    let found = errors(&config);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[0].variants",
            "routes[1].name",
            "routes[1].variants[0].name",
            "routes[1].targeting[0].variant",
        ],
        "{found:?}"
    );
}

#[test]
fn every_route_with_a_decoding_error_is_reported() {
    let config = with(|c| {
        c["routes"] = json!([
            { "name": "a", "variants": [{ "name": "x", "weight": "100" }] },
            { "name": "b", "variants": [{ "name": "x", "weight": 100 }] },
            { "name": "c", "variants": [{ "name": "x", "weight": 100, "extra": true }] },
            { "name": 4, "variants": [{ "weight": 100 }], "match": { "hosts": "h" } }
        ]);
    });
    let paths: Vec<String> = errors(&config).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "routes[0].variants[0].weight",
            "routes[2].variants[0].extra",
            "routes[3].name",
            "routes[3].variants[0]",
            "routes[3].match.hosts",
        ],
        "every decoding error of a route, not just its first"
    );
}

#[test]
fn duplicate_keys_are_refused_at_their_path() {
    let config = with(|_| {}).replacen(
        "\"name\":\"reviews\"",
        "\"name\":\"reviews\",\"name\":\"x\"",
        1,
    );
    assert_eq!(
        errors(&config),
        [(
            "routes[0].name".to_owned(),
            "duplicate key `name`".to_owned()
        )]
    );
    let config = with(|_| {}).replacen(
        "\"header\":\"x-user-id\"",
        "\"header\":\"x-user-id\",\"header\":\"x-user-id\"",
        1,
    );
    assert_eq!(
        errors(&config),
        [(
            "routes[0].stickiness.keys[0].header".to_owned(),
            "duplicate key `header`".to_owned()
        )],
        "even with the same value"
    );
}

#[test]
fn defaults_are_applied() {
    let table =
        parse(br#"{"routes":[{"name":"web","variants":[{"name":"a","weight":100}]}]}"#).unwrap();
    assert_eq!(table.decision_header, "x-canary-variant");
    assert!(!table.debug_header);
    assert_eq!(
        table.routes[0].stickiness.salt, "web",
        "salt defaults to the route name"
    );
    let upper = parse(br#"{"decisionHeader":"X-Variant","routes":[{"name":"web","variants":[{"name":"a","weight":100}]}]}"#).unwrap();
    assert_eq!(
        upper.decision_header, "x-variant",
        "header names are lowercased"
    );
}

#[test]
fn limits_are_accepted_at_the_edge() {
    let routes: Vec<Value> = (0..1024)
        .map(|i| {
            let variants: Vec<Value> = (0..16)
                .map(|v| json!({ "name": format!("v{v}"), "weight": if v == 0 { 85 } else { 1 } }))
                .collect();
            json!({ "name": format!("route-{i}"), "match": { "hosts": [format!("svc-{i}")] }, "variants": variants })
        })
        .collect();
    let config = json!({ "routes": routes }).to_string();
    let table = parse(config.as_bytes()).expect("1,024 routes × 16 variants is within the limits");
    assert_eq!(table.routes.len(), 1024);
    let fractional = route(|r| {
        r["variants"][0]["weight"] = json!(89.999);
        r["variants"][1]["weight"] = json!(10.001);
    });
    assert_eq!(
        errors(&fractional),
        Vec::<(String, String)>::new(),
        "0.001 % resolution"
    );
}

#[test]
fn a_seal_is_appended_to_every_decision_value() {
    let plain = parse(with(|_| {}).as_bytes()).unwrap();
    let values: Vec<&str> = plain.routes[0]
        .variants
        .iter()
        .map(|v| v.decision_value.as_str())
        .collect();
    assert_eq!(values, ["stable", "canary"], "no seal: the bare names");

    for seal in [
        "aZ3_kQ9-aB7cD1eF2gH4iJ".to_owned(),
        "0123456789abcdef0123456789abcdef".to_owned(),
        "0123456789ABCDEF0123456789abcdeF".to_owned(),
        "-".repeat(128),
    ] {
        let table = parse(with(|c| c["seal"] = json!(seal)).as_bytes())
            .unwrap_or_else(|e| panic!("{seal}: {e}"));
        let values: Vec<&str> = table.routes[0]
            .variants
            .iter()
            .map(|v| v.decision_value.as_str())
            .collect();
        assert_eq!(
            values,
            [format!("stable.{seal}"), format!("canary.{seal}")],
            "{seal}"
        );
    }
    let null = parse(with(|c| c["seal"] = Value::Null).as_bytes()).unwrap();
    assert_eq!(
        null.routes[0].variants[1].decision_value, "canary",
        "null is no seal"
    );
}

#[test]
fn a_rejected_seal_is_never_quoted() {
    let seal = "short-secret-value";
    let found = errors(&with(|c| c["seal"] = json!(seal)));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(!found[0].1.contains(seal), "{found:?}");
    let found = errors(&with(|c| {
        c["seal"] = json!(format!("{seal}.with.dots.and.more"))
    }));
    assert!(!found[0].1.contains(seal), "{found:?}");
}
