//! The client `rollout --metrics` and `status --envoy-admin` use, against a local HTTPS server
//! whose certificate comes from a CA made for the test: the CA is needed and enough, bearer
//! tokens and basic auth are sent from their files, and failures (an answer other than 2xx, a
//! redirect, no answer in time) are reported with what helps and without the credentials.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use canaryctl::http::{HttpClient, HttpError, HttpOptions};
use canaryctl::observed;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

const TOKEN: &str = "s3cr3t-token.value";
const USER: &str = "prom";
const PASSWORD: &str = "pa55:word";

/// An HTTPS server on 127.0.0.1, its CA's certificate in `ca.pem`, and the `Authorization`
/// headers it was sent. It stops with the test process.
struct Server {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_pem, cert, key) = certificates();
        std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("write ca.pem");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let router = router(authorizations.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(listener, acceptor, router));
        });
        Server {
            addr,
            dir,
            authorizations,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A file in the server's directory holding `content`.
    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        path
    }

    fn options(&self) -> HttpOptions {
        HttpOptions {
            ca_file: Some(self.ca()),
            ..HttpOptions::default()
        }
    }

    fn authorizations(&self) -> Vec<String> {
        self.authorizations.lock().expect("lock").clone()
    }
}

async fn serve(listener: std::net::TcpListener, acceptor: TlsAcceptor, router: Router) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            // A client that refuses the certificate ends the handshake: nothing to serve.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |request| router.clone().oneshot(request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn router(authorizations: Arc<Mutex<Vec<String>>>) -> Router {
    let seen = Arc::new(move |headers: HeaderMap| {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let Some(value) = &authorization {
            authorizations.lock().expect("lock").push(value.clone());
        }
        authorization
    });
    let stats_seen = seen.clone();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    Router::new()
        .route("/ok", get(|| async { "hello" }))
        .route(
            "/protected",
            get(move |headers: HeaderMap| {
                let authorization = seen(headers);
                let basic = basic.clone();
                async move {
                    let accepted = [format!("Bearer {TOKEN}"), basic];
                    match authorization {
                        Some(value) if accepted.contains(&value) => {
                            (StatusCode::OK, "welcome").into_response()
                        }
                        _ => (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response(),
                    }
                }
            }),
        )
        .route(
            "/stats",
            get(move |headers: HeaderMap| {
                let authorization = stats_seen(headers);
                async move {
                    if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
                        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
                    }
                    let counter = "wasmcustom.canary.route.web.variant.canary.decision.hash";
                    format!(r#"{{"stats":[{{"name":"{counter}","value":7}}]}}"#).into_response()
                }
            }),
        )
        .route(
            "/fail",
            get(|| async {
                let body = format!("query failed: {}", "x".repeat(1000));
                (StatusCode::INTERNAL_SERVER_ERROR, body)
            }),
        )
        .route(
            "/moved",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "https://elsewhere.test/steal")],
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
}

/// A CA's PEM certificate, and a certificate it signed for `localhost` and 127.0.0.1 with its
/// key.
fn certificates() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server parameters");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "server");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let key = PrivateKeyDer::try_from(key.serialize_der()).expect("server key DER");
    (ca_cert.pem(), cert.der().clone(), key)
}

fn client(options: &HttpOptions) -> HttpClient {
    HttpClient::new(options).expect("client")
}

fn assert_secret_free(error: &HttpError) {
    let text = format!("{error} {error:?}");
    for secret in [TOKEN, PASSWORD] {
        assert!(!text.contains(secret), "a credential in {text}");
    }
}

#[test]
fn https_with_the_ca_works() {
    let server = Server::start();
    let body = client(&server.options()).get(&server.url("/ok")).unwrap();
    assert_eq!(&body[..], b"hello");
    let by_address = format!("https://127.0.0.1:{}/ok", server.addr.port());
    assert_eq!(
        &client(&server.options()).get(&by_address).unwrap()[..],
        b"hello"
    );
}

#[test]
fn without_the_ca_the_certificate_is_refused() {
    let server = Server::start();
    let error = client(&HttpOptions::default())
        .get(&server.url("/ok"))
        .unwrap_err();
    assert!(matches!(error, HttpError::Fetch { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains(&server.url("/ok")), "{text}");
    assert!(text.contains("certificate"), "{text}");
}

#[test]
fn a_ca_bundle_is_trusted_instead_of_the_system_roots() {
    let server = Server::start();
    let other = Server::start();
    let error = client(&other.options())
        .get(&server.url("/ok"))
        .unwrap_err();
    assert!(error.to_string().contains("certificate"), "{error}");
    let not_pem = HttpOptions {
        ca_file: Some(server.file("junk.pem", "not a certificate")),
        ..HttpOptions::default()
    };
    let error = HttpClient::new(&not_pem).unwrap_err();
    assert!(matches!(error, HttpError::File { .. }), "{error}");
}

#[test]
fn a_bearer_token_is_sent_from_its_file_read_at_each_request() {
    let server = Server::start();
    let token_file = server.file("token", &format!("{TOKEN}\n"));
    let client = client(&HttpOptions {
        token_file: Some(token_file.clone()),
        ..server.options()
    });
    assert_eq!(
        &client.get(&server.url("/protected")).unwrap()[..],
        b"welcome"
    );
    assert_eq!(server.authorizations(), [format!("Bearer {TOKEN}")]);

    std::fs::write(&token_file, "rotated").unwrap();
    let error = client.get(&server.url("/protected")).unwrap_err();
    assert!(
        matches!(error, HttpError::Status { status: 401, .. }),
        "{error}"
    );
    assert_eq!(server.authorizations()[1], "Bearer rotated");
}

#[test]
fn basic_auth_is_sent_from_its_file() {
    let server = Server::start();
    let client = client(&HttpOptions {
        basic_auth_file: Some(server.file("basic", &format!("{USER}:{PASSWORD}\n"))),
        ..server.options()
    });
    assert_eq!(
        &client.get(&server.url("/protected")).unwrap()[..],
        b"welcome"
    );
    assert!(server.authorizations()[0].starts_with("Basic "));
}

#[test]
fn a_refusal_names_the_status_the_url_and_the_start_of_the_body_but_no_credentials() {
    let server = Server::start();
    let wrong = client(&HttpOptions {
        basic_auth_file: Some(server.file("basic", &format!("{USER}:{PASSWORD}x"))),
        ..server.options()
    });
    let error = wrong.get(&server.url("/protected")).unwrap_err();
    assert_secret_free(&error);
    assert_eq!(
        error.to_string(),
        format!("{} answered 401: Unauthorized", server.url("/protected"))
    );

    let token = client(&HttpOptions {
        token_file: Some(server.file("token", TOKEN)),
        ..server.options()
    });
    let error = token.get(&server.url("/fail")).unwrap_err();
    assert_secret_free(&error);
    let HttpError::Status { status, body, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(*status, 500);
    assert!(body.starts_with("query failed: xxx"), "{body}");
    assert!(body.chars().count() < 250, "an excerpt: {body}");
}

#[test]
fn a_redirect_is_reported_not_followed() {
    let server = Server::start();
    let client = client(&HttpOptions {
        token_file: Some(server.file("token", TOKEN)),
        ..server.options()
    });
    let error = client.get(&server.url("/moved")).unwrap_err();
    assert_secret_free(&error);
    let HttpError::Redirect {
        status, location, ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!(
        (*status, location.as_str()),
        (302, "https://elsewhere.test/steal")
    );
    assert!(error.to_string().contains("not followed"), "{error}");
}

#[test]
fn no_answer_in_time_is_a_timeout() {
    let server = Server::start();
    let client = client(&HttpOptions {
        timeout: Duration::from_millis(300),
        ..server.options()
    });
    let started = std::time::Instant::now();
    let error = client.get(&server.url("/slow")).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{error}");
    assert!(matches!(error, HttpError::Fetch { .. }), "{error}");
    assert!(
        error.to_string().contains("timed out after 300ms"),
        "{error}"
    );
}

#[test]
fn nothing_listening_is_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/");
    let error = client(&HttpOptions::default()).get(&url).unwrap_err();
    assert!(matches!(error, HttpError::Fetch { .. }), "{error}");
    assert!(error.to_string().contains(&url), "{error}");
}

#[test]
fn status_reads_an_envoy_admin_endpoint_over_https_with_a_token() {
    let server = Server::start();
    let options = HttpOptions {
        token_file: Some(server.file("token", TOKEN)),
        ..server.options()
    };
    let observed = observed::fetch(&server.url(""), &options).unwrap();
    assert_eq!(
        observed.route("web").and_then(|r| r.get("canary")),
        Some(&7)
    );
    assert_eq!(server.authorizations(), [format!("Bearer {TOKEN}")]);

    let error = observed::fetch(&server.url(""), &server.options()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&server.url("/stats?format=json")), "{text}");
    assert!(text.contains("answered 401"), "{text}");
}
