//! Pins and session stickiness through canaryctl: `set-weight` keeps them in the live
//! configuration, `status` shows a route's session mode, `assign` shows a pin's and a session's
//! decision.

mod support;

use std::fs;
use std::path::Path;

use canaryctl::ecds::{document, ModuleSource};
use serde_json::{json, Value};
use support::{canaryctl, Run};

const SECRET: &str = "k7Qw9zR2mX4vB8nL1pT6yH3sF5dA0cE9";

fn plugin_config() -> Value {
    json!({
        "routes": [{
            "name": "web",
            "variants": [{"name": "stable", "weight": 50}, {"name": "canary", "weight": 50}],
            "targeting": [
                {"name": "pin", "query": "canary", "equals": "pin", "variant": "canary", "pin": true},
                {"name": "unpin", "query": "canary", "equals": "unpin", "variant": "stable", "unpin": true}
            ],
            "stickiness": {
                "mode": "session",
                "cookie": {"name": "canary_id", "secret": SECRET},
                "pin": {"cookie": "tester_pin", "maxAge": 3600, "path": "/app", "secure": true,
                        "httpOnly": false, "sameSite": "Strict"}
            }
        }]
    })
}

fn ecds_file(dir: &Path) -> String {
    let module = ModuleSource::Remote {
        uri: "http://modules.internal/canary_filter.wasm".into(),
        cluster: "modules".into(),
        sha256: "ab".repeat(32),
    };
    let path = dir.join("filter.json");
    let doc = document("canary", &module, &plugin_config().to_string());
    fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    format!("file:{}", path.display())
}

fn run(args: &[&str], target: &str) -> Run {
    let mut all = vec![args[0], "--target", target];
    all.extend(&args[1..]);
    let run = canaryctl(&all, None);
    assert!(run.succeeded(), "{run:?}");
    run
}

fn live_config(target: &str) -> Value {
    let path = target.strip_prefix("file:").unwrap();
    let doc: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let value = doc["resources"][0]["typed_config"]["filter_config"]["value"]
        .as_str()
        .or_else(|| {
            doc["resources"][0]["typed_config"]["config"]["configuration"]["value"].as_str()
        })
        .unwrap_or_else(|| panic!("no plugin configuration in {doc}"));
    serde_json::from_str(value).unwrap()
}

#[test]
fn set_weight_keeps_pins_and_the_session_mode() {
    let dir = tempfile::tempdir().unwrap();
    let target = ecds_file(dir.path());
    run(&["set-weight", "--route", "web", "canary=10"], &target);
    let mut want = plugin_config();
    want["routes"][0]["variants"] =
        json!([{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]);
    assert_eq!(live_config(&target), want, "only the weights changed");
}

#[test]
fn status_shows_a_session_route() {
    let dir = tempfile::tempdir().unwrap();
    let target = ecds_file(dir.path());
    let text = run(&["status"], &target).stdout;
    assert!(
        text.contains("route web\n  stickiness: session\n"),
        "{text}"
    );
    let json: Value =
        serde_json::from_str(&run(&["status", "--output", "json"], &target).stdout).unwrap();
    assert_eq!(json["routes"][0]["stickiness"], json!({"mode": "session"}));
}

fn assign(file: &Path, cookies: &[&str]) -> Value {
    let mut args = vec![
        "assign",
        file.to_str().unwrap(),
        "--route",
        "web",
        "--output",
        "json",
    ];
    for cookie in cookies {
        args.extend(["--cookie", cookie]);
    }
    let run = canaryctl(&args, None);
    assert!(run.succeeded(), "{run:?}");
    serde_json::from_str(run.stdout.trim()).unwrap()
}

#[test]
fn assign_shows_pin_and_session_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    fs::write(&file, plugin_config().to_string()).unwrap();
    let signer = canary_filter::cookie::Signer::new(SECRET, []).unwrap();
    let signed = |tag: &[u8], payload: &str| {
        let mac = signer.sign_parts(&[tag, payload.as_bytes()]);
        format!("{payload}.{}", std::str::from_utf8(&mac).unwrap())
    };
    let pin = signed(b"canary-pin\0web\0", "canary");
    let identity = "0123456789abcdef0123456789abcdef";
    let session = signed(b"canary-session\0", &format!("{identity}~canary"));
    let cases = [
        (vec![format!("tester_pin={pin}")], json!("canary"), "pin"),
        (
            vec![format!("canary_id={session}")],
            json!("canary"),
            "session",
        ),
        (
            vec![format!("tester_pin={pin}"), format!("canary_id={session}")],
            json!("canary"),
            "pin",
        ),
        (vec!["tester_pin=canary".to_owned()], Value::Null, "new"),
        (
            vec![format!("canary_id={identity}~canary")],
            Value::Null,
            "new",
        ),
    ];
    for (cookies, variant, reason) in cases {
        let cookies: Vec<&str> = cookies.iter().map(String::as_str).collect();
        let out = assign(&file, &cookies);
        assert_eq!(
            (&out["variant"], out["reason"].as_str()),
            (&variant, Some(reason)),
            "{cookies:?}"
        );
    }
}
