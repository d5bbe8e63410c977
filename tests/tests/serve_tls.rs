//! `canaryctl serve`'s ECDS server over TLS: real Envoys that authenticate with a client
//! certificate (mTLS) or with a bearer token in the stream's initial metadata get the
//! configuration and route by it; a client without credentials, with a certificate from
//! another CA, with a wrong token, or in plaintext gets nothing, and a missing token is counted.
//! The HTTP API over TLS answers a client that trusts its CA, reads and writes alike, and
//! nobody else. The certificates are made for the test.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use canary_e2e::pki::Pki;
use canary_e2e::{client, get, wasm_path, Envoy, GrpcClientTls, Upstream};
use canaryctl::ecds::{self, ModuleSource};
use canaryctl::serve::{ApiTls, Config, GrpcSecurity, Limits, Server, TlsFiles, Token};
use canaryctl::targets::Target;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::extension::v3::extension_config_discovery_service_client::ExtensionConfigDiscoveryServiceClient;
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

const API_TOKEN: &str = "api-token-0123456789";
const ENVOY_TOKEN: &str = "envoy-token-9876543210";

/// Everything to the canary: a request that reaches it went by the configuration served.
fn plugin_config() -> String {
    json!({
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 0 }, { "name": "canary", "weight": 100 } ],
            "stickiness": { "keys": [ { "header": "x-user-id" } ] }
        }]
    })
    .to_string()
}

async fn controller(dir: &Path, grpc: GrpcSecurity) -> Server {
    controller_with(dir, grpc, None).await
}

/// The same, with the HTTP API over TLS when `api_tls` is given.
async fn controller_with(dir: &Path, grpc: GrpcSecurity, api_tls: Option<ApiTls>) -> Server {
    let target = dir.join("ecds.json");
    let module = ModuleSource::Local(wasm_path().display().to_string());
    let document = ecds::document("canary", &module, &plugin_config());
    std::fs::write(&target, document.to_string()).expect("write the target");
    Server::start(Config {
        target: Target::File(target),
        listen: "127.0.0.1:0".parse().expect("address"),
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        module: None,
        token: Token::new(API_TOKEN).expect("token"),
        poll: Duration::from_millis(100),
        fleet: Limits::default(),
        grpc,
        api_tls,
    })
    .await
    .expect("canaryctl serve starts")
}

/// An Envoy that takes its configuration from `server` over TLS with `tls`, and answers with the
/// canary once configured.
async fn assert_configured_over_tls(server: &Server, tls: GrpcClientTls) {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .ecds_grpc(server.grpc_addr())
        .ecds_grpc_tls(tls)
        .start()
        .await;
    let reply = get(&client(), &envoy.url("/"), &[("x-user-id", "u-1")])
        .await
        .expect("a request through Envoy");
    assert_eq!(
        reply.status,
        200,
        "{reply:?}; Envoy's log:\n{}",
        envoy.log()
    );
    assert_eq!(reply.upstream.as_deref(), Some("canary"), "{reply:?}");
}

/// Opens an ECDS stream to `addr` as `client` would and returns the first answer.
async fn subscribe(
    addr: SocketAddr,
    tls: Option<ClientTlsConfig>,
    token: Option<&str>,
) -> Result<(), String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint =
        Channel::from_shared(format!("{scheme}://{addr}")).map_err(|e| e.to_string())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let discovery = DiscoveryRequest {
        node: Some(Node {
            id: "probe".to_owned(),
            cluster: "probe".to_owned(),
            ..Node::default()
        }),
        type_url: ecds::TYPED_EXTENSION_CONFIG.to_owned(),
        ..DiscoveryRequest::default()
    };
    let mut request = tonic::Request::new(tokio_stream::iter([discovery]));
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("metadata value");
        request.metadata_mut().insert("authorization", value);
    }
    let mut client = ExtensionConfigDiscoveryServiceClient::new(channel);
    let stream = client
        .stream_extension_configs(request)
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    match stream.into_inner().message().await {
        Ok(Some(response)) if !response.resources.is_empty() => Ok(()),
        Ok(other) => Err(format!("no resource: {other:?}")),
        Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
    }
}

/// The controller's certificate, and the CA of Envoys' certificates if `mtls`.
fn server_files(pki: &Pki, mtls: bool) -> TlsFiles {
    TlsFiles {
        cert: pki.cert("server"),
        key: pki.key("server"),
        client_ca: mtls.then(|| pki.cert("ca")),
    }
}

fn client_tls(pki: &Pki, identity: Option<&str>) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.read(pki.cert("ca"))))
        .domain_name("localhost");
    if let Some(name) = identity {
        tls = tls.identity(Identity::from_pem(
            pki.read(pki.cert(name)),
            pki.read(pki.key(name)),
        ));
    }
    tls
}

async fn metric(server: &Server, name: &str) -> u64 {
    let url = format!("http://{}/metrics", server.http_addr());
    let text = client()
        .get(url)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_mtls_only_envoys_holding_a_certificate_of_the_ca_are_served() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pki = Pki::new(dir.path());
    let files = server_files(&pki, true);
    let server = controller(dir.path(), GrpcSecurity::tls(&files, None).expect("TLS")).await;

    assert_configured_over_tls(
        &server,
        GrpcClientTls {
            ca: pki.cert("ca"),
            client_cert: Some((pki.cert("client"), pki.key("client"))),
            token: None,
        },
    )
    .await;

    let addr = server.grpc_addr();
    let served = subscribe(addr, Some(client_tls(&pki, Some("client"))), None).await;
    assert_eq!(served, Ok(()), "a client with the CA's certificate");
    for (label, tls) in [
        ("no client certificate", Some(client_tls(&pki, None))),
        (
            "a certificate of another CA",
            Some(client_tls(&pki, Some("stranger"))),
        ),
        ("plaintext", None),
    ] {
        let answer = subscribe(addr, tls, None).await;
        assert!(answer.is_err(), "{label}: served {answer:?}");
        println!("{label}: {answer:?}");
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_token_only_envoys_sending_it_are_served_and_the_others_counted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pki = Pki::new(dir.path());
    let files = server_files(&pki, false);
    let security = GrpcSecurity::tls(&files, Token::new(ENVOY_TOKEN)).expect("TLS");
    let server = controller(dir.path(), security).await;

    assert_configured_over_tls(
        &server,
        GrpcClientTls {
            ca: pki.cert("ca"),
            client_cert: None,
            token: Some(ENVOY_TOKEN.to_owned()),
        },
    )
    .await;

    let addr = server.grpc_addr();
    let tls = || Some(client_tls(&pki, None));
    assert_eq!(subscribe(addr, tls(), Some(ENVOY_TOKEN)).await, Ok(()));
    let unauthenticated = "canaryctl_ecds_streams_unauthenticated_total";
    assert_eq!(metric(&server, unauthenticated).await, 0);
    for (label, token) in [
        ("no token", None),
        ("a wrong token", Some("envoy-token-0000000000")),
        ("the API token", Some(API_TOKEN)),
    ] {
        let answer = subscribe(addr, tls(), token).await;
        let code = format!("{:?}", Code::Unauthenticated);
        assert!(
            answer.as_ref().is_err_and(|e| e.starts_with(&code)),
            "{label}: {answer:?}"
        );
    }
    assert_eq!(metric(&server, unauthenticated).await, 3);
    let plaintext = subscribe(addr, None, Some(ENVOY_TOKEN)).await;
    assert!(plaintext.is_err(), "plaintext: {plaintext:?}");
    server.shutdown().await.expect("shutdown");
}

#[test]
fn tls_without_a_way_to_authenticate_clients_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pki = Pki::new(dir.path());
    let files = server_files(&pki, false);
    let error = GrpcSecurity::tls(&files, None).expect_err("no client authentication");
    assert!(error.to_string().contains("--grpc-client-ca"), "{error}");
    let swapped = TlsFiles {
        cert: pki.key("server"),
        key: pki.cert("server"),
        client_ca: Some(pki.cert("ca")),
    };
    let error = GrpcSecurity::tls(&swapped, None).expect_err("a key where the certificate goes");
    assert!(error.to_string().contains("server-key.pem"), "{error}");
}

/// A client of the HTTP API that trusts `ca`, if given.
fn https_client(ca: Option<&[u8]>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .use_rustls_tls();
    if let Some(ca) = ca {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(ca).expect("CA"));
    }
    builder.build().expect("HTTPS client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_over_tls_answers_only_clients_that_trust_its_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    let files = server_files(&pki, false);
    let api_tls = ApiTls {
        cert: files.cert.clone(),
        key: files.key.clone(),
    };
    let server = controller_with(
        dir.path(),
        GrpcSecurity::tls(&files, Some(Token::new(ENVOY_TOKEN).expect("token"))).expect("TLS"),
        Some(api_tls),
    )
    .await;
    let port = server.http_addr().port();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let trusting = https_client(Some(&pki.read(pki.cert("ca"))));

    // A client that connects and never starts its handshake holds up nobody: the request
    // below is answered while that connection is still open, well before the 10 s the
    // stalled handshake is given.
    let stalled = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .expect("connect");
    let asked = std::time::Instant::now();
    let routes = trusting
        .get(url("/v1/routes"))
        .send()
        .await
        .expect("GET over TLS");
    assert_eq!(routes.status(), 200);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered beside a stalled handshake in {:?}",
        asked.elapsed()
    );
    drop(stalled);
    let changed = trusting
        .put(url("/v1/routes/web/weights"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body(json!({ "weights": { "canary": 40 } }).to_string())
        .send()
        .await
        .expect("PUT over TLS");
    assert_eq!(changed.status(), 200, "{:?}", changed.text().await);
    let config = std::fs::read_to_string(dir.path().join("ecds.json")).expect("the target");
    assert!(
        config.contains(r#"\"weight\":40"#),
        "the change was written: {config}"
    );

    let untrusting = https_client(None);
    let refused = untrusting.get(url("/v1/routes")).send().await;
    assert!(
        refused.is_err(),
        "a client without the CA is refused: {refused:?}"
    );
    let plaintext = client()
        .get(format!("http://localhost:{port}/v1/routes"))
        .send()
        .await;
    assert!(
        !plaintext.is_ok_and(|response| response.status().is_success()),
        "plaintext gets nothing from the TLS port"
    );
    server.shutdown().await.expect("shutdown");
}
