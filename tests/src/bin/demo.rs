//! `make demo`: two real upstreams (v1 stable, v2 canary) behind a real Envoy running the
//! filter, a few thousand simulated users, and what they got: the split, its stickiness,
//! targeting, the identity cookie, and a live weight change that keeps every canary user.
//! Last, progressive rollouts with `canaryctl rollout`: a healthy canary promoted step by step,
//! then a failing canary rolled back, with the live split at every step. `--module dynamic`
//! (`make demo MODULE=dynamic`) runs the native dynamic module instead of the wasm filter.

use std::time::{Duration, Instant};

use canary_e2e::canaryctl::canaryctl_bin;
use canary_e2e::{client, get, variants_of, Build, Envoy, Load, Reply, Upstream};
use clap::Parser;

const USERS: usize = 5_000;
const REPEATS: usize = 5;

fn config(canary: u32) -> String {
    serde_json::json!({
        "debugHeader": true,
        // The demo's rollout reads the filter's response counters and latency.
        "metrics": { "responses": true },
        "routes": [{
            "name": "web",
            "variants": [
                { "name": "stable", "weight": 100 - canary },
                { "name": "canary", "weight": canary }
            ],
            "targeting": [
                { "name": "optout", "cookie": "canary", "equals": "never", "variant": "stable" },
                { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
                { "name": "staff", "header": "x-user-group", "in": ["staff", "beta"], "variant": "canary" }
            ],
            "stickiness": {
                "keys": [ { "header": "x-user-id" } ],
                "cookie": { "name": "canary_id", "maxAge": 2592000 },
                "salt": "web-demo"
            }
        }]
    })
    .to_string()
}

/// Two real upstreams behind a real Envoy running the filter, a few thousand simulated users,
/// and what they got; then progressive rollouts with `canaryctl rollout`.
#[derive(Debug, Parser)]
#[command(name = "canary-demo", version)]
struct Args {
    /// The build of the filter Envoy runs.
    #[arg(long, value_enum, default_value_t = Module::Wasm)]
    module: Module,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Module {
    /// The proxy-wasm filter, canary_filter.wasm.
    Wasm,
    /// The native dynamic module, libcanary_router.so.
    Dynamic,
}

impl Module {
    fn build(self) -> Build {
        match self {
            Module::Wasm => Build::Wasm,
            Module::Dynamic => Build::DynamicModule,
        }
    }

    fn path(self) -> std::path::PathBuf {
        match self {
            Module::Wasm => canary_e2e::wasm_path(),
            Module::Dynamic => canary_e2e::dynmod_dir().join("libcanary_router.so"),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let build = args.module.build();
    let v1 = Upstream::start("stable").await;
    let v2 = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &v1)
        .variant("canary", &v2)
        .plugin_config(&config(10))
        .stats_flush_interval(Duration::from_secs(1))
        .start()
        .await;
    let path = args.module.path();
    let module = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!(
        "canary-router demo: a real Envoy running {} ({} KB)",
        path.file_name().unwrap_or_default().to_string_lossy(),
        module / 1024
    );
    println!(
        "route web: stable (v1 upstream) 90 %, canary (v2 upstream) 10 %, sticky on x-user-id\n"
    );

    let users: Vec<String> = (0..USERS).map(|i| format!("user-{i}")).collect();
    let started = Instant::now();
    let first = served(&variants_of(&envoy, &users, 64).await);
    let mut changed = 0;
    for _ in 1..REPEATS {
        let again = served(&variants_of(&envoy, &users, 64).await);
        changed += first.iter().zip(&again).filter(|(a, b)| a != b).count();
    }
    let requests = USERS * REPEATS;
    println!(
        "{USERS} users, {REPEATS} requests each ({requests} requests in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    split_table(&first, &[("stable", 90.0), ("canary", 10.0)]);
    println!("  stickiness: {changed} of {requests} responses changed variant between requests\n");

    println!("Targeting (rules are checked before hashing, first match wins)");
    let c = client();
    let url = envoy.url("/");
    let canary_user = users
        .iter()
        .zip(&first)
        .find(|(_, v)| *v == "canary")
        .map(|(u, _)| u.as_str())
        .unwrap_or("user-0");
    let stable_user = users
        .iter()
        .zip(&first)
        .find(|(_, v)| *v == "stable")
        .map(|(u, _)| u.as_str())
        .unwrap_or("user-0");
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "a stable user with x-canary: always",
            vec![("x-user-id", stable_user), ("x-canary", "always")],
        ),
        (
            "a stable user in group staff",
            vec![("x-user-id", stable_user), ("x-user-group", "staff")],
        ),
        (
            "a canary user with cookie canary=never",
            vec![("x-user-id", canary_user), ("cookie", "canary=never")],
        ),
        (
            "a stable user forging x-canary-variant",
            vec![("x-user-id", stable_user), ("x-canary-variant", "canary")],
        ),
        ("a canary user, no rule", vec![("x-user-id", canary_user)]),
    ];
    for (label, headers) in &cases {
        let reply = get(&c, &url, headers).await.expect("request");
        println!(
            "  {label:<42} -> {:<7} ({})",
            reply.upstream.as_deref().unwrap_or_default(),
            reason(&reply)
        );
    }

    let anonymous = get(&c, &url, &[]).await.expect("request");
    let cookie = anonymous
        .set_cookies
        .iter()
        .find(|c| c.starts_with("canary_id="))
        .cloned()
        .unwrap_or_default();
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    let replay = get(&c, &url, &[("cookie", &pair)]).await.expect("request");
    println!("\nIdentity cookie for a client with no identity");
    println!(
        "  first request  -> {:<7} Set-Cookie: {cookie}",
        anonymous.upstream.unwrap_or_default()
    );
    println!(
        "  with {pair}\n                 -> {:<7} ({}, no new cookie: {})",
        replay.upstream.as_deref().unwrap_or_default(),
        reason(&replay),
        !replay
            .set_cookies
            .iter()
            .any(|c| c.starts_with("canary_id="))
    );

    println!("\nLive change: canary 10 % -> 30 %, written to the ECDS file Envoy watches");
    let update = envoy.push_config(&config(30)).await;
    let after = served(&variants_of(&envoy, &users, 64).await);
    let kept = first
        .iter()
        .zip(&after)
        .filter(|(b, a)| *b == "canary" && *a == "canary")
        .count();
    let left = first
        .iter()
        .zip(&after)
        .filter(|(b, a)| *b == "canary" && *a != "canary")
        .count();
    let joined = first
        .iter()
        .zip(&after)
        .filter(|(b, a)| *b == "stable" && *a == "canary")
        .count();
    println!("  Envoy accepted the update: {}", update.rejected == 0);
    split_table(&after, &[("stable", 70.0), ("canary", 30.0)]);
    println!("  canary users kept: {kept}, left canary: {left}, moved stable -> canary: {joined}");

    let mut bad: serde_json::Value = serde_json::from_str(&config(30)).unwrap_or_default();
    bad["routes"][0]["variants"][1]["weight"] = serde_json::json!(300);
    let update = envoy.push_config(&bad.to_string()).await;
    let still = served(&variants_of(&envoy, &users, 64).await);
    println!("\nAn invalid update (weight 300) pushed live: rejected by Envoy: {}, assignments unchanged: {}",
        update.rejected == 1, still == after);
    if let Some(line) = envoy
        .log()
        .lines()
        .find(|l| l.contains("configuration rejected"))
    {
        // From the filter's own words on, whichever build logged it.
        println!("  {}", line.find("[canary").map_or(line, |at| &line[at..]));
    }

    progressive_rollouts(&envoy, build).await;
}

/// `canaryctl rollout` twice, under steady traffic: the healthy v2 promoted step by step, then
/// a canary that fails one request in five rolled back at its first step.
async fn progressive_rollouts(envoy: &Envoy, build: Build) {
    println!("\nProgressive rollout: canaryctl steps the canary up and checks it at every step");
    envoy.push_config(&config(0)).await;
    let traffic = Load::start(envoy, 8, 500);
    let healthy = rollout(envoy).await;
    traffic.stop().await;
    println!("  canaryctl exit code: {healthy}\n");

    println!("The same with a broken canary that fails one request in five");
    let stable = Upstream::start("stable").await;
    let broken = Upstream::builder("canary").fail_one_in(5).start().await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &stable)
        .variant("canary", &broken)
        .plugin_config(&config(0))
        .stats_flush_interval(Duration::from_secs(1))
        .start()
        .await;
    let traffic = Load::start(&envoy, 8, 500);
    let failed = rollout(&envoy).await;
    traffic.stop().await;
    let users: Vec<String> = (0..1_000).map(|i| format!("after-{i}")).collect();
    let after = served(&variants_of(&envoy, &users, 64).await);
    let on_stable = after.iter().filter(|v| *v == "stable").count();
    println!(
        "  canaryctl exit code: {failed}; afterwards {on_stable} of {} users are on stable",
        after.len()
    );
}

/// Runs `canaryctl rollout` on route `web` with the Envoy admin endpoint as metrics source,
/// showing its output as it comes; its exit code.
async fn rollout(envoy: &Envoy) -> i32 {
    let target = format!("file:{}", envoy.ecds_path().display());
    let metrics = format!("envoy:{}", envoy.admin_url(""));
    let args = [
        "rollout",
        "--target",
        &target,
        "--route",
        "web",
        "--variant",
        "canary",
        "--steps",
        "10,25,50,100",
        "--interval",
        "2s",
        "--metrics",
        &metrics,
        "--max-error-rate",
        "0.05",
        "--min-requests",
        "20",
    ];
    println!("  $ canaryctl {}\n", args.join(" "));
    let status = tokio::process::Command::new(canaryctl_bin())
        .args(args)
        .status()
        .await;
    status.ok().and_then(|s| s.code()).unwrap_or(-1)
}

fn served(replies: &[Reply]) -> Vec<String> {
    replies
        .iter()
        .map(|r| {
            r.upstream
                .clone()
                .unwrap_or_else(|| format!("HTTP {}", r.status))
        })
        .collect()
}

fn reason(reply: &Reply) -> String {
    reply
        .decision
        .as_deref()
        .and_then(|d| d.rsplit(';').next())
        .unwrap_or("-")
        .to_owned()
}

fn split_table(served: &[String], weights: &[(&str, f64)]) {
    println!(
        "  {:<8} {:>7} {:>7} {:>8}",
        "variant", "weight", "users", "share"
    );
    for (name, weight) in weights {
        let n = served.iter().filter(|v| v == name).count();
        let share = n as f64 * 100.0 / served.len() as f64;
        let bar = "#".repeat((share / 2.0).round() as usize);
        println!("  {name:<8} {weight:>6.1}% {n:>7} {share:>7.2}% {bar}");
    }
}
