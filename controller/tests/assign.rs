//! `canaryctl assign`: the filter's hash decision, offline, for a plugin configuration or a
//! canary spec.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn canaryctl(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_canaryctl"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run canaryctl");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assign_json(file: &Path, route: &str, user: &str) -> Value {
    let run = canaryctl(&[
        "assign",
        file.to_str().expect("utf-8 path"),
        "--route",
        route,
        "--user",
        user,
        "--output",
        "json",
    ]);
    assert_eq!(run.code, Some(0), "{user}: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object: {}", run.stdout);
    serde_json::from_str(lines[0]).expect("JSON")
}

/// The filter's golden vectors (`filter/src/assign.rs`): the salt defaults to the route name.
#[test]
fn matches_the_filters_golden_assignments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "routes:\n\
         - name: reviews\n  variants: [{name: stable, weight: 90}, {name: canary, weight: 10}]\n\
         - name: bookinfo\n  variants: [{name: v1, weight: 33.333}, {name: v2, weight: 33.333}, \
         {name: v3, weight: 33.334}]\n",
    )
    .expect("write");
    let reviews: Vec<usize> = (0..32)
        .map(|i| {
            let out = assign_json(&config, "reviews", &format!("user-{i}"));
            usize::from(out["variant"] == "canary")
        })
        .collect();
    let mut want = vec![0; 32];
    want[0] = 1;
    want[13] = 1;
    assert_eq!(reviews, want, "users 0..32 at 90/10, salt reviews");

    let bookinfo: Vec<String> = (0..24)
        .map(|i| {
            let out = assign_json(&config, "bookinfo", &i.to_string());
            out["variant"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    let want = [
        0, 0, 2, 0, 0, 0, 0, 2, 1, 1, 1, 2, 1, 1, 1, 2, 2, 1, 0, 2, 1, 2, 2, 1,
    ]
    .map(|i| format!("v{}", i + 1));
    assert_eq!(
        bookinfo, want,
        "ids 0..24 at 33.333/33.333/33.334, salt bookinfo"
    );
}

#[test]
fn reads_a_canary_spec_with_its_salt_and_prints_route_variant_and_reason() {
    let spec = Path::new("examples/bookinfo-reviews.yaml");
    for user in ["alice", "bob", "carol", "dave", "jason"] {
        let variants: [(&[u8], canary_filter::Weight); 3] = [
            (b"v1", canary_filter::Weight(80_000)),
            (b"v2", canary_filter::Weight(10_000)),
            (b"v3", canary_filter::Weight(10_000)),
        ];
        let index = canary_filter::assign(b"reviews-2026-11", user.as_bytes(), variants);
        let want = format!("v{}", index + 1);
        assert_eq!(
            assign_json(spec, "reviews", user),
            json!({ "route": "reviews", "variant": want, "reason": "hash" }),
            "{user}"
        );
    }
    let run = canaryctl(&[
        "assign",
        "examples/web-gateway.yaml",
        "--route",
        "web",
        "--user",
        "v-1",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let text = run.stdout.trim_end();
    assert!(
        text == "stable (hash)" || text == "canary (hash)",
        "text output: {text:?}"
    );
}

#[test]
fn rejects_unknown_routes_invalid_files_and_missing_arguments() {
    let run = canaryctl(&[
        "assign",
        "examples/plugin-config.json",
        "--route",
        "ratings",
        "--user",
        "u",
    ]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        "--route: no route \"ratings\"; the routes are reviews\n"
    );

    let run = canaryctl(&[
        "assign",
        "controller/tests/invalid/01-weight-out-of-range.yaml",
        "--route",
        "reviews",
        "--user",
        "u",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .starts_with("routes[0].variants[1].weight: must be between 0 and 100"),
        "{}",
        run.stderr
    );

    let run = canaryctl(&[
        "assign",
        "examples/plugin-config.json",
        "--route",
        "reviews",
        "--user",
        "",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("--user: must not be empty"),
        "{}",
        run.stderr
    );

    let run = canaryctl(&[
        "assign",
        "examples/plugin-config.json",
        "--route",
        "reviews",
    ]);
    assert_eq!(run.code, Some(2), "missing --user: {}", run.stderr);
}

const SECRET: &str = "aZ3_kQ9-aB7cD1eF2gH4iJ";

/// A route with a query rule, a header key and a signed identity cookie.
fn targeted_config(dir: &Path) -> PathBuf {
    let config = dir.join("config.json");
    let document = json!({ "routes": [{
        "name": "web",
        "variants": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
        "targeting": [
            { "name": "qa", "query": "canary", "equals": "always", "variant": "canary" }
        ],
        "stickiness": {
            "keys": [ { "header": "x-user-id" } ],
            "cookie": { "name": "canary_id", "secret": SECRET }
        }
    }]});
    std::fs::write(&config, document.to_string()).expect("write");
    config
}

fn assign_request(file: &Path, request: &[&str]) -> Value {
    let mut args = vec![
        "assign",
        file.to_str().expect("utf-8 path"),
        "--route",
        "web",
        "--output",
        "json",
    ];
    args.extend_from_slice(request);
    let run = canaryctl(&args);
    assert_eq!(run.code, Some(0), "{request:?}: {}", run.stderr);
    serde_json::from_str(run.stdout.trim()).expect("JSON")
}

#[test]
fn decides_a_request_with_a_query_string() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = targeted_config(dir.path());
    let out = assign_request(&config, &["--path", "/app?x=1&canary=always#top"]);
    assert_eq!(
        out,
        json!({ "route": "web", "variant": "canary", "reason": "rule:qa" })
    );
    // `?canary=never` matches no rule: the user's hash decides, as without a request.
    for user in ["u1", "u2", "u3", "u4"] {
        let hashed = assign_json(&config, "web", user);
        let out = assign_request(&config, &["--path", "/app?canary=never", "--user", user]);
        assert_eq!(out, hashed, "{user}");
        let out = assign_request(&config, &["--header", &format!("X-User-Id: {user}")]);
        assert_eq!(
            out["variant"], hashed["variant"],
            "identity from the key: {user}"
        );
        assert_eq!(out["reason"], "hash");
    }
    let run = canaryctl(&[
        "assign",
        config.to_str().expect("utf-8"),
        "--route",
        "web",
        "--path",
        "/?canary=always",
    ]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "canary (rule:qa)\n")
    );
}

/// A lane given as the decision header is decided as the filter decides it: kept when sealed,
/// before the user's hash; recomputed otherwise.
#[test]
fn keeps_a_sealed_lane_on_a_route_that_trusts_incoming_decisions() {
    const SEAL: &str = "Assign-lane_seal-0123456789";
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.json");
    let document = json!({ "seal": SEAL, "routes": [{
        "name": "web",
        "trustIncoming": true,
        "variants": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
        "stickiness": { "keys": [ { "header": "x-user-id" } ] }
    }]});
    std::fs::write(&config, document.to_string()).expect("write");
    for user in ["u1", "u2", "u3", "u4"] {
        let hashed = assign_json(&config, "web", user);
        let other = if hashed["variant"] == "stable" {
            "canary"
        } else {
            "stable"
        };
        let lane = format!("x-canary-variant: {other}.{SEAL}");
        let out = assign_request(&config, &["--header", &lane, "--user", user]);
        assert_eq!(
            out,
            json!({ "route": "web", "variant": other, "reason": "lane" }),
            "{user}"
        );
        let forged = format!("x-canary-variant: {other}");
        let out = assign_request(&config, &["--header", &forged, "--user", user]);
        assert_eq!(out, hashed, "{user}: a bare name is recomputed");
    }
}

#[test]
fn verifies_a_signed_identity_cookie() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = targeted_config(dir.path());
    let signer = canary_filter::cookie::Signer::new(SECRET, []).expect("signer");
    for identity in ["0123456789abcdef0123456789abcdef", "someone"] {
        let mac = signer.sign(identity.as_bytes());
        let signed = format!(
            "canary_id={identity}.{}",
            std::str::from_utf8(&mac).expect("hex")
        );
        let out = assign_request(&config, &["--cookie", &signed]);
        let hashed = assign_json(&config, "web", identity);
        assert_eq!(out, hashed, "{signed}");

        let unsigned = format!("canary_id={identity}");
        let tampered = format!("{}0", &signed[..signed.len() - 1]);
        for cookie in [unsigned, tampered] {
            let out = assign_request(&config, &["--cookie", &cookie]);
            assert_eq!(
                out,
                json!({ "route": "web", "variant": null, "reason": "new" }),
                "{cookie}"
            );
        }
    }
    let run = canaryctl(&[
        "assign",
        config.to_str().expect("utf-8"),
        "--route",
        "web",
        "--cookie",
        "junk",
    ]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr, "--cookie: \"junk\" is not NAME=VALUE\n");
}

/// On a route with a ramp, `--at` picks the time: before the start every user is on the
/// baseline, from the end on about half are on the canary, and the answers agree with the
/// filter's own assignment at each time.
#[test]
fn assigns_at_the_time_given_on_a_ramping_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.json");
    let document = json!({"routes": [{"name": "reviews",
        "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
        "ramp": {"variant": "canary", "from": 0, "to": 50,
                 "start": "2026-12-07T12:00:00Z", "duration": "2h"}}]})
    .to_string();
    std::fs::write(&config, &document).expect("write");
    let table = canary_filter::parse(document.as_bytes()).expect("valid");
    let route = &table.routes[0];
    let path = config.to_str().expect("utf-8 path");
    for (at, ms, canary_share) in [
        ("2026-12-07T11:59:59Z", 1_796_644_799_000u64, 0.0..=0.0),
        ("2026-12-07T14:00:00Z", 1_796_652_000_000, 0.35..=0.65),
    ] {
        let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
        let mut on_canary = 0;
        for user in &users {
            let run = canaryctl(&[
                "assign", path, "--route", "reviews", "--user", user, "--at", at,
            ]);
            assert_eq!(run.code, Some(0), "{user} at {at}: {}", run.stderr);
            let want = &route.variants[route.assign_at(user.as_bytes(), ms)].name;
            assert_eq!(
                run.stdout.trim(),
                format!("{want} (hash)"),
                "{user} at {at}"
            );
            on_canary += usize::from(want == "canary");
        }
        let share = on_canary as f64 / users.len() as f64;
        assert!(canary_share.contains(&share), "{share} on canary at {at}");
    }
    let run = canaryctl(&[
        "assign", path, "--route", "reviews", "--user", "u", "--at", "noon",
    ]);
    assert_eq!(
        run.code,
        Some(2),
        "a bad --at is a usage error: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("not an RFC 3339 time"),
        "{}",
        run.stderr
    );
}
