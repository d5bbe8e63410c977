//! `make demo`: two real upstreams (v1 stable, v2 canary) behind a real Envoy running the
//! filter, a few thousand simulated users, and what they got: the split, its stickiness,
//! targeting, the identity cookie, and a live weight change that keeps every canary user.

use std::time::Instant;

use canary_e2e::{client, get, variants_of, Envoy, Reply, Upstream};

const USERS: usize = 5_000;
const REPEATS: usize = 5;

fn config(canary: u32) -> String {
    serde_json::json!({
        "debugHeader": true,
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let v1 = Upstream::start("stable").await;
    let v2 = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .variant("stable", &v1)
        .variant("canary", &v2)
        .plugin_config(&config(10))
        .start()
        .await;
    let module = std::fs::metadata(canary_e2e::wasm_path()).map_or(0, |m| m.len());
    println!(
        "canary-router demo: a real Envoy running canary_filter.wasm ({} KB)",
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
        println!("  {}", line.split("wasm log ").last().unwrap_or(line));
    }
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
