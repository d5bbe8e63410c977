//! Adversarial requests and configurations through a real Envoy: 8 KB cookies, 100 cookie
//! headers, non-UTF-8 header bytes, a 64 KB `x-user-id`, empty and duplicate headers, a
//! catastrophic-backtracking regex against a 60 KB value, and a configuration at the limits
//! (1,024 routes × 16 variants, long regexes). None may fail a request or trap the VM, and each
//! request still gets the variant its identity hashes to.
//!
//! Requests are written as raw HTTP/1.1 over TCP, so that any byte can be sent. Envoy's own
//! limits (60 KiB of request headers, 100 headers) answer 431 before any filter runs; these
//! tests raise them to 96 KiB and 200 headers: the filter handles whatever Envoy admits.
//!
//! Each test runs against both builds, the proxy-wasm filter (`wasm::`) and the dynamic module
//! (`dynamic_module::`).

use std::time::{Duration, Instant};

use canary_e2e::{filter_failures, for_each_build, Build, Envoy, Upstream};
use canary_filter::RoutingTable;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as read off the wire.
#[derive(Debug)]
struct RawReply {
    status: u16,
    /// Names lowercase, values as text (lossy).
    headers: Vec<(String, String)>,
}

impl RawReply {
    fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }
}

/// Sends `GET /` with exactly these header lines (after `host`) and reads the whole response.
async fn raw_get(envoy: &Envoy, host: &str, headers: &[(&str, Vec<u8>)]) -> RawReply {
    let mut request =
        format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let exchange = async {
        let mut stream = TcpStream::connect(envoy.listener()).await?;
        stream.write_all(&request).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("response within 10 s")
        .expect("exchange");
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> RawReply {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(response)));
    let mut lines = response[..end]
        .split(|b| *b == b'\n')
        .map(|l| l.trim_ascii());
    let status_line = String::from_utf8_lossy(lines.next().expect("status line")).into_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
            let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned();
            Some((name, value))
        })
        .collect();
    RawReply { status, headers }
}

/// The variant `route` of `table` gives `identity`.
fn hashed(table: &RoutingTable, route: usize, identity: &[u8]) -> String {
    let route = &table.routes[route];
    let index = route.assign(identity);
    route.variants[index].name.clone()
}

/// Fails if Envoy's log shows the filter panicking or the VM trapping.
fn assert_no_trap(envoy: &Envoy) {
    let log = envoy.log();
    let failures = filter_failures(&log);
    assert!(
        failures.is_empty(),
        "the filter trapped:\n{}",
        failures.join("\n")
    );
}

fn web_config() -> String {
    json!({
        "debugHeader": true,
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
            "targeting": [
                { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
                { "name": "redos", "header": "x-tenant", "matches": "(a+)+b", "variant": "canary" }
            ],
            "stickiness": {
                "keys": [ { "header": "x-user-id" }, { "cookie": "session_id" } ],
                "cookie": { "name": "canary_id" },
                "salt": "web-adversarial"
            }
        }]
    })
    .to_string()
}

/// Header lines as sent: name and raw value.
type Headers<'a> = Vec<(&'a str, Vec<u8>)>;

/// What a case expects: the variant and the reason in the debug header.
enum Want {
    /// Hashed from this identity.
    Hash(Vec<u8>),
    /// This targeting rule.
    Rule(&'static str, &'static str),
    /// A new identity, issued as a cookie.
    New,
}

async fn hostile_headers_are_served_with_the_right_variant(build: Build) {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let config = web_config();
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config)
        .request_header_limits(96, 200)
        .start()
        .await;
    let table = canary_filter::parse(config.as_bytes()).expect("valid config");

    let big_cookie = format!("big={}; session_id=s-1", "x".repeat(8 * 1024));
    let big_identity = "ab".repeat(4 * 1024);
    let mut many_cookies: Headers = (0..99)
        .map(|i| ("cookie", format!("c{i}={i}").into_bytes()))
        .collect();
    many_cookies.push(("cookie", b"session_id=s-100".to_vec()));
    let huge_user = "u".repeat(64 * 1024);
    let redos = format!("{}!", "a".repeat(60 * 1024));

    let cases: Vec<(&str, Headers, Want)> = vec![
        (
            "8 KB cookie before the key cookie",
            vec![("cookie", big_cookie.into_bytes())],
            Want::Hash(b"s-1".to_vec()),
        ),
        (
            "8 KB identity cookie",
            vec![("cookie", format!("canary_id={big_identity}").into_bytes())],
            Want::Hash(big_identity.clone().into_bytes()),
        ),
        (
            "100 cookie headers, the key in the last",
            many_cookies,
            Want::Hash(b"s-100".to_vec()),
        ),
        (
            "64 KB x-user-id",
            vec![("x-user-id", huge_user.clone().into_bytes())],
            Want::Hash(huge_user.into_bytes()),
        ),
        (
            "non-UTF-8 x-user-id",
            vec![("x-user-id", b"\xff\xfe\x80user".to_vec())],
            Want::Hash(b"\xff\xfe\x80user".to_vec()),
        ),
        (
            "non-UTF-8 cookies",
            vec![("cookie", b"\xff=\xfe; session_id=\xc3\x28".to_vec())],
            Want::Hash(b"\xc3\x28".to_vec()),
        ),
        (
            "non-UTF-8 value of a targeted header",
            vec![
                ("x-canary", b"alw\xffays".to_vec()),
                ("x-user-id", b"u-7".to_vec()),
            ],
            Want::Hash(b"u-7".to_vec()),
        ),
        (
            "empty key header falls through to the key cookie",
            vec![
                ("x-user-id", Vec::new()),
                ("cookie", b"session_id=s-8".to_vec()),
            ],
            Want::Hash(b"s-8".to_vec()),
        ),
        (
            "empty key header and empty cookie header",
            vec![("x-user-id", Vec::new()), ("cookie", Vec::new())],
            Want::New,
        ),
        (
            "duplicate key header: the first value",
            vec![
                ("x-user-id", b"u-10a".to_vec()),
                ("x-user-id", b"u-10b".to_vec()),
            ],
            Want::Hash(b"u-10a".to_vec()),
        ),
        (
            "duplicate forged decision headers",
            vec![
                ("x-canary-variant", b"canary".to_vec()),
                ("x-canary-variant", b"stable".to_vec()),
                ("x-user-id", b"u-11".to_vec()),
            ],
            Want::Hash(b"u-11".to_vec()),
        ),
        (
            "rule header among non-UTF-8 ones",
            vec![
                ("x-other", b"\xc0\xc1\xf5\xff".to_vec()),
                ("x-canary", b"always".to_vec()),
            ],
            Want::Rule("canary", "qa"),
        ),
        (
            "60 KB value against (a+)+b",
            vec![
                ("x-tenant", redos.into_bytes()),
                ("x-user-id", b"u-13".to_vec()),
            ],
            Want::Hash(b"u-13".to_vec()),
        ),
    ];

    for (label, headers, want) in cases {
        let started = Instant::now();
        let reply = raw_get(&envoy, "web", &headers).await;
        let elapsed = started.elapsed();
        assert_eq!(reply.status, 200, "{label}: {reply:?}");
        let upstream = reply.header("x-upstream").expect("x-upstream");
        assert_eq!(
            reply.all("x-seen-variant"),
            vec![upstream.clone()],
            "{label}: the upstream saw another decision"
        );
        let decision = reply.header("x-canary-decision").expect("debug header");
        match want {
            Want::Hash(identity) => {
                let variant = hashed(&table, 0, &identity);
                assert_eq!(upstream, variant, "{label}");
                assert_eq!(decision, format!("web;{variant};hash"), "{label}");
            }
            Want::Rule(variant, rule) => {
                assert_eq!(upstream, variant, "{label}");
                assert_eq!(decision, format!("web;{variant};rule:{rule}"), "{label}");
            }
            Want::New => {
                assert!(decision.ends_with(";new"), "{label}: {decision}");
                let issued = reply.all("set-cookie");
                assert!(
                    issued.len() == 1 && issued[0].starts_with("canary_id="),
                    "{label}: {issued:?}"
                );
            }
        }
        assert!(
            elapsed < Duration::from_secs(2),
            "{label}: took {elapsed:?}"
        );
    }
    assert_no_trap(&envoy);
}

/// Past Envoy's limits the request never reaches the filter: Envoy answers 431 itself, and the
/// filter keeps serving the next request.
async fn requests_past_envoys_limits_are_refused_by_envoy_not_the_filter(build: Build) {
    let stable = Upstream::start("stable").await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &stable)
        .plugin_config(&web_config())
        .start()
        .await;
    let huge = raw_get(&envoy, "web", &[("x-user-id", vec![b'u'; 64 * 1024])]).await;
    assert_eq!(huge.status, 431, "{huge:?}");
    let next = raw_get(&envoy, "web", &[("x-user-id", b"u-1".to_vec())]).await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(
        stable.served(),
        1,
        "the refused request reached the upstream"
    );
    assert_no_trap(&envoy);
}

/// 1,024 routes × 16 variants, each route with a long alternation regex: accepted at start and
/// as a live update, and every route serves the variant its users hash to.
async fn configuration_at_the_limits_is_accepted_and_serves(build: Build) {
    let limits = |salt: &str| {
        let tenants: Vec<String> = (0..100).map(|t| format!("tenant-{t:04}")).collect();
        let routes: Vec<_> = (0..canary_filter::table::MAX_ROUTES)
            .map(|r| {
                let variants: Vec<_> = (0..canary_filter::table::MAX_VARIANTS)
                    .map(|v| json!({ "name": format!("v{v}"), "weight": 6.25 }))
                    .collect();
                json!({
                    "name": format!("route-{r}"),
                    "match": { "hosts": [format!("svc-{r}.example.com")], "pathPrefixes": ["/"] },
                    "variants": variants,
                    "targeting": [{
                        "name": "tenants",
                        "header": "x-tenant",
                        "matches": format!("(?:{})(?:-[a-z0-9]{{1,32}})*", tenants.join("|")),
                        "variant": "v15"
                    }],
                    "stickiness": { "keys": [ { "header": "x-user-id" } ], "salt": format!("{salt}-{r}") }
                })
            })
            .collect();
        json!({ "debugHeader": true, "routes": routes }).to_string()
    };
    let first = limits("a");
    assert!(first.len() > 1_000_000, "{} bytes", first.len());
    let upstream = Upstream::start("v0").await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("v0", &upstream)
        .plugin_config(&first)
        .start()
        .await;

    check(&envoy, &first).await.expect("served at start");

    let second = limits("b");
    let started = Instant::now();
    let update = envoy.push_config(&second).await;
    eprintln!(
        "limits: {} bytes of configuration, live update accepted in {:?}",
        second.len(),
        started.elapsed()
    );
    assert_eq!((update.success, update.rejected), (2, 0));
    // Workers take the update shortly after Envoy counts it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(wrong) = check(&envoy, &second).await {
        assert!(
            Instant::now() < deadline,
            "not served after the update: {wrong}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_no_trap(&envoy);
}

/// Whether routes 0, 511 and 1023 serve what `config` says, for 20 users and a tenant.
async fn check(envoy: &Envoy, config: &str) -> Result<(), String> {
    let table = canary_filter::parse(config.as_bytes()).expect("valid");
    for route in [0, 511, 1023] {
        let host = format!("svc-{route}.example.com");
        for user in 0..20 {
            let id = format!("user-{user}");
            let reply = raw_get(envoy, &host, &[("x-user-id", id.clone().into_bytes())]).await;
            assert_eq!(reply.status, 200, "{host} {id}: {reply:?}");
            let want = hashed(&table, route, id.as_bytes());
            let seen = reply.header("x-seen-variant");
            if seen.as_deref() != Some(want.as_str()) {
                return Err(format!("{host} {id}: want {want}, saw {seen:?}"));
            }
        }
        let tenant = raw_get(
            envoy,
            &host,
            &[("x-tenant", b"tenant-0099-eu-west-1".to_vec())],
        )
        .await;
        assert_eq!(
            tenant.header("x-canary-decision"),
            Some(format!("route-{route};v15;rule:tenants")),
            "{host}"
        );
    }
    Ok(())
}

for_each_build!(
    hostile_headers_are_served_with_the_right_variant,
    requests_past_envoys_limits_are_refused_by_envoy_not_the_filter,
    configuration_at_the_limits_is_accepted_and_serves,
);
