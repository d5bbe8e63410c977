//! `canaryctl assign` gives, offline, the variant the filter gives in a real Envoy.

use std::path::PathBuf;
use std::process::Command;

use canary_e2e::{concurrently, get, workspace_root, Envoy, Upstream};

/// The `canaryctl` binary `make build` builds: `$CANARYCTL_BIN`, or the workspace's debug build.
fn canaryctl_bin() -> PathBuf {
    let path = std::env::var_os("CANARYCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("debug/canaryctl")
        });
    assert!(
        path.exists(),
        "no canaryctl at {}: `make build` builds it",
        path.display()
    );
    path
}

fn offline(spec: &PathBuf, user: &str) -> String {
    let output = Command::new(canaryctl_bin())
        .arg("assign")
        .arg(spec)
        .args(["--route", "reviews", "--user", user, "--output", "json"])
        .output()
        .expect("run canaryctl");
    assert!(
        output.status.success(),
        "canaryctl assign failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(answer["route"], "reviews");
    assert_eq!(answer["reason"], "hash");
    answer["variant"].as_str().expect("variant").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_assignment_matches_envoy_for_1000_users() {
    let spec = workspace_root().join("examples/bookinfo-reviews.yaml");
    let document = canaryctl::document::load(&spec).expect("example spec");
    let plugin_config = document["pluginConfig"].to_string();

    let (v1, v2, v3) = (
        Upstream::start("v1").await,
        Upstream::start("v2").await,
        Upstream::start("v3").await,
    );
    let envoy = Envoy::builder()
        .variant("v1", &v1)
        .variant("v2", &v2)
        .variant("v3", &v3)
        .plugin_config(&plugin_config)
        .start()
        .await;

    let users: Vec<String> = (0..1000).map(|i| format!("reader-{i}")).collect();
    let client = canary_e2e::client();
    let url = envoy.url("/reviews/0");
    let served = concurrently(users.clone(), 32, |user| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let reply = get(
                &client,
                &url,
                &[("host", "reviews:9080"), ("end-user", &user)],
            )
            .await
            .expect("request");
            assert_eq!(reply.status, 200, "{user}: {reply:?}");
            reply.upstream.expect("x-upstream")
        }
    })
    .await;

    let spec_path = spec.clone();
    let users_offline = users.clone();
    let computed = tokio::task::spawn_blocking(move || {
        users_offline
            .iter()
            .map(|u| offline(&spec_path, u))
            .collect::<Vec<_>>()
    })
    .await
    .expect("offline assignments");

    let disagreements: Vec<_> = users
        .iter()
        .zip(served.iter().zip(&computed))
        .filter(|(_, (envoy, offline))| envoy != offline)
        .collect();
    assert!(
        disagreements.is_empty(),
        "{} disagreements, first: {:?}",
        disagreements.len(),
        disagreements.first()
    );
    for variant in ["v1", "v2", "v3"] {
        assert!(
            served.iter().any(|v| v == variant),
            "no user on {variant}: the comparison would be weak"
        );
    }
}
