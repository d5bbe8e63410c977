//! Consistency across a fleet: three Envoy processes with different numbers of workers, no
//! shared state, the same configuration. 10,000 users each: every user gets the same variant
//! from all three, and the one the filter's own assignment (what `canaryctl assign` prints)
//! computes offline. Runs against both builds, the proxy-wasm filter (`wasm::`) and the dynamic
//! module (`dynamic_module::`).

use canary_e2e::{for_each_build, variants_of, Build, Envoy, Reply, Upstream};
use serde_json::json;

const USERS: usize = 10_000;

fn config() -> String {
    json!({
        "routes": [{
            "name": "web",
            "variants": [
                { "name": "stable", "weight": 70 },
                { "name": "canary", "weight": 20.5 },
                { "name": "beta", "weight": 9.5 }
            ],
            "stickiness": { "keys": [ { "header": "x-user-id" } ], "salt": "web-fleet" }
        }]
    })
    .to_string()
}

fn served(replies: &[Reply]) -> Vec<String> {
    replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.seen_variant, r.upstream, "{r:?}");
            r.upstream.clone().expect("x-upstream")
        })
        .collect()
}

for_each_build!(three_envoys_agree_on_every_user);

async fn three_envoys_agree_on_every_user(build: Build) {
    let upstreams = [
        Upstream::start("stable").await,
        Upstream::start("canary").await,
        Upstream::start("beta").await,
    ];
    let config = config();
    let mut fleet = Vec::new();
    for workers in [1, 2, 3] {
        let mut builder = Envoy::builder().build(build).concurrency(workers);
        for upstream in &upstreams {
            builder = builder.variant(&upstream.name, upstream);
        }
        fleet.push(builder.plugin_config(&config).start().await);
    }

    let users: Vec<String> = (0..USERS).map(|i| format!("fleet-user-{i}")).collect();
    let table = canary_filter::parse(config.as_bytes()).expect("valid config");
    let route = &table.routes[0];
    let offline: Vec<String> = users
        .iter()
        .map(|user| {
            let index = route.assign(user.as_bytes());
            route.variants[index].name.clone()
        })
        .collect();

    for (n, envoy) in fleet.iter().enumerate() {
        let variants = served(&variants_of(envoy, &users, 64).await);
        let disagree: Vec<String> = users
            .iter()
            .zip(&offline)
            .zip(&variants)
            .filter(|((_, want), got)| want != got)
            .map(|((user, want), got)| format!("{user}: offline {want}, Envoy {got}"))
            .collect();
        assert!(
            disagree.is_empty(),
            "Envoy {n} disagrees on {} of {USERS} users, e.g. {:?}",
            disagree.len(),
            disagree.iter().take(3).collect::<Vec<_>>()
        );
    }

    // Agreement means something only if the users are actually spread over the variants.
    for (name, weight) in [("stable", 70.0), ("canary", 20.5), ("beta", 9.5)] {
        let share = offline.iter().filter(|v| *v == name).count() as f64 * 100.0 / USERS as f64;
        assert!(
            (share - weight).abs() < 1.5,
            "{name}: {share:.2} % of users at weight {weight}"
        );
    }
    eprintln!(
        "fleet ({build:?}): 3 Envoys (1, 2, 3 workers) × {USERS} users: 100 % agreement with \
         each other and offline"
    );
}
