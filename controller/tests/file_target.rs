//! `file:PATH` through the `canaryctl` binary: the ECDS file read as JSON or YAML, changed,
//! validated and written back in its own format; `status` with an Envoy admin endpoint.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use canaryctl::ecds::{document, ModuleSource};
use serde_json::{json, Value};
use support::{canaryctl, Run};

fn plugin_config() -> Value {
    json!({
        "debugHeader": true,
        "routes": [
            {"name": "reviews",
             "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
             "stickiness": {"keys": [{"header": "x-user-id"}]}},
            {"name": "ratings",
             "variants": [{"name": "v1", "weight": 33.334}, {"name": "v2", "weight": 33.333},
                          {"name": "v3", "weight": 33.333}]}
        ]
    })
}

fn ecds_document() -> Value {
    let module = ModuleSource::Remote {
        uri: "http://modules.internal/canary_filter.wasm".into(),
        cluster: "modules".into(),
        sha256: "ab".repeat(32),
    };
    let mut doc = document("canary", &module, &plugin_config().to_string());
    doc["version_info"] = json!("2026-11-22");
    doc
}

struct EcdsFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl EcdsFile {
    fn json() -> Self {
        Self::with(
            "filter.json",
            serde_json::to_vec_pretty(&ecds_document()).unwrap(),
        )
    }

    fn yaml() -> Self {
        let text = serde_yaml::to_string(&ecds_document()).unwrap();
        Self::with(
            "filter.yaml",
            format!("# ECDS for the canary filter\n{text}").into_bytes(),
        )
    }

    fn with(name: &str, bytes: Vec<u8>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        EcdsFile { _dir: dir, path }
    }

    fn target(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn run(&self, args: &[&str]) -> Run {
        let target = self.target();
        let mut all = vec![args[0], "--target", &target];
        all.extend(&args[1..]);
        canaryctl(&all, None)
    }

    fn document(&self) -> Value {
        parse(&self.path)
    }

    fn plugin_config(&self) -> Value {
        let doc = self.document();
        let text = doc["resources"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .expect("a StringValue");
        serde_json::from_str(text).expect("JSON plugin configuration")
    }
}

fn parse(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "yaml") {
        serde_yaml::from_slice(&bytes).expect("YAML")
    } else {
        serde_json::from_slice(&bytes).expect("JSON")
    }
}

/// `document` with the plugin configuration replaced.
fn with_config(mut document: Value, config: &Value) -> Value {
    document["resources"][0]["typed_config"]["config"]["configuration"]["value"] =
        json!(config.to_string());
    document
}

#[test]
fn set_weight_promote_abort_on_a_json_file() {
    let file = EcdsFile::json();

    let run = file.run(&["set-weight", "--route", "reviews", "canary=30"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "{} route reviews: stable 70 %, canary 30 %\n",
            file.target()
        )
    );
    let mut want = plugin_config();
    want["routes"][0]["variants"] =
        json!([{"name": "stable", "weight": 70}, {"name": "canary", "weight": 30}]);
    assert_eq!(file.plugin_config(), want);
    assert_eq!(
        file.document(),
        with_config(ecds_document(), &want),
        "every other field kept"
    );
    let text = fs::read_to_string(&file.path).unwrap();
    assert!(
        text.contains(r#"\"weight\":70}"#),
        "integers stay integers: {text}"
    );

    let run = file.run(&["set-weight", "--route", "ratings", "v2=50.5", "v3=0.001"]);
    assert!(run.succeeded(), "{run:?}");
    assert!(
        run.stdout
            .ends_with("route ratings: v1 49.499 %, v2 50.5 %, v3 0.001 %\n"),
        "{run:?}"
    );

    let run = file.run(&["promote", "--route", "reviews", "canary"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        file.plugin_config()["routes"][0]["variants"][1]["weight"],
        json!(100)
    );
    assert_eq!(
        file.plugin_config()["routes"][0]["variants"][0]["weight"],
        json!(0)
    );

    let run = file.run(&["abort", "--route", "reviews"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        file.plugin_config()["routes"][0]["variants"],
        json!([{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}])
    );
}

#[test]
fn a_yaml_file_is_written_back_as_yaml() {
    let file = EcdsFile::yaml();
    let run = file.run(&["set-weight", "--route", "reviews", "canary=15", "stable=85"]);
    assert!(run.succeeded(), "{run:?}");
    let text = fs::read_to_string(&file.path).unwrap();
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "not JSON: {text}"
    );
    let mut want = plugin_config();
    want["routes"][0]["variants"] =
        json!([{"name": "stable", "weight": 85}, {"name": "canary", "weight": 15}]);
    assert_eq!(file.document(), with_config(ecds_document(), &want));
}

/// The dynamic module's ECDS document: its `filter_config` is changed, every other field kept,
/// and a configuration the filter would reject is refused with its JSON path.
#[test]
fn a_dynamic_module_document_is_changed_in_its_filter_config() {
    let module = ModuleSource::Dynamic {
        name: "canary_router".into(),
    };
    let mut original = document("canary", &module, &plugin_config().to_string());
    original["version_info"] = json!("2026-12-01");
    let text = serde_yaml::to_string(&original).unwrap();
    let file = EcdsFile::with("filter.yaml", text.into_bytes());

    let run = file.run(&["set-weight", "--route", "reviews", "canary=25"]);
    assert!(run.succeeded(), "{run:?}");
    let mut want = plugin_config();
    want["routes"][0]["variants"] =
        json!([{"name": "stable", "weight": 75}, {"name": "canary", "weight": 25}]);
    let mut changed = original.clone();
    changed["resources"][0]["typed_config"]["filter_config"]["value"] = json!(want.to_string());
    assert_eq!(file.document(), changed, "only filter_config.value changed");

    let mut broken = plugin_config();
    broken["routes"][1]["stickiness"] = json!({"salt": ""});
    let doc = document("canary", &module, &broken.to_string());
    let file = EcdsFile::with("filter.json", serde_json::to_vec(&doc).unwrap());
    let before = fs::read(&file.path).unwrap();
    let run = file.run(&["set-weight", "--route", "reviews", "canary=20"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("routes[1].stickiness.salt: must not be empty"),
        "{run:?}"
    );
    assert_eq!(fs::read(&file.path).unwrap(), before, "file left unchanged");
}

#[test]
fn a_refused_change_leaves_the_file_byte_for_byte() {
    let file = EcdsFile::json();
    let before = fs::read(&file.path).unwrap();
    for (args, fragment) in [
        (
            &["set-weight", "--route", "reviews", "canary=101"][..],
            "must be between 0 and 100",
        ),
        (
            &["set-weight", "--route", "reviews", "canary=10.0001"],
            "more than 3 decimals",
        ),
        (
            &["set-weight", "--route", "ratings", "v2=70"],
            "leaving the baseline \"v1\" below 0",
        ),
        (
            &["set-weight", "--route", "reviews", "stable=20", "canary=20"],
            "must sum to 100",
        ),
        (
            &["set-weight", "--route", "reviews", "blue=20"],
            "no variant named \"blue\"",
        ),
        (
            &["set-weight", "--route", "details", "canary=20"],
            "no route named \"details\"",
        ),
        (
            &["set-weight", "--route", "reviews", "canary"],
            "is not VARIANT=PERCENT",
        ),
        (
            &["promote", "--route", "reviews", "blue"],
            "no variant named \"blue\"",
        ),
        (
            &["abort", "--route", "details"],
            "no route named \"details\"",
        ),
    ] {
        let run = file.run(args);
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(fragment),
            "{args:?}: expected {fragment:?}: {run:?}"
        );
        assert_eq!(
            fs::read(&file.path).unwrap(),
            before,
            "{args:?} left the file unchanged"
        );
    }
}

#[test]
fn a_change_the_filter_would_reject_is_refused_with_its_json_path() {
    let mut config = plugin_config();
    config["routes"][1]["stickiness"] = json!({"salt": ""});
    let doc = with_config(ecds_document(), &config);
    let file = EcdsFile::with("filter.json", serde_json::to_vec(&doc).unwrap());
    let before = fs::read(&file.path).unwrap();

    let run = file.run(&["set-weight", "--route", "reviews", "canary=20"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("would be rejected by the filter"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("routes[1].stickiness.salt: must not be empty"),
        "{run:?}"
    );
    assert_eq!(fs::read(&file.path).unwrap(), before);
}

#[test]
fn files_that_are_not_ecds_are_refused() {
    let lua = json!({"resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": "lua",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"}}]});
    for (name, bytes, fragment) in [
        (
            "filter.json",
            b"resources: []".to_vec(),
            "is not valid JSON",
        ),
        (
            "filter.json",
            serde_json::to_vec(&lua).unwrap(),
            "is not an ECDS file as Envoy reads it",
        ),
    ] {
        let file = EcdsFile::with(name, bytes.clone());
        let run = file.run(&["set-weight", "--route", "reviews", "canary=20"]);
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(
            run.stderr.contains(fragment),
            "expected {fragment:?}: {run:?}"
        );
        assert_eq!(fs::read(&file.path).unwrap(), bytes);
    }
    let run = canaryctl(&["status", "--target", "ecds.json"], None);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("expected file:PATH, kube://NAMESPACE/NAME or kube://NAMESPACE/KIND/NAME"),
        "{run:?}"
    );
}

#[test]
fn status_prints_weights_as_text_and_json() {
    let file = EcdsFile::json();
    let run = file.run(&["status"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "{}\nroute reviews\n  stable        90 %\n  canary        10 %\n\
             route ratings\n  v1        33.334 %\n  v2        33.333 %\n  v3        33.333 %\n",
            file.target()
        )
    );

    let run = file.run(&["status", "--output", "json"]);
    assert!(run.succeeded(), "{run:?}");
    let status: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(
        status["routes"],
        json!([
            {"name": "reviews", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]},
            {"name": "ratings", "variants": [{"name": "v1", "weight": 33.334}, {"name": "v2", "weight": 33.333},
                                             {"name": "v3", "weight": 33.333}]}
        ])
    );
}

/// `set-weight` keeps the seal of the live configuration; `status` never prints it, not even
/// in the warning about a seal the filter rejects.
#[test]
fn status_never_prints_the_seal_and_set_weight_keeps_it() {
    for seal in ["Qm7rT2vX9kLp4sWz8bNc1dFg", "too-short-seal"] {
        let mut config = plugin_config();
        config["seal"] = json!(seal);
        let file = EcdsFile::with(
            "filter.json",
            serde_json::to_vec_pretty(&with_config(ecds_document(), &config)).unwrap(),
        );
        for args in [&["status"][..], &["status", "--output", "json"][..]] {
            let run = file.run(args);
            assert!(run.succeeded(), "{run:?}");
            assert!(
                !run.stdout.contains(seal) && !run.stderr.contains(seal),
                "{args:?}: {run:?}"
            );
        }
        if seal.len() < 22 {
            let run = file.run(&["status"]);
            assert!(run.stderr.contains("seal: is too short"), "{run:?}");
            continue;
        }
        let run = file.run(&["set-weight", "--route", "reviews", "canary=30"]);
        assert!(run.succeeded(), "{run:?}");
        assert!(
            !run.stdout.contains(seal) && !run.stderr.contains(seal),
            "{run:?}"
        );
        let written = file.plugin_config();
        assert_eq!(written["seal"], seal, "the seal is kept");
        assert_eq!(written["routes"][0]["variants"][1]["weight"], 30);
    }
}

#[test]
fn the_target_may_come_from_the_environment() {
    let file = EcdsFile::json();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_canaryctl"))
        .args(["set-weight", "--route", "reviews", "canary=40"])
        .env("CANARYCTL_TARGET", file.target())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        file.plugin_config()["routes"][0]["variants"][1]["weight"],
        json!(40)
    );
}

mod observed {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A stand-in Envoy admin endpoint answering `/stats?format=json` with `body`; returns its
    /// URL and the request URIs it saw.
    fn admin(body: Value) -> (String, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = seen.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new().route(
                    "/stats",
                    axum::routing::get(move |uri: axum::http::Uri| {
                        log.lock().unwrap().push(uri.to_string());
                        let body = body.clone();
                        async move { axum::Json(body) }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        (url, seen)
    }

    #[test]
    fn status_shows_the_observed_split_from_envoy_counters() {
        let file = EcdsFile::json();
        let (url, seen) = admin(json!({"stats": [
            {"name": "wasmcustom.canary.route.reviews.variant.stable.decision.hash", "value": 600},
            {"name": "wasmcustom.canary.route.reviews.variant.stable.decision.new", "value": 200},
            {"name": "wasmcustom.canary.route.reviews.variant.canary.decision.hash", "value": 150},
            {"name": "wasmcustom.canary.route.reviews.variant.canary.decision.rule", "value": 50},
            {"histograms": {"supported_quantiles": [], "computed_quantiles": []}}
        ]}));

        let run = file.run(&["status", "--envoy-admin", &url]);
        assert!(run.succeeded(), "{run:?}");
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines[1], "route reviews");
        assert!(
            lines[2].contains("weight") && lines[2].contains("observed"),
            "{run:?}"
        );
        assert!(
            lines[3].starts_with(&format!(
                "  stable        90 %     80.0 %  {}",
                "█".repeat(32)
            )),
            "{run:?}"
        );
        assert!(lines[3].ends_with("  800"), "{run:?}");
        assert!(
            lines[4].starts_with(&format!(
                "  canary        10 %     20.0 %  {}·",
                "█".repeat(8)
            )),
            "{run:?}"
        );
        assert!(lines[4].ends_with("  200"), "{run:?}");
        assert!(
            run.stdout.contains("  v1        33.334 %          -  ····"),
            "no decisions yet: {run:?}"
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].contains("format=json"), "{seen:?}");
        assert!(seen[0].contains("filter=%5Ewasmcustom"), "{seen:?}");

        let run = file.run(&["status", "--envoy-admin", &url, "--output", "json"]);
        assert!(run.succeeded(), "{run:?}");
        let status: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            status["routes"][0]["variants"],
            json!([
                {"name": "stable", "weight": 90, "observed": {"decisions": 800, "percent": 80.0}},
                {"name": "canary", "weight": 10, "observed": {"decisions": 200, "percent": 20.0}}
            ])
        );
    }

    #[test]
    fn an_unreachable_admin_endpoint_is_an_error() {
        let file = EcdsFile::json();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let run = file.run(&[
            "status",
            "--envoy-admin",
            &format!("http://127.0.0.1:{port}"),
        ]);
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(
            run.stderr.contains("cannot read http://127.0.0.1"),
            "{run:?}"
        );
    }
}
