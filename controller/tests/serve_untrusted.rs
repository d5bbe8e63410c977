//! What a client without credentials can do to `canaryctl serve`. It cannot grow the fleet
//! without bound: 10,000 ECDS streams under made-up node ids leave the tracked Envoys,
//! `/v1/envoys` and the `/metrics` series at the configured cap, and every refused stream is
//! counted. It cannot read internal error text: a target error reaches it as a generic reason
//! and a request id, while a read with the token gets the details.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use canaryctl::ecds::{self, ModuleSource};
use canaryctl::serve::{Config, GrpcSecurity, Limits, Server, Token};
use canaryctl::targets::Target;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::extension::v3::extension_config_discovery_service_client::ExtensionConfigDiscoveryServiceClient;
use futures::StreamExt as _;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Code;

const NODES: usize = 10_000;
const MAX: usize = 100;

const PLUGIN_CONFIG: &str =
    r#"{"routes":[{"name":"web","variants":[{"name":"stable","weight":100}]}]}"#;

/// Opens one ECDS stream as `node` and returns what the server first answers: a response (the
/// node is tracked) or a status.
async fn subscribe(channel: Channel, node: String) -> Result<(), Code> {
    let mut client = ExtensionConfigDiscoveryServiceClient::new(channel);
    let request = DiscoveryRequest {
        node: Some(Node {
            id: node,
            cluster: "fake".to_owned(),
            ..Node::default()
        }),
        type_url: ecds::TYPED_EXTENSION_CONFIG.to_owned(),
        ..DiscoveryRequest::default()
    };
    let stream = client
        .stream_extension_configs(tokio_stream::iter([request]))
        .await
        .map_err(|status| status.code())?;
    match stream.into_inner().message().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Code::Unknown),
        Err(status) => Err(status.code()),
    }
}

async fn get(addr: SocketAddr, path: &str) -> String {
    get_with(addr, path, "").await
}

/// GET `path` with `extra` header lines; the body of a 200 answer.
async fn get_with(addr: SocketAddr, path: &str, extra: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_owned()
}

const TOKEN: &str = "test-token-0123456789";

/// A controller on a file target at `path`, written first with a valid configuration.
async fn start(path: &Path, poll: Duration) -> Server {
    let document = ecds::document(
        "canary",
        &ModuleSource::Local("canary_filter.wasm".to_owned()),
        PLUGIN_CONFIG,
    );
    std::fs::write(path, serde_json::to_vec(&document).expect("JSON")).expect("write");
    Server::start(Config {
        target: Target::File(path.to_owned()),
        listen: "127.0.0.1:0".parse().expect("address"),
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        module: None,
        token: Token::new(TOKEN).expect("token"),
        poll,
        fleet: Limits {
            max_nodes: MAX,
            forget_after: Duration::from_secs(3600),
        },
        grpc: GrpcSecurity::insecure(None),
        api_tls: None,
    })
    .await
    .expect("canaryctl serve starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_made_up_nodes_leave_the_fleet_at_its_cap() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = start(&dir.path().join("ecds.json"), Duration::from_millis(500)).await;
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr()))
        .expect("URI")
        .connect()
        .await
        .expect("connect to the gRPC server");

    let answers: Vec<Result<(), Code>> = futures::stream::iter(0..NODES)
        .map(|i| subscribe(channel.clone(), format!("made-up-{i}")))
        .buffer_unordered(64)
        .collect()
        .await;
    let served = answers.iter().filter(|a| a.is_ok()).count();
    let refused = answers
        .iter()
        .filter(|a| **a == Err(Code::ResourceExhausted))
        .count();
    assert_eq!(served, MAX, "streams served");
    assert_eq!(refused, NODES - MAX, "streams refused, of {answers:?}");

    let envoys: Value =
        serde_json::from_str(&get(server.http_addr(), "/v1/envoys").await).expect("JSON");
    let listed = envoys["envoys"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, MAX, "envoys listed");

    let metrics = get(server.http_addr(), "/metrics").await;
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("canaryctl_envoy_rejecting{"))
        .count();
    assert_eq!(series, MAX, "per-Envoy series in /metrics");
    let refused_total = format!("canaryctl_ecds_streams_refused_total {}", NODES - MAX);
    assert!(
        metrics.lines().any(|l| l == refused_total),
        "no {refused_total:?} in\n{metrics}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_error_is_withheld_from_a_read_without_the_token() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("ecds.json");
    let server = start(&path, Duration::from_millis(50)).await;
    // Someone breaks the target; the controller keeps its last good configuration.
    std::fs::write(&path, "{ not json").expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    let authorized = format!("Authorization: Bearer {TOKEN}\r\n");
    let detail = loop {
        let routes: Value =
            serde_json::from_str(&get_with(server.http_addr(), "/v1/routes", &authorized).await)
                .expect("JSON");
        if let Some(error) = routes["targetError"].as_str() {
            break error.to_owned();
        }
        assert!(Instant::now() < deadline, "no target error: {routes}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let file = path.display().to_string();
    assert!(
        detail.contains(&file),
        "with the token, the details: {detail}"
    );

    let routes: Value =
        serde_json::from_str(&get(server.http_addr(), "/v1/routes").await).expect("JSON");
    let withheld = routes["targetError"].as_str().unwrap_or_default();
    assert!(
        withheld.contains("request id") && !withheld.contains(&file) && !withheld.contains("json"),
        "without the token, no internal text: {withheld}"
    );
    let wrong: Value = serde_json::from_str(
        &get_with(
            server.http_addr(),
            "/v1/routes",
            "Authorization: Bearer wrong\r\n",
        )
        .await,
    )
    .expect("JSON");
    let wrong = wrong["targetError"].as_str().unwrap_or_default();
    assert!(
        wrong.contains("request id") && !wrong.contains(&file),
        "a wrong token is no token: {wrong}"
    );
    server.shutdown().await.expect("shutdown");
}
