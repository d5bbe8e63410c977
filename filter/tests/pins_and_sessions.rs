//! Pins and session stickiness, decided as the filter decides a request and answered as it
//! answers one: the stream glue run against the host double, so that the `Set-Cookie` values
//! are the ones Envoy would send.

// Test code: indexing and unwrapping are how a table test says what it expects.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use canary_filter::cookie::Signer;
use canary_filter::host::Host;
use canary_filter::http::{Plugin, Stream};
use canary_filter::testing::MockHost;
use serde_json::{json, Value};

const SECRET: &str = "k7Qw9zR2mX4vB8nL1pT6yH3sF5dA0cE9";
const OLD_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A route `web`, stable/canary at `canary` %, with `targeting` and `stickiness`.
fn config(canary: f64, targeting: Value, stickiness: Value) -> Value {
    json!({
        "debugHeader": true,
        "routes": [{
            "name": "web",
            "variants": [
                { "name": "stable", "weight": 100.0 - canary },
                { "name": "canary", "weight": canary }
            ],
            "targeting": targeting,
            "stickiness": stickiness
        }]
    })
}

fn pin_rules() -> Value {
    json!([
        { "name": "pin", "query": "canary", "equals": "pin", "variant": "canary", "pin": true },
        { "name": "unpin", "query": "canary", "equals": "unpin", "variant": "stable", "unpin": true },
        { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" }
    ])
}

fn plugin(config: &Value) -> Rc<Plugin> {
    let host = MockHost::default();
    let plugin = Plugin::configure(&host, 1, Some(config.to_string().as_bytes()));
    Rc::new(plugin.unwrap_or_else(|| {
        panic!(
            "rejected: {:?}",
            host.logs(canary_filter::host::LogLevel::Error)
        )
    }))
}

/// What the client sees of one response.
#[derive(Debug)]
struct Answer {
    variant: String,
    /// `route;variant;reason`, the debug header.
    decision: String,
    set_cookies: Vec<String>,
}

impl Answer {
    fn reason(&self) -> &str {
        self.decision.rsplit(';').next().unwrap()
    }

    /// The `Set-Cookie` of cookie `name`, if the response has one.
    fn set_cookie(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        self.set_cookies
            .iter()
            .find(|c| c.starts_with(&prefix))
            .map(String::as_str)
    }

    /// The value the response gives cookie `name`.
    fn cookie_value(&self, name: &str) -> Option<&str> {
        let set = self.set_cookie(name)?;
        Some(set[name.len() + 1..].split(';').next().unwrap())
    }
}

fn send(
    plugin: &Rc<Plugin>,
    path: &str,
    cookies: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Answer {
    let cookie = cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut all = vec![(":authority", "web"), (":path", path)];
    if !cookie.is_empty() {
        all.push(("cookie", cookie.as_str()));
    }
    all.extend_from_slice(headers);
    let host = MockHost::request(&all);
    // The double's random source starts over with each host: draw past what earlier requests
    // drew, so that new identities differ.
    for _ in 0..REQUESTS.fetch_add(1, Ordering::Relaxed) {
        host.random(&mut [0; 16]);
    }
    let mut stream = Stream::new(Rc::clone(plugin), 2);
    stream.on_request_headers(&host);
    host.set_response_header(":status", "200");
    stream.on_response_headers(&host);
    Answer {
        variant: host.request_values("x-canary-variant").concat(),
        decision: host.response_values("x-canary-decision").concat(),
        set_cookies: host.response_values("set-cookie"),
    }
}

const PIN: &str = "canary_pin_web";

/// Requests sent so far, by every test.
static REQUESTS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_pin_rule_pins_and_the_pin_is_honoured_without_the_rule() {
    let p = plugin(&config(0.0, pin_rules(), json!({})));
    let pinned = send(&p, "/?canary=pin", &[], &[]);
    assert_eq!(
        (pinned.variant.as_str(), pinned.reason()),
        ("canary", "rule:pin")
    );
    assert_eq!(
        pinned.set_cookie(PIN),
        Some("canary_pin_web=canary; Max-Age=86400; Path=/; HttpOnly; SameSite=Lax"),
        "unsigned: the bare variant, with the default attributes"
    );
    let later = send(&p, "/", &[(PIN, "canary")], &[]);
    assert_eq!((later.variant.as_str(), later.reason()), ("canary", "pin"));
    assert!(later.set_cookies.is_empty(), "{:?}", later.set_cookies);

    // A rule beats a pin; a rule that is not a pin rule leaves the pin alone.
    let ruled = send(&p, "/?canary=unpin", &[(PIN, "canary")], &[]);
    assert_eq!(
        (ruled.variant.as_str(), ruled.reason()),
        ("stable", "rule:unpin")
    );
    assert_eq!(
        ruled.set_cookie(PIN),
        Some("canary_pin_web=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"),
        "unpin clears"
    );
    let qa = send(&p, "/", &[(PIN, "canary")], &[("x-canary", "always")]);
    assert_eq!(qa.reason(), "rule:qa");
    assert_eq!(qa.set_cookie(PIN), None);
}

#[test]
fn a_pin_no_pin_rule_allows_is_ignored_and_cleared() {
    let p = plugin(&config(
        0.0,
        pin_rules(),
        json!({ "keys": [{ "header": "x-user" }] }),
    ));
    let cases = [
        ("the baseline, which no pin rule targets", "stable"),
        ("a variant not on the route", "v3"),
        ("empty", ""),
        ("another spelling", "Canary"),
    ];
    for (label, value) in cases {
        let a = send(&p, "/", &[(PIN, value)], &[("x-user", "u1")]);
        assert_eq!(
            (a.variant.as_str(), a.reason()),
            ("stable", "hash"),
            "{label}"
        );
        assert_eq!(
            a.set_cookie(PIN),
            Some("canary_pin_web=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"),
            "{label}"
        );
    }
}

#[test]
fn a_pin_to_a_variant_removed_by_an_update_is_ignored_and_cleared() {
    let before = plugin(&config(0.0, pin_rules(), json!({})));
    let pinned = send(&before, "/?canary=pin", &[], &[]);
    let value = pinned.cookie_value(PIN).unwrap().to_owned();
    // The update removes the canary and its rules, keeping the pin cookie's configuration.
    let after = plugin(&json!({ "debugHeader": true, "routes": [{
        "name": "web", "variants": [{ "name": "stable", "weight": 100 }],
        "stickiness": { "pin": {} } }] }));
    let a = send(&after, "/", &[(PIN, &value)], &[]);
    assert_eq!((a.variant.as_str(), a.reason()), ("stable", "new"));
    assert!(
        a.set_cookie(PIN).unwrap().contains("Max-Age=0"),
        "{:?}",
        a.set_cookies
    );
    // An update that keeps the variant but no longer pins it clears it too.
    let unpinnable = plugin(&config(0.0, json!([]), json!({ "pin": {} })));
    let a = send(&unpinnable, "/", &[(PIN, &value)], &[]);
    assert_eq!(a.reason(), "new");
    assert!(a.set_cookie(PIN).unwrap().contains("Max-Age=0"));
}

fn signed() -> Value {
    json!({ "cookie": { "name": "canary_id", "secret": SECRET, "previousSecrets": [OLD_SECRET] },
            "pin": { "cookie": "pin", "maxAge": 600, "secure": true } })
}

#[test]
fn signed_pins_verify_and_forged_ones_are_ignored() {
    let p = plugin(&config(0.0, pin_rules(), signed()));
    let pinned = send(&p, "/?canary=pin", &[], &[]);
    let set = pinned.set_cookie("pin").unwrap();
    assert!(
        set.ends_with("; Max-Age=600; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{set}"
    );
    let value = pinned.cookie_value("pin").unwrap().to_owned();
    let (variant, mac) = value.split_once('.').unwrap();
    assert_eq!((variant, mac.len()), ("canary", 64));
    assert_eq!(send(&p, "/", &[("pin", &value)], &[]).reason(), "pin");

    let identity_mac = |key: &str, payload: &str| {
        let mac = Signer::new(key, []).unwrap().sign(payload.as_bytes());
        format!("{payload}.{}", std::str::from_utf8(&mac).unwrap())
    };
    let tag = |key: &str, tag: &[u8]| {
        let mac = Signer::new(key, []).unwrap().sign_parts(&[tag, b"canary"]);
        format!("canary.{}", std::str::from_utf8(&mac).unwrap())
    };
    let forged = [
        ("unsigned", "canary".to_owned()),
        ("tampered", value.replace("canary.", "canarz.")),
        (
            "another MAC digit",
            format!(
                "{}{}",
                &value[..value.len() - 1],
                if value.ends_with('0') { '1' } else { '0' }
            ),
        ),
        ("signed as an identity is", identity_mac(SECRET, "canary")),
        (
            "signed for another route",
            tag(SECRET, b"canary-pin\0api\0"),
        ),
        (
            "signed with an unknown key",
            tag("an-unknown-secret-of-enough-length", b"canary-pin\0web\0"),
        ),
    ];
    for (label, value) in forged {
        let a = send(&p, "/", &[("pin", &value)], &[]);
        assert_eq!(a.reason(), "new", "{label}");
        assert!(
            a.set_cookie("pin").unwrap().contains("Max-Age=0"),
            "{label}"
        );
    }
    let rotated = tag(OLD_SECRET, b"canary-pin\0web\0");
    assert_eq!(
        send(&p, "/", &[("pin", &rotated)], &[]).reason(),
        "pin",
        "a previous secret"
    );
}

fn session(canary: f64) -> Rc<Plugin> {
    plugin(&config(
        canary,
        json!([]),
        json!({ "mode": "session", "keys": [{ "header": "x-user" }],
                "cookie": { "name": "canary_id", "secret": SECRET } }),
    ))
}

/// `n` new sessions at the plugin's weights: each one's cookie value and variant.
fn new_sessions(p: &Rc<Plugin>, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let a = send(p, "/", &[], &[]);
            assert_eq!(a.reason(), "new");
            let value = a.cookie_value("canary_id").unwrap().to_owned();
            let (payload, mac) = value.rsplit_once('.').unwrap();
            let (identity, variant) = payload.split_once('~').unwrap();
            assert_eq!((identity.len(), mac.len()), (32, 64), "{value}");
            assert_eq!(variant, a.variant, "the cookie carries the variant served");
            (value, a.variant)
        })
        .collect()
}

#[test]
fn a_session_keeps_its_variant_across_a_weight_change() {
    let sessions = new_sessions(&session(50.0), 200);
    let canary = sessions.iter().filter(|(_, v)| v == "canary").count();
    assert!((60..140).contains(&canary), "{canary} of 200 at 50 %");
    let after = session(10.0);
    for (value, variant) in &sessions {
        let a = send(&after, "/", &[("canary_id", value)], &[]);
        assert_eq!((&a.variant, a.reason()), (variant, "session"), "{value}");
        assert!(a.set_cookies.is_empty());
    }
    let fresh = new_sessions(&after, 400);
    let canary = fresh.iter().filter(|(_, v)| v == "canary").count();
    assert!(
        (10..80).contains(&canary),
        "{canary} of 400 new sessions at 10 %"
    );
}

#[test]
fn a_session_on_a_variant_at_weight_0_or_removed_is_assigned_again() {
    let sessions = new_sessions(&session(50.0), 40);
    let aborted = session(0.0);
    let removed = plugin(&json!({ "debugHeader": true, "routes": [{ "name": "web",
        "variants": [{ "name": "stable", "weight": 100 }],
        "stickiness": { "mode": "session", "cookie": { "name": "canary_id", "secret": SECRET } } }] }));
    for (value, variant) in &sessions {
        let identity = value.split('~').next().unwrap();
        for p in [&aborted, &removed] {
            let a = send(p, "/", &[("canary_id", value)], &[]);
            let reason = if variant == "stable" {
                "session"
            } else {
                "hash"
            };
            assert_eq!(
                (a.variant.as_str(), a.reason()),
                ("stable", reason),
                "{value}"
            );
            if variant == "canary" {
                let reissued = a.cookie_value("canary_id").unwrap();
                assert!(
                    reissued.starts_with(&format!("{identity}~stable.")),
                    "{reissued}"
                );
            }
        }
    }
}

#[test]
fn tampered_and_foreign_session_cookies_are_replaced() {
    let p = session(50.0);
    let (value, _) = new_sessions(&p, 1).remove(0);
    let (payload, _) = value.rsplit_once('.').unwrap();
    let identity = payload.split('~').next().unwrap();
    let other = if payload.ends_with("canary") {
        "stable"
    } else {
        "canary"
    };
    let hash_mode = Signer::new(SECRET, []).unwrap();
    let as_identity = |payload: &str| {
        format!(
            "{payload}.{}",
            std::str::from_utf8(&hash_mode.sign(payload.as_bytes())).unwrap()
        )
    };
    let cases = [
        (
            "variant changed",
            value.replace(payload, &format!("{identity}~{other}")),
        ),
        ("unsigned", format!("{identity}~{other}")),
        (
            "signed as a hash-mode identity",
            as_identity(&format!("{identity}~{other}")),
        ),
        ("bare identity", identity.to_owned()),
    ];
    for (label, forged) in cases {
        let a = send(&p, "/", &[("canary_id", &forged)], &[]);
        assert_eq!(a.reason(), "new", "{label}");
        let issued = a.cookie_value("canary_id").unwrap();
        assert!(
            !issued.starts_with(identity),
            "{label}: a new identity, {issued}"
        );
    }
}

#[test]
fn a_hash_mode_cookie_read_in_session_mode_keeps_its_identity() {
    let hash = plugin(&config(
        50.0,
        json!([]),
        json!({ "cookie": { "name": "canary_id", "secret": SECRET } }),
    ));
    let issued = send(&hash, "/", &[], &[]);
    let value = issued.cookie_value("canary_id").unwrap().to_owned();
    let identity = value.split('.').next().unwrap();
    let a = send(&session(50.0), "/", &[("canary_id", &value)], &[]);
    assert_eq!((&a.variant, a.reason()), (&issued.variant, "hash"));
    let upgraded = a.cookie_value("canary_id").unwrap();
    assert!(
        upgraded.starts_with(&format!("{identity}~{}.", issued.variant)),
        "{upgraded}"
    );
    // And back: hash mode does not take a session cookie for an identity.
    let back = send(&hash, "/", &[("canary_id", upgraded)], &[]);
    assert_eq!(back.reason(), "new");
}

#[test]
fn in_session_mode_an_identity_key_hashes_as_in_hash_mode() {
    let p = session(50.0);
    let a = send(&p, "/", &[], &[("x-user", "alice")]);
    assert_eq!(a.reason(), "hash");
    assert!(a.set_cookies.is_empty());
}

#[test]
fn a_pin_beats_a_session_and_leaves_it_alone() {
    let mut c = config(50.0, pin_rules(), signed());
    c["routes"][0]["stickiness"]["mode"] = "session".into();
    let p = plugin(&c);
    let (value, _) = new_sessions(&p, 1).remove(0);
    let pin = send(&p, "/?canary=pin", &[("canary_id", &value)], &[])
        .cookie_value("pin")
        .unwrap()
        .to_owned();
    let a = send(&p, "/", &[("canary_id", &value), ("pin", &pin)], &[]);
    assert_eq!((a.variant.as_str(), a.reason()), ("canary", "pin"));
    assert!(a.set_cookies.is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Changing any one byte of a signed pin or session value makes it count for nothing.
        #[test]
        fn any_single_byte_change_is_refused(at in any::<prop::sample::Index>(), to in any::<u8>()) {
            let mut c = config(50.0, pin_rules(), signed());
            c["routes"][0]["stickiness"]["mode"] = "session".into();
            let p = plugin(&c);
            let pin = send(&p, "/?canary=pin", &[], &[]).cookie_value("pin").unwrap().to_owned();
            let (session, _) = new_sessions(&p, 1).remove(0);
            for (name, value) in [("pin", pin), ("canary_id", session)] {
                let mut bytes = value.into_bytes();
                let i = at.index(bytes.len());
                prop_assume!(bytes[i] != to && to.is_ascii_graphic() && to != b';' && to != b'"');
                bytes[i] = to;
                let tampered = String::from_utf8(bytes).unwrap();
                let a = send(&p, "/", &[(name, &tampered)], &[]);
                prop_assert_eq!(a.reason(), "new", "{}={}", name, tampered);
            }
        }
    }
}

#[test]
fn configuration_errors_name_their_path() {
    let secret = json!({ "name": "canary_id", "secret": SECRET });
    let cases = [
        (
            config(0.0, json!([{ "name": "t", "header": "x", "equals": "1", "variant": "canary",
                "pin": true, "unpin": true }]), json!({})),
            "routes[0].targeting[0]",
            "has both pin and unpin; use at most one",
        ),
        (
            config(0.0, json!([{ "name": "t", "header": "x", "equals": "1", "variant": "canary",
                "pin": "yes" }]), json!({})),
            "routes[0].targeting[0].pin",
            "invalid type",
        ),
        (
            config(0.0, json!([]), json!({ "mode": "session" })),
            "routes[0].stickiness.mode",
            "\"session\" needs stickiness.cookie: the identity cookie carries the variant served",
        ),
        (
            config(0.0, json!([]), json!({ "mode": "session", "cookie": { "name": "canary_id" } })),
            "routes[0].stickiness.mode",
            "\"session\" needs stickiness.cookie.secret: the variant the cookie carries must be signed",
        ),
        (
            config(0.0, json!([]), json!({ "mode": "sticky", "cookie": secret })),
            "routes[0].stickiness.mode",
            "unknown variant `sticky`",
        ),
        (
            config(0.0, json!([]), json!({ "pin": { "cookie": "a b" } })),
            "routes[0].stickiness.pin.cookie",
            "\"a b\" is not a valid cookie name",
        ),
        (
            config(0.0, json!([]), json!({ "cookie": secret, "pin": { "cookie": "canary_id" } })),
            "routes[0].stickiness.pin.cookie",
            "\"canary_id\" is the identity cookie's name; the pin cookie needs its own",
        ),
        (
            config(0.0, json!([]), json!({ "pin": { "maxAge": 0 } })),
            "routes[0].stickiness.pin.maxAge",
            "must be at least 1 second",
        ),
        (
            config(0.0, json!([]), json!({ "pin": { "path": "x" } })),
            "routes[0].stickiness.pin.path",
            "must start with '/'",
        ),
        (
            config(0.0, json!([]), json!({ "pin": { "sameSite": "None" } })),
            "routes[0].stickiness.pin.sameSite",
            "None requires secure: true",
        ),
        (
            config(0.0, json!([]), json!({ "pin": { "name": "x" } })),
            "routes[0].stickiness.pin.name",
            "unknown field `name`",
        ),
    ];
    for (config, path, reason) in cases {
        let found: Vec<(String, String)> = match canary_filter::parse(config.to_string().as_bytes())
        {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|e| (e.path.clone(), e.reason.clone()))
                .collect(),
        };
        assert!(
            found.iter().any(|(p, r)| p == path && r.contains(reason)),
            "expected `{path}: …{reason}…`, got {found:?}"
        );
    }
}

#[test]
fn a_route_without_pins_or_sessions_reads_no_pin_cookie() {
    let t = canary_filter::parse(
        config(
            50.0,
            json!([]),
            json!({ "cookie": { "name": "canary_id" } }),
        )
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let stickiness = &t.routes[0].stickiness;
    assert!(stickiness.pins.is_none() && stickiness.session.is_none());
    assert_eq!(t.routes[0].sources.len(), 1, "the identity cookie only");
}

/// On a route with a ramp, a session is kept while its variant's weight at the time of the
/// request is above 0: a ramp down to 0 moves the canary's sessions once it has ended.
#[test]
fn a_session_follows_the_weight_in_force_on_a_ramp() {
    let mut c = config(
        50.0,
        json!([]),
        json!({ "mode": "session", "cookie": { "name": "canary_id", "secret": SECRET } }),
    );
    c["routes"][0]["ramp"] = json!({ "variant": "canary", "from": 50, "to": 0,
        "start": "2026-12-07T12:00:00Z", "duration": "1h" });
    let table = canary_filter::parse(c.to_string().as_bytes()).unwrap();
    let start =
        u64::try_from(canary_filter::table::parse_time("2026-12-07T12:00:00Z").unwrap()).unwrap();
    let route = &table.routes[0];
    let on_canary = (0u8..=255)
        .find_map(|b| {
            let identity = format!("{b:02x}").repeat(16);
            (route.variants[route.assign(identity.as_bytes())].name == "canary").then_some(identity)
        })
        .unwrap();
    let session = canary_filter::carried::SessionCookie::new(Signer::new(SECRET, []).unwrap());
    let cookie = route.stickiness.cookie.as_ref().unwrap();
    let set = String::from_utf8(session.set_cookie(cookie, &on_canary, "canary")).unwrap();
    let value = set.split(';').next().unwrap().to_owned();
    let request =
        canary_filter::RequestHeaders::from_pairs(&[(":path", "/"), ("cookie", value.as_str())]);
    for (at, variant, reason) in [
        (
            start + 30 * 60 * 1000,
            "canary",
            canary_filter::Reason::Session,
        ),
        (
            start + 2 * 3600 * 1000,
            "stable",
            canary_filter::Reason::Hash,
        ),
    ] {
        let d = route.decide(&request, || at, |_| false).unwrap();
        assert_eq!(
            (d.variant.name.as_str(), d.reason),
            (variant, reason),
            "at {at}"
        );
    }
}
