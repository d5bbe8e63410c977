//! Targeting on query parameters and signed identity cookies, decided as the filter decides a
//! request: parsed configuration, request headers as the host hands them over.

// Test code: indexing and unwrapping are how a table test says what it expects.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use canary_filter::table::IDENTITY_BYTES;
use canary_filter::{parse, Reason, RequestHeaders, RoutingTable};

const SECRET: &str = "k7Qw9zR2mX4vB8nL1pT6yH3sF5dA0cE9";
const OLD_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn table(secret: Option<&str>, previous: &[&str]) -> RoutingTable {
    let mut cookie = serde_json::json!({ "name": "canary_id" });
    if let Some(secret) = secret {
        cookie["secret"] = secret.into();
    }
    if !previous.is_empty() {
        cookie["previousSecrets"] = previous.into();
    }
    let config = serde_json::json!({
        "routes": [{
            "name": "reviews",
            "variants": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
            "targeting": [
                { "name": "qa", "query": "canary", "equals": "always", "variant": "canary" },
                { "name": "optout", "query": "canary", "equals": "never", "variant": "stable" },
                { "name": "rings", "query": "ring", "in": ["beta", "staff"], "variant": "canary" },
                { "name": "build", "query": "build", "prefix": "rc-", "variant": "canary" },
                { "name": "tenant", "query": "tenant", "matches": "t-[0-9]+", "variant": "canary" },
                { "name": "debug", "query": "debug canary", "present": true, "variant": "canary" }
            ],
            "stickiness": { "cookie": cookie }
        }]
    });
    parse(config.to_string().as_bytes()).unwrap()
}

fn request(path: &str, cookie: Option<&str>) -> RequestHeaders {
    let mut headers = vec![
        (":authority".to_owned(), b"reviews".to_vec()),
        (":path".to_owned(), path.as_bytes().to_vec()),
    ];
    if let Some(cookie) = cookie {
        headers.push(("cookie".to_owned(), cookie.as_bytes().to_vec()));
    }
    RequestHeaders::from_pairs(&headers)
}

/// Variant and reason, with the random identity fixed to `fill` bytes.
fn decide(t: &RoutingTable, req: &RequestHeaders, fill: u8) -> (String, Reason, Option<String>) {
    let d = t
        .decide(
            req,
            || 0,
            |b: &mut [u8; IDENTITY_BYTES]| {
                b.fill(fill);
                true
            },
        )
        .unwrap();
    let issued = d.issue_identity.map(|identity| {
        let cookie = d.route.stickiness.cookie.as_ref().unwrap();
        cookie.set_cookie(&identity)
    });
    (d.variant.name.clone(), d.reason, issued)
}

/// A `canary_id` cookie value issued with a `Set-Cookie` header.
fn issued_value(set_cookie: &str) -> &str {
    let pair = set_cookie.split(';').next().unwrap();
    pair.strip_prefix("canary_id=").unwrap()
}

#[test]
fn query_rules_match_decoded_parameters() {
    let t = table(None, &[]);
    let cases: &[(&str, &str, Option<Reason>)] = &[
        ("equals", "/p?canary=always", Some(Reason::Rule(0))),
        (
            "other rule on the same parameter",
            "/p?canary=never",
            Some(Reason::Rule(1)),
        ),
        ("other value", "/p?canary=sometimes", None),
        ("case matters", "/p?canary=Always", None),
        ("encoded value", "/p?canary=alw%61ys", Some(Reason::Rule(0))),
        ("encoded name", "/p?c%61nary=always", Some(Reason::Rule(0))),
        (
            "first occurrence wins",
            "/p?canary=never&canary=always",
            Some(Reason::Rule(1)),
        ),
        (
            "among others",
            "/p?x=1&canary=always&y",
            Some(Reason::Rule(0)),
        ),
        ("fragment", "/p?x=1#canary=always", None),
        ("in", "/p?ring=staff", Some(Reason::Rule(2))),
        ("in, not listed", "/p?ring=dev", None),
        ("prefix", "/p?build=rc-7", Some(Reason::Rule(3))),
        ("regex is anchored", "/p?tenant=xt-1", None),
        ("regex", "/p?tenant=t-12", Some(Reason::Rule(4))),
        (
            "present without a value, + is a space",
            "/p?debug+canary",
            Some(Reason::Rule(5)),
        ),
        (
            "present, %20 is a space",
            "/p?debug%20canary=",
            Some(Reason::Rule(5)),
        ),
        ("not in the path", "/p/canary=always", None),
        ("no query", "/p", None),
    ];
    for (label, path, want) in cases {
        let (variant, reason, _) = decide(&t, &request(path, Some("canary_id=u1")), 1);
        match want {
            Some(rule) => {
                assert_eq!(reason, *rule, "{label}: {path}");
                let Reason::Rule(i) = rule else {
                    unreachable!()
                };
                let rule = &t.routes[0].targeting[*i];
                assert_eq!(variant, t.routes[0].variants[rule.variant].name, "{label}");
            }
            None => assert_eq!(reason, Reason::Hash, "{label}: {path}"),
        }
    }
}

#[test]
fn a_signed_cookie_is_honoured_and_hashed_as_its_identity() {
    let signed = table(Some(SECRET), &[]);
    let (variant, reason, issued) = decide(&signed, &request("/", None), 0xab);
    assert_eq!(reason, Reason::New);
    let set_cookie = issued.expect("a signed cookie is issued");
    let value = issued_value(&set_cookie);
    let identity = "ab".repeat(IDENTITY_BYTES);
    assert_eq!(value.split_once('.').unwrap().0, identity, "{set_cookie}");

    let cookie = format!("canary_id={value}");
    let again = decide(&signed, &request("/", Some(&cookie)), 0);
    assert_eq!(again, (variant.clone(), Reason::Hash, None), "honoured");
    // The variant is the unsigned identity's: signing does not move a user.
    let unsigned = table(None, &[]);
    let plain = format!("canary_id={identity}");
    let hashed = decide(&unsigned, &request("/", Some(&plain)), 0);
    assert_eq!(hashed, (variant, Reason::Hash, None));
}

#[test]
fn a_cookie_that_does_not_verify_is_replaced() {
    let t = table(Some(SECRET), &[]);
    let (_, _, issued) = decide(&t, &request("/", None), 0xab);
    let value = issued_value(issued.as_deref().unwrap()).to_owned();
    let flip = |s: &str, i: usize| {
        let mut bytes = s.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).unwrap()
    };
    let foreign = table(Some("an-unknown-secret-of-enough-length"), &[]);
    let (_, _, foreign_issued) = decide(&foreign, &request("/", None), 0xab);
    let cases = [
        ("tampered identity", flip(&value, 0)),
        ("tampered signature", flip(&value, value.len() - 1)),
        ("unsigned", "ab".repeat(IDENTITY_BYTES)),
        (
            "foreign",
            issued_value(foreign_issued.as_deref().unwrap()).to_owned(),
        ),
    ];
    for (label, value) in cases {
        let cookie = format!("canary_id={value}");
        let (_, reason, issued) = decide(&t, &request("/", Some(&cookie)), 0xcd);
        assert_eq!(reason, Reason::New, "{label}");
        let fresh = issued.unwrap_or_else(|| panic!("{label}: no new cookie"));
        assert!(
            fresh.starts_with(&format!("canary_id={}.", "cd".repeat(IDENTITY_BYTES))),
            "{label}: {fresh}"
        );
    }
}

#[test]
fn cookies_signed_before_a_rotation_verify_during_it() {
    let before = table(Some(OLD_SECRET), &[]);
    let during = table(Some(SECRET), &[OLD_SECRET]);
    let after = table(Some(SECRET), &[]);
    let (variant, _, issued) = decide(&before, &request("/", None), 0x5a);
    let cookie = format!("canary_id={}", issued_value(issued.as_deref().unwrap()));
    assert_eq!(
        decide(&during, &request("/", Some(&cookie)), 0),
        (variant, Reason::Hash, None)
    );
    let (_, reason, issued) = decide(&during, &request("/", None), 0x5a);
    assert_eq!(reason, Reason::New);
    let resigned = format!("canary_id={}", issued_value(issued.as_deref().unwrap()));
    assert_ne!(
        resigned, cookie,
        "new cookies are signed with the new secret"
    );
    assert_eq!(
        decide(&after, &request("/", Some(&resigned)), 0).1,
        Reason::Hash
    );
    assert_eq!(
        decide(&after, &request("/", Some(&cookie)), 0).1,
        Reason::New
    );
}

#[test]
fn secrets_are_never_shown() {
    let short = "Zq8-secret-too-short";
    let config = serde_json::json!({ "routes": [{
        "name": "r", "variants": [{ "name": "a", "weight": 100 }],
        "stickiness": { "cookie": { "name": "id", "secret": short,
            "previousSecrets": [SECRET, SECRET, "bad secret"] } }
    }]});
    let errors = parse(config.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert_eq!(errors.lines().count(), 3, "{errors}");
    for secret in [short, SECRET, "bad secret"] {
        assert!(!errors.contains(secret), "{errors}");
    }
    let config = canary_filter::config::decode(config.to_string().as_bytes()).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains(short) && !shown.contains(SECRET), "{shown}");
    let t = table(Some(SECRET), &[OLD_SECRET]);
    let shown = format!("{t:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains(OLD_SECRET),
        "{shown}"
    );
}
