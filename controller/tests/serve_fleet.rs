//! `canaryctl serve` keeps a bounded fleet: 10,000 ECDS streams under made-up node ids, as any
//! client that reaches the gRPC port can open, leave the tracked Envoys, `/v1/envoys` and the
//! `/metrics` series at the configured cap, and every refused stream is counted.

use std::net::SocketAddr;
use std::time::Duration;

use canaryctl::ecds::{self, ModuleSource};
use canaryctl::serve::{Config, Limits, Server, Token};
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
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_made_up_nodes_leave_the_fleet_at_its_cap() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("ecds.json");
    let document = ecds::document(
        "canary",
        &ModuleSource::Local("canary_filter.wasm".to_owned()),
        PLUGIN_CONFIG,
    );
    std::fs::write(&path, serde_json::to_vec(&document).expect("JSON")).expect("write");
    let server = Server::start(Config {
        target: Target::File(path),
        listen: "127.0.0.1:0".parse().expect("address"),
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        module: None,
        token: Token::new("test-token-0123456789").expect("token"),
        poll: Duration::from_millis(500),
        fleet: Limits {
            max_nodes: MAX,
            forget_after: Duration::from_secs(3600),
        },
    })
    .await
    .expect("canaryctl serve starts");
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
