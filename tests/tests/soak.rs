//! Soak: steady load through a real Envoy while the `canaryctl` binary pushes configuration
//! changes through the ECDS file, a tenth of them invalid and written raw (bypassing
//! canaryctl's validation).
//!
//! Checked: no request fails; every valid push is accepted and served (a set of probe users
//! lands where the new weights put them); every invalid push is rejected and the last good
//! configuration keeps serving; Envoy's resident memory grows less than 10 % after warm-up; the
//! number of wasm VMs stays the same (the dynamic module runs in none, and counts no panic); the
//! filter never panics.
//!
//! Runs against both builds, the proxy-wasm filter (`wasm::`) and the dynamic module
//! (`dynamic_module::`), at the same time: `SOAK_SECONDS` sets the duration of each (default 30;
//! `make soak` runs 300), with one push a second.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canary_e2e::envoy::ecds_stat;
use canary_e2e::{
    client, filter_failures, for_each_build, get, variants_of, workspace_root, Build, Envoy,
    Upstream,
};
use canaryctl::ecds;
use serde_json::{json, Value};

/// Envoy's gauge of live wasm VMs (the base VM and one per thread, for each distinct VM).
const WASM_VMS: &str = "wasm.envoy.wasm.runtime.v8.active";
/// The dynamic module's count of panics caught at its boundary.
const DYNAMIC_MODULE_PANICS: &str = "canary.panic";
/// Concurrent clients keeping Envoy busy.
const CLIENTS: usize = 4;
/// Users whose variants are checked after every push.
const PROBE_USERS: usize = 64;
/// The share of invalid pushes: one in this many.
const INVALID_EVERY: usize = 10;

fn soak_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// The canaryctl binary: `$CANARYCTL_BIN`, or the debug build in the workspace's target dir.
fn canaryctl_bin() -> PathBuf {
    let path = std::env::var_os("CANARYCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"))
                .join("debug/canaryctl")
        });
    assert!(
        path.exists(),
        "no canaryctl at {}: `cargo build -p canaryctl` builds it (or set CANARYCTL_BIN)",
        path.display()
    );
    path
}

fn initial_config() -> String {
    json!({
        "debugHeader": true,
        // The soak runs the whole response path too.
        "metrics": { "responses": true },
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
            "targeting": [
                { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
                { "name": "tenants", "header": "x-tenant", "matches": "t-[0-9]+", "variant": "canary" }
            ],
            "stickiness": {
                "keys": [ { "header": "x-user-id" } ],
                "cookie": { "name": "canary_id" },
                "salt": "web-soak"
            }
        }]
    })
    .to_string()
}

/// The canary weight of the `n`th valid push: three decimals, never the previous one.
fn canary_weight(n: usize) -> f64 {
    ((n as u64 * 37_317 + 12_345) % 100_000) as f64 / 1000.0
}

/// What the client load saw.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    sent: AtomicU64,
    failed: AtomicU64,
    first_failures: Mutex<Vec<String>>,
}

impl Load {
    fn start(self: &Arc<Self>, url: String) -> Vec<tokio::task::JoinHandle<()>> {
        (0..CLIENTS)
            .map(|c| {
                let (load, url) = (Arc::clone(self), url.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut i = 0u64;
                    while !load.stop.load(Ordering::Relaxed) {
                        i += 1;
                        let user = format!("load-{c}-{}", i % 2_000);
                        let mut headers = vec![("x-user-id", user.as_str())];
                        if i.is_multiple_of(7) {
                            headers.push(("x-tenant", "t-42"));
                        }
                        let outcome = get(&client, &url, &headers).await;
                        load.sent.fetch_add(1, Ordering::Relaxed);
                        let failure = match outcome {
                            Ok(reply) if (200..300).contains(&reply.status) => continue,
                            Ok(reply) => format!("{reply:?}"),
                            Err(e) => e.to_string(),
                        };
                        load.failed.fetch_add(1, Ordering::Relaxed);
                        let mut first = load.first_failures.lock().expect("failures");
                        if first.len() < 5 {
                            first.push(failure);
                        }
                    }
                })
            })
            .collect()
    }
}

/// The ECDS file's plugin configuration (the Wasm filter's or the dynamic module's), as a JSON
/// value.
fn plugin_config_of(ecds: &[u8]) -> Value {
    let document: Value = serde_json::from_slice(ecds).expect("ECDS file is JSON");
    let text = ecds::plugin_config_text(&document).expect("plugin configuration in the ECDS file");
    serde_json::from_str(text).expect("plugin configuration is JSON")
}

/// The ECDS file with its plugin configuration string replaced by `plugin_config`.
fn with_plugin_config(ecds: &[u8], plugin_config: &str) -> Vec<u8> {
    let mut document: Value = serde_json::from_slice(ecds).expect("ECDS file is JSON");
    *ecds::plugin_config_slot(&mut document).expect("plugin configuration in the ECDS file") =
        Value::from(plugin_config);
    serde_json::to_vec_pretty(&document).expect("json")
}

/// An invalid update, written raw to the ECDS file. Cycles through broken files and plugin
/// configurations the filter rejects.
fn invalid_update(n: usize, good_ecds: &[u8]) -> (&'static str, Vec<u8>) {
    let mut config = plugin_config_of(good_ecds);
    match n % 5 {
        0 => (
            "truncated ECDS file",
            good_ecds
                .get(..good_ecds.len() / 2)
                .unwrap_or_default()
                .to_vec(),
        ),
        1 => (
            "plugin configuration not JSON",
            with_plugin_config(good_ecds, r#"{"routes": [{"name": "web""#),
        ),
        2 => {
            config["routes"][0]["variants"][1]["weight"] = json!(130);
            (
                "weights over 100",
                with_plugin_config(good_ecds, &config.to_string()),
            )
        }
        3 => {
            config["routes"][0]["variants"][0]["weigth"] = json!(1);
            (
                "unknown field",
                with_plugin_config(good_ecds, &config.to_string()),
            )
        }
        _ => {
            config["routes"][0]["targeting"][1]["matches"] = json!("t-[0-9");
            (
                "invalid regex",
                with_plugin_config(good_ecds, &config.to_string()),
            )
        }
    }
}

/// Envoy's ECDS counters. A file Envoy cannot read counts as `update_failure` (the file
/// subscription fails before the filter sees it); a configuration the filter refuses counts as
/// `update_rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    success: u64,
    rejected: u64,
    failure: u64,
}

impl Counts {
    async fn of(envoy: &Envoy) -> Counts {
        let stat = |name| async move { envoy.stat(&ecds_stat(name)).await.unwrap_or(0) };
        Counts {
            success: stat("update_success").await,
            rejected: stat("update_rejected").await,
            failure: stat("update_failure").await,
        }
    }

    fn refused(self) -> u64 {
        self.rejected + self.failure
    }

    /// Waits until Envoy has accepted or refused an update since `self` was counted.
    async fn wait_for_change(self, envoy: &Envoy) -> Counts {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = Counts::of(envoy).await;
            if now.success + now.refused() > self.success + self.refused() {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy did not process the update within 10 s: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Replaces the ECDS file by an atomic rename, as Envoy's watched directory expects.
fn write_raw(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(".soak.tmp");
    std::fs::write(&tmp, bytes).expect("write ECDS");
    std::fs::rename(&tmp, path).expect("rename ECDS");
}

/// The variant `configuration` gives each user (by `x-user-id`).
fn expected_variants(configuration: &Value, users: &[String]) -> Vec<String> {
    let table = canary_filter::parse(configuration.to_string().as_bytes()).expect("valid config");
    let route = &table.routes[0];
    users
        .iter()
        .map(|user| {
            let variant = route.assign(user.as_bytes());
            route.variants[variant].name.clone()
        })
        .collect()
}

/// Whether Envoy serves every probe user the variant `configuration` gives them.
async fn serves(envoy: &Envoy, configuration: &Value, users: &[String]) -> Result<(), String> {
    let want = expected_variants(configuration, users);
    let replies = variants_of(envoy, users, 16).await;
    let wrong: Vec<String> = users
        .iter()
        .zip(&want)
        .zip(&replies)
        .filter(|((_, want), reply)| reply.upstream.as_ref() != Some(*want))
        .map(|((user, want), reply)| format!("{user}: want {want}, got {reply:?}"))
        .take(3)
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

for_each_build!(soak_under_live_reconfiguration);

async fn soak_under_live_reconfiguration(build: Build) {
    let seconds = soak_seconds();
    let pushes = usize::try_from(seconds)
        .expect("seconds")
        .max(INVALID_EVERY);
    let warmup = (pushes / 10).max(3);
    let interval = Duration::from_secs(seconds) / u32::try_from(pushes).expect("pushes");
    let canaryctl = canaryctl_bin();

    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&initial_config())
        .start()
        .await;
    let pid = envoy.pid().expect("Envoy running");
    let ecds_path = envoy.ecds_path();
    let target = format!("file:{}", ecds_path.display());
    let probe: Vec<String> = (0..PROBE_USERS).map(|i| format!("probe-{i}")).collect();

    let load = Arc::new(Load::default());
    let clients = load.start(envoy.url("/"));

    let mut good_ecds = std::fs::read(&ecds_path).expect("ECDS file");
    let mut good = plugin_config_of(&good_ecds);
    envoy.wait_for_ecds_attempts(1).await;
    let (mut accepted, mut rejected) = (0, 0);
    let mut baseline = None;
    let mut vm_counts = Vec::new();
    let started = Instant::now();
    for n in 0..pushes {
        let before = Counts::of(&envoy).await;
        if n % INVALID_EVERY == INVALID_EVERY - 1 {
            let (kind, bytes) = invalid_update(n / INVALID_EVERY, &good_ecds);
            write_raw(&ecds_path, &bytes);
            let after = before.wait_for_change(&envoy).await;
            assert_eq!(
                (after.success, after.refused()),
                (before.success, before.refused() + 1),
                "push {n}: {kind} was not refused"
            );
            rejected += 1;
            if let Err(wrong) = serves(&envoy, &good, &probe).await {
                panic!("push {n}: after a refused {kind}, the last good configuration does not serve:\n{wrong}");
            }
            // Put the last good file back, as an operator would, so that canaryctl reads a
            // valid live configuration next.
            write_raw(&ecds_path, &good_ecds);
            let restored = after.wait_for_change(&envoy).await;
            assert_eq!(
                (restored.success, restored.refused()),
                (after.success + 1, after.refused()),
                "push {n}: the last good file was not accepted again"
            );
        } else {
            let weight = canary_weight(n);
            let output = tokio::process::Command::new(&canaryctl)
                .args(["set-weight", "--target", &target, "--route", "web"])
                .arg(format!("canary={weight}"))
                .output()
                .await
                .expect("run canaryctl");
            assert!(
                output.status.success(),
                "push {n}: canaryctl set-weight canary={weight} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let after = before.wait_for_change(&envoy).await;
            assert_eq!(
                (after.success, after.refused()),
                (before.success + 1, before.refused()),
                "push {n}: canary={weight} was not accepted"
            );
            accepted += 1;
            good_ecds = std::fs::read(&ecds_path).expect("ECDS file");
            good = plugin_config_of(&good_ecds);
            // Workers pick the new configuration up shortly after the update is counted.
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(wrong) = serves(&envoy, &good, &probe).await {
                assert!(
                    Instant::now() < deadline,
                    "push {n}: canary={weight} accepted but not served within 5 s:\n{wrong}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let vms = envoy.stat(WASM_VMS).await;
        match build {
            Build::Wasm => vm_counts.push(vms.expect("wasm VM gauge")),
            Build::DynamicModule => assert_eq!(vms, None, "push {n}: wasm VMs in the Envoy"),
        }
        if n + 1 == warmup {
            baseline = Some(rss_kib(pid));
        }
        let next = started + interval * u32::try_from(n + 1).expect("n");
        tokio::time::sleep_until(next.into()).await;
    }
    load.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("load client");
    }

    let (sent, failed) = (
        load.sent.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    let rss_before = baseline.expect("warm-up ended");
    let rss_after = rss_kib(pid);
    let growth = (rss_after as f64 - rss_before as f64) * 100.0 / rss_before as f64;
    let vms = match (vm_counts.iter().min(), vm_counts.iter().max()) {
        (Some(min), Some(max)) => format!("wasm VMs between {min} and {max}"),
        _ => "no wasm VM".to_owned(),
    };
    eprintln!(
        "soak ({build:?}): {seconds} s, {sent} requests, {failed} failed; {pushes} pushes: \
         {accepted} accepted, {rejected} invalid refused; Envoy RSS {rss_before} KiB after \
         warm-up, {rss_after} KiB at the end ({growth:+.1} %); {vms}"
    );

    assert!(
        sent > 20 * seconds,
        "only {sent} requests in {seconds} s: too little load to mean anything"
    );
    assert_eq!(
        failed,
        0,
        "non-2xx or failed requests, first ones: {:?}",
        load.first_failures.lock().expect("failures")
    );
    assert_eq!(accepted + rejected, pushes);
    assert!(
        growth < 10.0,
        "Envoy RSS grew {growth:.1} % after warm-up ({rss_before} → {rss_after} KiB)"
    );
    match build {
        Build::Wasm => {
            let warm_vms = vm_counts[warmup - 1];
            let leaked: Vec<_> = vm_counts
                .iter()
                .enumerate()
                .skip(warmup)
                .filter(|(_, count)| **count != warm_vms)
                .collect();
            assert!(
                leaked.is_empty(),
                "wasm VMs after warm-up: {warm_vms}; then (push, count): {leaked:?}"
            );
        }
        Build::DynamicModule => {
            // Defined with each configuration, so present at 0.
            assert_eq!(
                envoy.counter(DYNAMIC_MODULE_PANICS).await,
                Some(0),
                "panics the dynamic module caught"
            );
        }
    }
    let log = envoy.log();
    let failures = filter_failures(&log);
    assert!(
        failures.is_empty(),
        "the filter trapped:\n{}",
        failures.join("\n")
    );
}
