//! The benchmark's instruction count (`Envoy::count_instructions`): a real Envoy under
//! callgrind counts the requests sent while counting, the same each time, and nothing of
//! what happens outside the window.

use canary_e2e::envoy::{Envoy, Routing};
use canary_e2e::upstream::Upstream;

async fn send(client: &reqwest::Client, url: &str, n: usize) {
    for _ in 0..n {
        let response = client.get(url).send().await.expect("request");
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.expect("body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instructions_are_counted_per_window_and_repeat() {
    let upstream = Upstream::start("stable").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = Envoy::builder()
        .variant("stable", &upstream)
        .routing(Routing::Plain)
        .concurrency(1)
        .log_level("warn")
        .callgrind(dir.path())
        .start()
        .await;
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let url = envoy.url("/");
    // Uncounted: before the first window.
    send(&client, &url, 200).await;

    let mut counts = Vec::new();
    for n in [100, 300, 300] {
        let (instructions, ()) = envoy
            .count_instructions(send(&client, &url, n))
            .await
            .expect("counted");
        counts.push(instructions as f64 / n as f64);
    }
    let (idle, ()) = envoy.count_instructions(async {}).await.expect("counted");

    let [small, a, b] = counts[..] else {
        unreachable!()
    };
    assert!(
        a > 10_000.0,
        "a proxied request takes more than 10,000 instructions: {a}"
    );
    assert!(
        (a - b).abs() / a < 0.02,
        "two counts of the same 300 requests: {a} and {b} per request"
    );
    assert!(
        (small - a).abs() / a < 0.05,
        "per request, 100 and 300 requests: {small} and {a}"
    );
    assert!(
        (idle as f64) < a * 20.0,
        "an empty window counts less than 20 requests: {idle} instructions"
    );
}
