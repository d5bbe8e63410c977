//! `canaryctl serve` as its own process: it refuses to start without a token, and SIGTERM
//! stops it gracefully (the ECDS streams closed, exit 0) while the Envoys it configured keep
//! serving their last configuration.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use canary_e2e::canaryctl::canaryctl_bin;
use canary_e2e::envoy::ecds_stat;
use canary_e2e::{client, get, wasm_path, Envoy, Upstream};
use canaryctl::ecds::{self, ModuleSource};

fn plugin_config() -> String {
    serde_json::json!({
        "debugHeader": true,
        "routes": [{ "name": "web", "variants": [
            { "name": "stable", "weight": 0 }, { "name": "canary", "weight": 100 } ] }]
    })
    .to_string()
}

fn serve(dir: &std::path::Path, token: Option<&str>) -> Command {
    let target = dir.join("ecds.json");
    let module = ModuleSource::Local(wasm_path().display().to_string());
    let document = ecds::document("canary", &module, &plugin_config());
    std::fs::write(&target, document.to_string()).unwrap();
    let mut command = Command::new(canaryctl_bin());
    command
        .arg("serve")
        .arg(format!("--target=file:{}", target.display()))
        .args(["--listen=127.0.0.1:0", "--grpc-listen=127.0.0.1:0"])
        .arg("--module")
        .arg(wasm_path())
        .env_remove("CANARYCTL_TOKEN")
        .env_remove("CANARYCTL_TARGET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        let file = dir.join("token");
        std::fs::write(&file, format!("{token}\n")).unwrap();
        command.arg("--token-file").arg(file);
    }
    command
}

/// The HTTP and gRPC addresses the process prints once it serves.
fn addresses(child: &mut Child) -> (SocketAddr, SocketAddr) {
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["serving:", "http", http, "grpc", grpc] => (http.parse().unwrap(), grpc.parse().unwrap()),
        _ => panic!("unexpected first line: {line:?}"),
    }
}

#[test]
fn refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let output = serve(dir.path(), None).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bearer token is required"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_the_streams_and_exits_zero_while_envoy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve(dir.path(), Some("t0ken")).spawn().unwrap();
    let (http, grpc) = addresses(&mut child);
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .ecds_grpc(grpc)
        .start()
        .await;
    let reply = get(&client(), &envoy.url("/"), &[("x-user-id", "u1")])
        .await
        .unwrap();
    assert_eq!(
        reply.upstream.as_deref(),
        Some("canary"),
        "configured over gRPC: {reply:?}"
    );
    let ready = client()
        .get(format!("http://{http}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let connected = ecds_stat("control_plane.connected_state");
    assert_eq!(envoy.stat(&connected).await, Some(1));

    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "canaryctl serve still running 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("exited {status} {:?} after SIGTERM", started.elapsed());
    assert!(status.success(), "exit status {status}");

    // Envoy saw the stream close, and serves the configuration it had.
    let deadline = Instant::now() + Duration::from_secs(5);
    while envoy.stat(&connected).await != Some(0) {
        assert!(
            Instant::now() < deadline,
            "Envoy still sees the controller connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for user in ["u1", "u2", "u3"] {
        let reply = get(&client(), &envoy.url("/"), &[("x-user-id", user)])
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.upstream.as_deref(), Some("canary"));
    }
    assert_eq!(envoy.stat(&ecds_stat("update_rejected")).await, Some(0));
}

/// `envoy --mode validate` on a bootstrap; the error output if Envoy rejects it.
fn envoy_validate(path: &std::path::Path) -> Result<(), String> {
    let output = Command::new(canary_e2e::envoy_bin())
        .args(["--mode", "validate", "-c"])
        .arg(path)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn the_example_envoy_bootstrap_for_canaryctl_serve_validates() {
    let example = canary_e2e::workspace_root().join("envoyfilter/controller/envoy-ecds-grpc.yaml");
    envoy_validate(&example).unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    // The check bites: the same bootstrap with a misspelt field does not validate.
    let text = std::fs::read_to_string(&example).unwrap();
    let broken = text.replace("transport_api_version", "transport_api_versoin");
    assert_ne!(broken, text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, broken).unwrap();
    assert!(envoy_validate(&path).is_err());
}
