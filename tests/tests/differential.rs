//! The two builds decide alike: the same 10,000 users, sent through an Envoy running the
//! proxy-wasm filter and one running the native dynamic module, get the same route, variant and
//! reason from both, and the same answer as the decision core itself (`canary_filter`'s
//! `RoutingTable::decide`, run in the test on the same request).
//!
//! The mix covers every kind of decision: identity headers and cookies, the identity cookie,
//! targeting rules of each predicate on headers, cookies and query parameters (percent-encoded
//! names and values, `+`, repeated and empty parameters), signed identity cookies (signed with
//! the current secret or a previous one, tampered, unsigned, signed with an unknown secret),
//! ramps (one that has ended, one that has not started and one running during the test), paths
//! of other routes and paths no route matches, client-sent decision headers, and clients with no
//! identity. A client with no identity gets a new random identity from each build, so for it
//! only the reason, whether a `Set-Cookie` is issued and its attributes are compared, and each
//! build's variant is checked against the identity it issued (and its signature).
//!
//! Each user's two requests are sent at the same moment. On the running ramp a user's variant
//! can change between the two: where the core's answers just before the pair was sent and just
//! after it returned differ, each build may give either (such users are counted, and are rare:
//! a few milliseconds of a 40-second ramp); everywhere else the answers must be identical.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use canary_e2e::{client, concurrently, get, Build, Envoy, Reply, Upstream};
use canary_filter::cookie::Signer;
use canary_filter::table::{Reason, Route};
use canary_filter::{RequestHeaders, RoutingTable};

const USERS: usize = 10_000;
/// The kinds of request, chosen by `i % KINDS` (see [`request`]).
const KINDS: usize = 32;
/// Signs the identity cookies of route `signed`.
const SECRET: &str = "Xk4_pV9-mN2qR7tL5wZ8cY3b";
/// Signed the cookies of route `signed` before [`SECRET`]; still accepted.
const PREVIOUS_SECRET: &str = "Hd6-aF1_sJ8kE3nU0oW5gT2r";
/// A secret the configuration does not know.
const UNKNOWN_SECRET: &str = "Zr9_bQ4-vC7xM1yP6hK3jL0s";
/// How long the running ramp lasts: longer than the test sends requests.
const LIVE_RAMP_MS: u64 = 40_000;
/// How far apart the test's clock and Envoy's may read the same moment: both are this
/// machine's system clock, read a little before and after each request.
const CLOCK_SLACK_MS: u64 = 100;
/// The end of route `ramp-later`'s ramp, `2100-01-01T00:00:00Z` plus one hour, in Unix
/// milliseconds.
const LATER_RAMP_END_MS: u64 = 4_102_444_800_000 + 3_600_000;

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds")
}

/// The configuration, with route `ramp-live`'s ramp starting at `live_start` (RFC 3339).
fn config(live_start: &str) -> String {
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
            },
            {
                "name": "query",
                "match": { "pathPrefixes": ["/q/"] },
                "variants": [
                    { "name": "stable", "weight": 50 },
                    { "name": "canary", "weight": 35 },
                    { "name": "beta", "weight": 15 }
                ],
                "targeting": [
                    { "name": "q-equals", "query": "canary", "equals": "always", "variant": "canary" },
                    { "name": "q-in", "query": "ring", "in": ["beta testers", "staff"], "variant": "beta" },
                    { "name": "q-prefix", "query": "tenant", "prefix": "eu/", "variant": "canary" },
                    { "name": "q-matches", "query": "build", "matches": "[0-9]+\\.[0-9]+", "variant": "beta" },
                    { "name": "q-present", "query": "debug", "present": true, "variant": "beta" },
                    { "name": "c-in", "cookie": "plan", "in": ["gold", "platinum"], "variant": "canary" },
                    { "name": "c-prefix", "cookie": "ring", "prefix": "int-", "variant": "stable" },
                    { "name": "c-matches", "cookie": "beta", "matches": "yes|on", "variant": "beta" },
                    { "name": "c-present", "cookie": "preview", "present": true, "variant": "canary" }
                ],
                "stickiness": { "keys": [ { "header": "x-user-id" } ], "salt": "differential-query" }
            },
            {
                "name": "signed",
                "match": { "pathPrefixes": ["/signed/"] },
                "variants": [ { "name": "stable", "weight": 60 }, { "name": "canary", "weight": 40 } ],
                "stickiness": {
                    "keys": [],
                    "cookie": {
                        "name": "sid", "maxAge": 600, "path": "/signed/", "secure": true,
                        "httpOnly": false, "sameSite": "None",
                        "secret": SECRET, "previousSecrets": [PREVIOUS_SECRET]
                    },
                    "salt": "differential-signed"
                }
            },
            {
                "name": "ramp-done",
                "match": { "pathPrefixes": ["/ramp-done/"] },
                "variants": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
                "ramp": { "variant": "canary", "from": 10, "to": 60,
                          "start": "2020-01-01T00:00:00Z", "duration": "1h" },
                "stickiness": { "keys": [ { "header": "x-user-id" } ] }
            },
            {
                "name": "ramp-later",
                "match": { "pathPrefixes": ["/ramp-later/"] },
                "variants": [ { "name": "stable", "weight": 80 }, { "name": "canary", "weight": 20 } ],
                "ramp": { "variant": "canary", "from": 20, "to": 70,
                          "start": "2100-01-01T00:00:00Z", "duration": "1h" },
                "stickiness": { "keys": [ { "header": "x-user-id" } ] }
            },
            {
                "name": "ramp-live",
                "match": { "pathPrefixes": ["/ramp-live/"] },
                "variants": [ { "name": "stable", "weight": 100 }, { "name": "canary", "weight": 0 } ],
                "ramp": { "variant": "canary", "from": 0, "to": 100,
                          "start": live_start, "duration": format!("{LIVE_RAMP_MS}ms") },
                "stickiness": { "keys": [ { "header": "x-user-id" } ] }
            }
        ]
    })
    .to_string()
}

/// Query strings and `cookie` headers sent to route `query` (with an identity header, so that
/// where no rule holds the decision is `hash`).
const QUERY_CASES: &[(&str, &str)] = &[
    ("?canary=always", ""),
    ("?lang=en&canary=always", ""),
    ("?c%61nary=alw%61ys", ""),
    ("?canary=never&canary=always", ""),
    ("?canary=always&canary=never", ""),
    ("?Canary=always", ""),
    ("?canary=al+ways", ""),
    ("?canary=%FF", ""),
    ("?canary=100%", ""),
    ("?debug&canary=always", ""),
    ("?ring=beta+testers", ""),
    ("?ring=beta%20testers", ""),
    ("?ring=beta%2Btesters", ""),
    ("?ring=st%61ff", ""),
    ("?ring=staff%", ""),
    ("?ring=", ""),
    ("?tenant=eu%2F12", ""),
    ("?tenant=eu/12", ""),
    ("?tenant=us%2F1", ""),
    ("?tenant=EU/1", ""),
    ("?build=1.2", ""),
    ("?build=10%2E25", ""),
    ("?build=1.2x", ""),
    ("?build=1.2&build=x", ""),
    ("?build=x&build=1.2", ""),
    ("?debug", ""),
    ("?x=1&debug=&y=2", ""),
    ("?de%62ug", ""),
    ("?debugx=1", ""),
    ("?%3Fdebug=1", ""),
    ("?&&=&debug", ""),
    ("?debug", "plan=gold"),
    ("", "plan=gold"),
    ("", "a=1; plan=platinum"),
    ("", "plan=Gold"),
    ("", "ring=int-7"),
    ("", "ring=ext-7"),
    ("?ring=int-7", ""),
    ("", "beta=yes"),
    ("", "beta=on; plan=silver"),
    ("", "beta=yess"),
    ("", "preview="),
    ("", "preview=1; plan=gold"),
    ("?canary=never", "plan=gold"),
    ("?preview=1", ""),
];

/// The cookies of route `signed` for identity `id`, by `case`; with `None` the request carries
/// no identity cookie.
fn signed_cookie(case: usize, id: &str) -> Option<String> {
    let sign = |secret: &str, identity: &str| {
        let signer = Signer::new(secret, []).expect("a secret");
        let mac = signer.sign(identity.as_bytes());
        format!("{identity}.{}", String::from_utf8_lossy(&mac))
    };
    let current = sign(SECRET, id);
    match case % 9 {
        0 => Some(format!("sid={current}")),
        1 => Some(format!("sid={}", sign(PREVIOUS_SECRET, id))),
        2 => Some(format!("other=1; sid={current}")),
        3 => {
            // The last digit of the MAC changed.
            let (head, last) = current.split_at(current.len() - 1);
            let flipped = if last == "0" { "1" } else { "0" };
            Some(format!("sid={head}{flipped}"))
        }
        4 => {
            // Another identity under the same MAC.
            let (_, mac) = current.split_once('.').expect("signed");
            Some(format!("sid=f{}.{mac}", &id[1..]))
        }
        5 => Some(format!("sid={id}")),
        6 => Some(format!("sid={}", sign(UNKNOWN_SECRET, id))),
        7 => {
            // The MAC in upper case: a signature has one spelling, in lower case.
            let (identity, mac) = current.split_once('.').expect("signed");
            Some(format!("sid={identity}.{}", mac.to_uppercase()))
        }
        _ => None,
    }
}

/// One user's request: its path and headers.
struct Request {
    path: String,
    headers: Vec<(&'static str, String)>,
}

/// User `i`'s request: `i % KINDS` picks the kind of decision, and `i / KINDS` the case within
/// a kind that has several.
fn request(i: usize) -> Request {
    let id = format!("user-{i}");
    let case = i / KINDS;
    let (path, headers): (String, Vec<(&str, String)>) = match i % KINDS {
        0..=2 => ("/api/items".into(), vec![("x-user-id", id)]),
        3 => (
            "/api/items".into(),
            vec![("cookie", format!("a=1; session_id={id}"))],
        ),
        4 => (
            "/api/items".into(),
            vec![("cookie", format!("canary_id={i:032x}; b=2"))],
        ),
        5 => (
            "/api/items".into(),
            vec![
                ("x-user-id", id),
                (
                    "x-user-group",
                    ["beta", "staff", "ops"][case % 3].to_owned(),
                ),
            ],
        ),
        6 => (
            "/api/items".into(),
            vec![
                ("x-user-id", id),
                (
                    "x-tenant",
                    format!("{}-{}", ["eu", "int", "us"][case % 3], i % 100),
                ),
            ],
        ),
        7 => (
            "/api/items".into(),
            vec![
                ("x-user-id", id),
                (
                    "cookie",
                    format!("canary={}", ["never", "always"][case % 2]),
                ),
                ("x-canary-variant", "beta".to_owned()),
            ],
        ),
        8 if case.is_multiple_of(2) => (
            "/api/items".into(),
            vec![("x-user-id", id), ("x-canary", "always".to_owned())],
        ),
        8 => (
            "/api/items".into(),
            vec![("x-user-id", id), ("x-debug", "1".to_owned())],
        ),
        9 => ("/web/home".into(), vec![("x-user-id", id)]),
        10 => ("/other".into(), vec![("x-user-id", id)]),
        11 => ("/api/items".into(), Vec::new()),
        kind @ 12..=19 => {
            let (query, cookie) = QUERY_CASES[(case * 8 + kind - 12) % QUERY_CASES.len()];
            let mut headers = vec![("x-user-id", id)];
            if !cookie.is_empty() {
                headers.push(("cookie", cookie.to_owned()));
            }
            (format!("/q/items{query}"), headers)
        }
        kind @ 20..=24 => {
            let cookie = signed_cookie(case * 5 + kind - 20, &format!("{i:032x}"));
            (
                "/signed/cart".into(),
                cookie.map(|c| ("cookie", c)).into_iter().collect(),
            )
        }
        25..=27 => ("/ramp-live/page".into(), vec![("x-user-id", id)]),
        28 => ("/ramp-done/page".into(), vec![("x-user-id", id)]),
        29 => ("/ramp-later/page".into(), vec![("x-user-id", id)]),
        _ => (
            format!("/api/items?canary=always&n={i}"),
            vec![("x-user-id", id)],
        ),
    };
    Request { path, headers }
}

/// What both builds answered one user, and when: the two requests were sent at `sent` and
/// both had returned at `returned` (Unix milliseconds).
struct Pair {
    wasm: Reply,
    dynamic: Reply,
    sent: u64,
    returned: u64,
}

/// Sends each user's request to both Envoys at once.
async fn decisions(wasm: &Envoy, dynamic: &Envoy) -> Vec<Pair> {
    let http = client();
    let urls = (wasm.url(""), dynamic.url(""));
    concurrently((0..USERS).collect(), 32, |i| {
        let (http, (wasm, dynamic)) = (http.clone(), urls.clone());
        async move {
            let request = request(i);
            let headers: Vec<(&str, &str)> = request
                .headers
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            let (wasm, dynamic) = (
                format!("{wasm}{}", request.path),
                format!("{dynamic}{}", request.path),
            );
            let sent = now_ms();
            let (w, d) = tokio::join!(get(&http, &wasm, &headers), get(&http, &dynamic, &headers));
            let returned = now_ms();
            Pair {
                wasm: w.unwrap_or_else(|e| panic!("request {i} to the wasm build failed: {e}")),
                dynamic: d.unwrap_or_else(|e| {
                    panic!("request {i} to the dynamic-module build failed: {e}")
                }),
                sent,
                returned,
            }
        }
    })
    .await
}

/// What the decision core decides for a request at `now_ms`: the route, the debug header's
/// `<route>;<variant>;<reason>` and whether it issues an identity cookie. A new identity is
/// random, so for reason `new` the variant is not the one Envoy chose.
fn core_decision<'t>(
    table: &'t RoutingTable,
    request: &Request,
    now_ms: u64,
) -> Option<(&'t Route, String, bool)> {
    let mut headers = vec![
        (":authority".to_owned(), b"localhost".to_vec()),
        (":path".to_owned(), request.path.as_bytes().to_vec()),
    ];
    for (name, value) in &request.headers {
        headers.push(((*name).to_owned(), value.as_bytes().to_vec()));
    }
    let decision = table.decide(&RequestHeaders::from_pairs(&headers), || now_ms, |_| true)?;
    let reason = match decision.reason {
        Reason::Rule(i) => format!("rule:{}", decision.route.targeting[i].name),
        other => other.label().to_owned(),
    };
    Some((
        decision.route,
        format!("{};{};{reason}", decision.route.name, decision.variant.name),
        decision.issue_identity.is_some(),
    ))
}

/// The `Set-Cookie` of cookie `name` the reply carries, if any.
fn set_cookie<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
    reply
        .set_cookies
        .iter()
        .find(|cookie| cookie.starts_with(&format!("{name}=")))
        .map(String::as_str)
}

/// For a reply with a new identity on `route`: whether it issued exactly the cookie the route
/// issues for that identity (signed with the current secret, where signed), and was served the
/// variant the identity hashes to.
fn consistent_new_identity(route: &Route, reply: &Reply, now_ms: u64) -> Result<(), String> {
    let cookie = route
        .stickiness
        .cookie
        .as_ref()
        .ok_or("no identity cookie on the route")?;
    let issued = set_cookie(reply, &cookie.name).ok_or("no identity cookie issued")?;
    let (pair, _) = issued.split_once(';').unwrap_or((issued, ""));
    let value = pair.trim_start_matches(&format!("{}=", cookie.name));
    let identity = cookie
        .identity(value.as_bytes())
        .ok_or_else(|| format!("issued {issued}, which does not verify"))?;
    let identity = std::str::from_utf8(identity).map_err(|e| e.to_string())?;
    if cookie.set_cookie(identity) != issued {
        return Err(format!(
            "issued {issued}, not {}",
            cookie.set_cookie(identity)
        ));
    }
    let variant = &route.variants[route.assign_at(identity.as_bytes(), now_ms)].name;
    if reply.upstream.as_ref() != Some(variant) {
        return Err(format!("identity {identity} hashes to {variant}"));
    }
    Ok(())
}

/// The cookie attributes of a `Set-Cookie` (what follows `name=value`).
fn attributes(set_cookie: Option<&str>) -> Option<&str> {
    set_cookie.map(|c| c.split_once(';').map_or("", |(_, attributes)| attributes))
}

/// The reason of a debug header, without a rule's name.
fn reason_kind(decision: &str) -> &str {
    let reason = decision.rsplit(';').next().unwrap_or_default();
    reason.split(':').next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_filter_and_the_dynamic_module_decide_alike_for_10000_users() {
    let upstreams = [
        Upstream::start("stable").await,
        Upstream::start("canary").await,
        Upstream::start("beta").await,
    ];
    // The running ramp starts as the Envoys start, and lasts longer than the test.
    let live_start = now_ms();
    let start = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(live_start) * 1_000_000)
        .expect("a time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    let config = config(&start);
    let table = canary_filter::parse(config.as_bytes()).expect("valid config");
    let mut envoys = Vec::new();
    for build in Build::ALL {
        let envoy = Envoy::builder()
            .build(build)
            .variant("stable", &upstreams[0])
            .variant("canary", &upstreams[1])
            .variant("beta", &upstreams[2])
            .plugin_config(&config)
            .start()
            .await;
        envoys.push(envoy);
    }
    let pairs = decisions(&envoys[0], &envoys[1]).await;
    let took = now_ms() - live_start;
    assert!(
        took < LIVE_RAMP_MS,
        "the requests took {took} ms, longer than the running ramp ({LIVE_RAMP_MS} ms)"
    );

    // Decisions by route and reason, and by rule.
    let mut reasons: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut rules: BTreeMap<String, usize> = BTreeMap::new();
    let (mut straddled, mut ramp_moved) = (0, BTreeMap::<&str, usize>::new());
    for (i, pair) in pairs.iter().enumerate() {
        let (w, d) = (&pair.wasm, &pair.dynamic);
        let request = request(i);
        let user = || {
            format!(
                "user {i} ({} {:?}): {w:?} {d:?}",
                request.path, request.headers
            )
        };
        assert_eq!((w.status, d.status), (200, 200), "{}", user());
        let before = core_decision(&table, &request, pair.sent.saturating_sub(CLOCK_SLACK_MS));
        let after = core_decision(&table, &request, pair.returned + CLOCK_SLACK_MS);
        let Some((route, want, issues)) = &before else {
            // No route: both pass the request through undecided, to the first variant, with
            // the client's decision header removed.
            for reply in [w, d] {
                assert_eq!(reply.decision, None, "{}", user());
                assert_eq!(reply.upstream.as_deref(), Some("stable"), "{}", user());
                assert_eq!(reply.seen_variant.as_deref(), Some(""), "{}", user());
            }
            *reasons.entry(("-".into(), "none".into())).or_default() += 1;
            continue;
        };
        let reason = reason_kind(want);
        *reasons
            .entry((route.name.clone(), reason.to_owned()))
            .or_default() += 1;
        if let Some((_, rule)) = want.rsplit(';').next().and_then(|r| r.split_once(':')) {
            *rules.entry(format!("{}/{rule}", route.name)).or_default() += 1;
        }
        for reply in [w, d] {
            let (_, variant) = reply
                .decision
                .as_deref()
                .and_then(|d| d.split_once(';'))
                .unwrap_or_default();
            let variant = variant.split(';').next().unwrap_or_default();
            assert_eq!(reply.upstream.as_deref(), Some(variant), "{}", user());
            assert_eq!(reply.seen_variant.as_deref(), Some(variant), "{}", user());
        }
        // A new identity is issued by both or by neither, with the same attributes.
        let cookie = route.stickiness.cookie.as_ref().map(|c| c.name.as_str());
        let issued = |reply| cookie.and_then(|name| set_cookie(reply, name));
        assert_eq!(issued(w).is_some(), *issues, "{}", user());
        assert_eq!(issued(d).is_some(), *issues, "{}", user());
        assert_eq!(attributes(issued(w)), attributes(issued(d)), "{}", user());

        if reason == "new" {
            for reply in [w, d] {
                let decision = reply.decision.as_deref().unwrap_or_default();
                assert!(
                    decision.starts_with(&format!("{};", route.name)) && decision.ends_with(";new"),
                    "{}",
                    user()
                );
                if let Err(e) = consistent_new_identity(route, reply, pair.sent) {
                    panic!("{}: {e}", user());
                }
            }
            continue;
        }
        match &after {
            Some((_, later, _)) if later != want => {
                // On the running ramp, the user moved while the two requests were in flight:
                // each build gave one of the two answers.
                straddled += 1;
                for reply in [w, d] {
                    let got = reply.decision.as_deref().unwrap_or_default();
                    assert!(got == want || got == later, "{}", user());
                }
            }
            _ => {
                assert_eq!(w.decision.as_deref(), Some(want.as_str()), "{}", user());
                assert_eq!(
                    (&w.upstream, &w.seen_variant, &w.decision),
                    (&d.upstream, &d.seen_variant, &d.decision),
                    "{}",
                    user()
                );
            }
        }
        // Where a ramp has ended, users are where its final weights put them, and where one
        // has not started, where the configured weights do: some of each elsewhere than the
        // other weights would put them.
        let identity = request.headers.first().map(|(_, v)| v.as_bytes());
        let moved =
            |other: usize| w.upstream.as_deref() != Some(route.variants[other].name.as_str());
        match (route.name.as_str(), identity) {
            ("ramp-done", Some(id)) if moved(route.assign(id)) => {
                *ramp_moved.entry("ramp-done").or_default() += 1;
            }
            ("ramp-later", Some(id)) if moved(route.assign_at(id, LATER_RAMP_END_MS)) => {
                *ramp_moved.entry("ramp-later").or_default() += 1;
            }
            _ => {}
        }
    }

    eprintln!("decisions by route and reason: {reasons:?}");
    eprintln!("decisions by rule: {rules:?}");
    eprintln!(
        "{straddled} users on the running ramp moved while their requests were in flight; \
         users elsewhere than the other weights would put them: {ramp_moved:?}; {took} ms"
    );
    // Every kind of decision was in the mix, often enough to mean something.
    let count = |route: &str, reason: &str| {
        reasons
            .get(&(route.to_owned(), reason.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    for (route, reason, at_least) in [
        ("api", "hash", 500),
        ("api", "rule", 500),
        ("api", "new", 200),
        ("-", "none", 200),
        ("web", "hash", 200),
        ("query", "rule", 1000),
        ("query", "hash", 500),
        ("signed", "hash", 400),
        ("signed", "new", 700),
        ("ramp-done", "hash", 200),
        ("ramp-later", "hash", 200),
        ("ramp-live", "hash", 600),
    ] {
        assert!(
            count(route, reason) >= at_least,
            "{route} {reason}: {} < {at_least}; {reasons:?}",
            count(route, reason)
        );
    }
    for route in &table.routes {
        for rule in &route.targeting {
            let name = format!("{}/{}", route.name, rule.name);
            assert!(
                rules.get(&name).is_some_and(|n| *n >= 20),
                "rule {name} decided too few: {rules:?}"
            );
        }
    }
    for route in ["ramp-done", "ramp-later"] {
        assert!(
            ramp_moved.get(route).is_some_and(|n| *n >= 50),
            "{route}: the ramp made no difference: {ramp_moved:?}"
        );
    }
    // The running ramp served both variants during the test.
    let live: Vec<&str> = pairs
        .iter()
        .enumerate()
        .filter(|(i, _)| request(*i).path.starts_with("/ramp-live/"))
        .filter_map(|(_, pair)| pair.wasm.upstream.as_deref())
        .collect();
    for variant in ["stable", "canary"] {
        let n = live.iter().filter(|v| **v == variant).count();
        assert!(n >= 20, "ramp-live: {n} users on {variant}");
    }
}
