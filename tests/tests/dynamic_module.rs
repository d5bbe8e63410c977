//! The native dynamic module (`dynmod/`, `libcanary_router.so`) in a real Envoy 1.40: it routes
//! each user as the decision core assigns them, splits by the weights, replaces a client-sent
//! decision header, counts under the proxy-wasm filter's metric names; it takes live
//! configuration over ECDS, from `canaryctl set-weight --target file:`; a real panic inside
//! the module fails open; Envoy refuses an invalid configuration with its JSON paths in the
//! log; and how Envoy treats the module's ABI version.

use std::path::Path;
use std::process::Command;

use canary_e2e::canaryctl::canaryctl_bin;
use canary_e2e::envoy::DECISION_HEADER;
use canary_e2e::{
    client, concurrently, dynmod_dir, dynmod_probe_dir, get, variants_of, Envoy, Upstream,
};

/// `dynamic_module_config.name`: Envoy loads `lib<MODULE>.so`.
const MODULE: &str = "canary_router";
const SO: &str = "libcanary_router.so";
/// The ABI version the module reports, the one Envoy 1.40 expects.
const ABI_VERSION: &str = "v0.2.0";
const USERS: usize = 1000;

fn config() -> String {
    serde_json::json!({
        "debugHeader": true,
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 70 }, { "name": "canary", "weight": 30 } ],
            "stickiness": {
                "keys": [ { "header": "x-user-id" } ],
                "cookie": { "name": "canary_id", "maxAge": 3600 },
                "salt": "dynmod-e2e"
            }
        }]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_each_user_as_the_decision_core_assigns_and_splits_by_the_weights() {
    let stable = Upstream::builder("stable")
        .set_cookie("upstream_session=abc; Path=/")
        .start()
        .await;
    let canary = Upstream::start("canary").await;
    let config = config();
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config)
        .dynamic_module(&dynmod_dir(), MODULE)
        .start()
        .await;

    let table = canary_filter::parse(config.as_bytes()).expect("valid config");
    let route = &table.routes[0];
    let users: Vec<String> = (0..USERS).map(|i| format!("dynmod-user-{i}")).collect();
    let expected: Vec<String> = users
        .iter()
        .map(|user| route.variants[route.assign(user.as_bytes())].name.clone())
        .collect();

    // Every request also claims the canary with the decision header: the module must replace it.
    let (http, url) = (client(), envoy.url("/"));
    let replies = concurrently(users.clone(), 32, |user| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            get(
                &http,
                &url,
                &[("x-user-id", &user), (DECISION_HEADER, "canary")],
            )
            .await
            .unwrap_or_else(|e| panic!("request for {user} failed: {e}"))
        }
    })
    .await;
    for ((user, want), reply) in users.iter().zip(&expected).zip(&replies) {
        assert_eq!(reply.status, 200, "{user}: {reply:?}");
        assert_eq!(
            reply.upstream.as_deref(),
            Some(want.as_str()),
            "{user}: {reply:?}"
        );
        assert_eq!(
            reply.seen_variant.as_deref(),
            Some(want.as_str()),
            "{user}: {reply:?}"
        );
        assert_eq!(
            reply.decision.as_deref(),
            Some(format!("web;{want};hash").as_str()),
            "{user}"
        );
        assert!(
            reply
                .set_cookies
                .iter()
                .all(|c| !c.starts_with("canary_id=")),
            "{user} has an identity: no cookie; {reply:?}"
        );
    }
    let share =
        |name: &str| expected.iter().filter(|v| *v == name).count() as f64 * 100.0 / USERS as f64;
    assert!(
        (share("canary") - 30.0).abs() < 5.0,
        "canary {:.1} % of {USERS} users at weight 30",
        share("canary")
    );

    // A request without identity is assigned, and given the identity cookie next to the
    // upstream's own.
    let reply = get(&http, &url, &[]).await.expect("request");
    assert!(
        reply
            .decision
            .as_deref()
            .is_some_and(|d| d.ends_with(";new")),
        "{reply:?}"
    );
    assert!(
        reply
            .set_cookies
            .iter()
            .any(|c| c.starts_with("canary_id=")),
        "{reply:?}"
    );

    // The counters carry the proxy-wasm filter's names, prefix included (the module's metrics
    // namespace is `wasmcustom`).
    let stable_users = expected.iter().filter(|v| *v == "stable").count() as u64;
    assert_eq!(
        envoy
            .stat("wasmcustom.canary.route.web.variant.stable.decision.hash")
            .await,
        Some(stable_users)
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.canary.route.web.variant.canary.decision.hash")
            .await,
        Some(USERS as u64 - stable_users)
    );
    assert_eq!(envoy.stat("wasmcustom.canary.panic").await, Some(0));
    let names = envoy.stat_names(r"^wasmcustom\.canary\.").await;
    assert!(names.len() > 4, "{names:?}");
    // Without `metrics.responses`, no response metric is defined, as the wasm filter defines none.
    assert!(
        names
            .iter()
            .all(|name| !name.contains(".response.") && !name.ends_with(".upstream_time")),
        "{names:?}"
    );
    let elsewhere = envoy.stat_names("^dynamicmodulescustom").await;
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    let log = envoy.log();
    assert!(
        log.contains(&format!(
            "Dynamic module ABI version {ABI_VERSION} matched."
        )),
        "{log}"
    );
    assert!(
        log.contains("[canary 1] configuration accepted: 1 route(s)"),
        "{log}"
    );
}

/// The variant the decision core assigns each user under `config`.
fn assigned(config: &str, users: &[String]) -> Vec<String> {
    let table = canary_filter::parse(config.as_bytes()).expect("valid config");
    let route = &table.routes[0];
    users
        .iter()
        .map(|user| route.variants[route.assign(user.as_bytes())].name.clone())
        .collect()
}

/// Each user's served variant, which must be `want`'s.
async fn assert_served(envoy: &Envoy, users: &[String], want: &[String], when: &str) {
    let replies = variants_of(envoy, users, 32).await;
    for ((user, want), reply) in users.iter().zip(want).zip(&replies) {
        assert_eq!(reply.status, 200, "{when}, {user}: {reply:?}");
        assert_eq!(
            reply.upstream.as_deref(),
            Some(want.as_str()),
            "{when}, {user}: {reply:?}"
        );
    }
}

/// The configuration is a `DynamicModuleFilter` delivered over ECDS, as the wasm filter's is:
/// `canaryctl set-weight --target file:` rewrites its `filter_config` and every user is then
/// served as the decision core assigns them under the new weights (those on the canary
/// before stay there); a configuration the module refuses is rejected by Envoy, logged with its
/// JSON path, and the last good one keeps serving; the counters keep counting across updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_configuration_over_ecds_from_canaryctl_set_weight() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config())
        .dynamic_module(&dynmod_dir(), MODULE)
        .start()
        .await;
    let ecds = envoy.ecds_path();
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ecds).expect("read the ECDS file")).expect("JSON");
    assert_eq!(
        document["resources"][0]["typed_config"]["@type"],
        canaryctl::ecds::DYNAMIC_MODULE
    );

    let users: Vec<String> = (0..USERS).map(|i| format!("ecds-user-{i}")).collect();
    let before = assigned(&config(), &users);
    assert_served(&envoy, &users, &before, "at canary 30").await;

    let attempts = envoy.stat(&envoy.ecds_stat("update_attempt")).await;
    let attempts = attempts.expect("the ECDS subscription's stats");
    let target = format!("file:{}", ecds.display());
    let set_weight = tokio::task::spawn_blocking(move || {
        Command::new(canaryctl_bin())
            .args([
                "set-weight",
                "--target",
                &target,
                "--route",
                "web",
                "canary=60",
            ])
            .output()
            .expect("run canaryctl")
    })
    .await
    .expect("canaryctl thread");
    assert!(
        set_weight.status.success(),
        "canaryctl set-weight: {}",
        String::from_utf8_lossy(&set_weight.stderr)
    );
    let update = envoy.wait_for_ecds_attempts(attempts + 1).await;
    assert_eq!((update.success, update.rejected), (2, 0), "{update:?}");

    // What canaryctl wrote, read back through its own reader of the document shape.
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ecds).expect("read the ECDS file")).expect("JSON");
    let written = canaryctl::ecds::plugin_config_text(&document)
        .expect("the plugin configuration")
        .to_owned();
    let table = canary_filter::parse(written.as_bytes()).expect("valid config");
    let weights: Vec<u32> = table.routes[0]
        .variants
        .iter()
        .map(|v| v.weight.0)
        .collect();
    assert_eq!(weights, [40_000, 60_000], "{written}");
    let after = assigned(&written, &users);
    assert_ne!(after, before, "the weights moved someone");
    for ((user, was), now) in users.iter().zip(&before).zip(&after) {
        assert!(
            was != "canary" || now == "canary",
            "{user} left the canary when it grew"
        );
    }
    assert_served(&envoy, &users, &after, "at canary 60").await;

    // A configuration the module refuses: Envoy rejects the update and keeps the last one.
    let invalid = written.replace(r#""weight":60"#, r#""weight":50"#);
    assert_ne!(invalid, written, "the configuration was changed");
    let update = envoy.push_config(&invalid).await;
    assert_eq!((update.success, update.rejected), (2, 1), "{update:?}");
    let log = envoy.log();
    assert!(
        log.contains("configuration rejected: routes[0].variants: weights must sum to 100, not 90"),
        "{log}"
    );
    assert_served(&envoy, &users, &after, "after the rejected update").await;

    // Three rounds of every user, counted by name across the configurations.
    let mut counted = 0;
    for variant in ["stable", "canary"] {
        let name = format!("canary.route.web.variant.{variant}.decision.hash");
        counted += envoy.counter(&name).await.unwrap_or(0);
    }
    assert_eq!(counted, 3 * USERS as u64);
}

/// The request header that makes the `panic-probe` build panic in the request headers hook.
const PANIC_PROBE: &str = "x-canary-panic-probe";

/// A real panic inside the module, in the build with the test-only `panic-probe` feature: the
/// request is still served, undecided (the baseline, by the default route, whatever decision
/// header the client sent), the panic is logged and counted, and the next request is decided as
/// usual. The module
/// that ships cannot be made to panic so: it has no such header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_module_fails_open_and_is_counted() {
    let shipped = std::fs::read(dynmod_dir().join(SO)).expect("read the module");
    assert!(
        !shipped
            .windows(PANIC_PROBE.len())
            .any(|w| w == PANIC_PROBE.as_bytes()),
        "the shipped module knows {PANIC_PROBE}"
    );

    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config())
        .dynamic_module(&dynmod_probe_dir(), MODULE)
        .start()
        .await;
    let (http, url) = (client(), envoy.url("/"));
    // A user the core puts on the canary, so that an undecided request is told apart.
    let user = (0..)
        .map(|i| format!("probe-user-{i}"))
        .find(|user| assigned(&config(), std::slice::from_ref(user))[0] == "canary")
        .expect("a canary user");

    let panicked = get(
        &http,
        &url,
        &[
            ("x-user-id", &user),
            (PANIC_PROBE, "1"),
            (DECISION_HEADER, "canary"),
        ],
    )
    .await
    .expect("request");
    assert_eq!(panicked.status, 200, "{panicked:?}");
    assert_eq!(panicked.upstream.as_deref(), Some("stable"), "{panicked:?}");
    // The upstream received no decision header.
    assert_eq!(panicked.seen_variant.as_deref(), Some(""), "{panicked:?}");
    assert_eq!(panicked.decision, None, "undecided: {panicked:?}");
    assert_eq!(envoy.counter("canary.panic").await, Some(1));
    let log = envoy.log();
    assert!(
        log.contains(&format!(
            "[canary] panic #1 in on_http_filter_request_headers: {PANIC_PROBE} asked for a \
             panic; the request continues undecided"
        )),
        "{log}"
    );

    let decided = get(&http, &url, &[("x-user-id", &user)])
        .await
        .expect("request");
    assert_eq!(decided.upstream.as_deref(), Some("canary"), "{decided:?}");
    assert_eq!(
        decided.decision.as_deref(),
        Some("web;canary;hash"),
        "{decided:?}"
    );
    assert_eq!(envoy.counter("canary.panic").await, Some(1));
}

#[test]
fn envoy_refuses_an_invalid_configuration_and_logs_each_error_with_its_path() {
    let valid = Envoy::builder()
        .variant_at("stable", "127.0.0.1:1".parse().expect("address"))
        .plugin_config(&config())
        .dynamic_module(&dynmod_dir(), MODULE)
        .validate();
    assert!(valid.accepted, "{}", valid.log);

    let invalid = config().replace(
        r#""name":"canary","weight":30"#,
        r#""name":"Canary","weight":20"#,
    );
    assert_ne!(invalid, config(), "the configuration was changed");
    let refused = Envoy::builder()
        .variant_at("stable", "127.0.0.1:1".parse().expect("address"))
        .plugin_config(&invalid)
        .dynamic_module(&dynmod_dir(), MODULE)
        .validate();
    assert!(!refused.accepted, "{}", refused.log);
    for line in [
        "configuration rejected: routes[0].variants[1].name: \"Canary\" must be",
        "configuration rejected: routes[0].variants: weights must sum to 100, not 90",
        "Failed to initialize dynamic module",
    ] {
        assert!(
            refused.log.contains(line),
            "no {line:?} in:\n{}",
            refused.log
        );
    }
}

/// Envoy 1.40 compares the version `envoy_dynamic_module_on_program_init` returns with its own
/// and only warns on a mismatch: it still loads the module. The module itself refuses to load
/// (returns null, which Envoy reports) in an Envoy that lacks a callback it calls, naming it.
#[test]
fn abi_version_match_mismatch_and_a_missing_callback() {
    let built = dynmod_dir();
    let validate = |dir: &Path| {
        Envoy::builder()
            .variant_at("stable", "127.0.0.1:1".parse().expect("address"))
            .plugin_config(&config())
            .dynamic_module(dir, MODULE)
            .validate()
    };

    let matched = validate(&built);
    assert!(matched.accepted, "{}", matched.log);
    for line in [
        format!("[canary] dynamic module loaded, built for dynamic-module ABI {ABI_VERSION}"),
        format!("Dynamic module ABI version {ABI_VERSION} matched."),
    ] {
        assert!(
            matched.log.contains(&line),
            "no {line:?} in:\n{}",
            matched.log
        );
    }

    // The same module claiming the previous ABI version.
    let older = patched(&built, &format!("{ABI_VERSION}\0"), "v0.1.0\0", 1);
    let mismatched = validate(older.path());
    assert!(mismatched.accepted, "{}", mismatched.log);
    let warning = "Dynamic module ABI version v0.1.0 is deprecated. Please recompile the module \
                   against the SDK with the exact Envoy version used by the main program.";
    assert!(mismatched.log.contains(warning), "{}", mismatched.log);

    // The same module looking for a callback this Envoy does not have: the module's own list
    // of callbacks, not the symbol it imports (the string's first occurrence, in .dynstr).
    let callback = "envoy_dynamic_module_callback_http_clear_route_cache\0";
    let missing = patched(
        &built,
        callback,
        "envoy_dynamic_module_callback_http_clear_route_cachX\0",
        2,
    );
    let refused = validate(missing.path());
    assert!(!refused.accepted, "{}", refused.log);
    for line in [
        "[canary] this Envoy lacks the dynamic-module callbacks \
         envoy_dynamic_module_callback_http_clear_route_cachX: the module is built for \
         dynamic-module ABI v0.2.0 (Envoy 1.40); refusing to load",
        "Failed to initialize dynamic module",
    ] {
        assert!(
            refused.log.contains(line),
            "no {line:?} in:\n{}",
            refused.log
        );
    }
}

/// A copy of the built module, in a directory of its own, with the last of the `count`
/// occurrences of `from` (there must be exactly `count`) replaced by `to`, of the same length.
fn patched(dir: &Path, from: &str, to: &str, count: usize) -> tempfile::TempDir {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(dir.join(SO)).expect("read the module");
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), count, "occurrences of {from:?} in {SO}");
    let last = at[count - 1];
    bytes[last..last + to.len()].copy_from_slice(to.as_bytes());
    let copy = tempfile::tempdir().expect("temp dir");
    std::fs::write(copy.path().join(SO), bytes).expect("write the patched module");
    copy
}
