//! `canaryctl serve` as its own process: it refuses to start without a token, and SIGTERM
//! stops it gracefully (the ECDS streams closed, exit 0) while the Envoys it configured keep
//! serving their last configuration.

use std::io::{BufRead, BufReader, Read as _};
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

/// `canaryctl serve` on a file target, its ECDS server in plaintext (`--insecure-grpc`).
fn serve(dir: &std::path::Path, token: Option<&str>) -> Command {
    serve_with(dir, token, &["--insecure-grpc"])
}

fn serve_with(dir: &std::path::Path, token: Option<&str>, grpc_args: &[&str]) -> Command {
    let target = dir.join("ecds.json");
    let module = ModuleSource::Local(wasm_path().display().to_string());
    let document = ecds::document("canary", &module, &plugin_config());
    std::fs::write(&target, document.to_string()).unwrap();
    let mut command = Command::new(canaryctl_bin());
    command
        .arg("serve")
        .arg(format!("--target=file:{}", target.display()))
        .args(["--listen=127.0.0.1:0", "--grpc-listen=127.0.0.1:0"])
        .args(grpc_args)
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

#[test]
fn refuses_a_plaintext_ecds_server_unless_asked_for_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let output = serve_with(dir.path(), Some("t0ken"), &[]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the ECDS server needs TLS") && stderr.contains("--insecure-grpc"),
        "{stderr}"
    );
    let args = [
        "--grpc-tls-cert=/nonexistent/cert.pem",
        "--grpc-tls-key=/nonexistent/key.pem",
    ];
    let output = serve_with(dir.path(), Some("t0ken"), &args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--grpc-client-ca"),
        "TLS but no client authentication: {stderr}"
    );
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
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("--insecure-grpc: the ECDS server runs in plaintext"),
        "a plaintext ECDS server is announced: {stderr}"
    );

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
fn the_example_envoy_bootstraps_for_canaryctl_serve_validate() {
    // The examples name certificates under /etc/canary-router/tls/: made here, in their place.
    let dir = tempfile::tempdir().unwrap();
    let pki = canary_e2e::pki::Pki::new(dir.path());
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    for (name, from) in [
        ("ca.pem", pki.cert("ca")),
        ("envoy.pem", pki.cert("client")),
        ("envoy-key.pem", pki.key("client")),
    ] {
        std::fs::copy(from, tls.join(name)).unwrap();
    }
    let tls_dir = format!("{}/", tls.display());
    for file in ["envoy-ecds-grpc.yaml", "envoy-ecds-grpc-token.yaml"] {
        let example = canary_e2e::workspace_root()
            .join("envoyfilter/controller")
            .join(file);
        let text = std::fs::read_to_string(&example).unwrap();
        assert!(text.contains("UpstreamTlsContext"), "{file}: ECDS over TLS");
        let text = text.replace("/etc/canary-router/tls/", &tls_dir);
        let path = dir.path().join(file);
        std::fs::write(&path, &text).unwrap();
        envoy_validate(&path).unwrap_or_else(|e| panic!("{}: {e}", example.display()));
        // The check bites: the same bootstrap with a misspelt field does not validate.
        let broken = text.replace("transport_api_version", "transport_api_versoin");
        assert_ne!(broken, text);
        let path = dir.path().join(format!("broken-{file}"));
        std::fs::write(&path, broken).unwrap();
        assert!(envoy_validate(&path).is_err(), "{file} misspelt");
    }
    let token = std::fs::read_to_string(
        canary_e2e::workspace_root().join("envoyfilter/controller/envoy-ecds-grpc-token.yaml"),
    )
    .unwrap();
    assert!(
        token.contains("key: authorization"),
        "the token example sends a token"
    );
}
