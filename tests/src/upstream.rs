//! Real HTTP upstream servers (hyper, HTTP/1.1 and HTTP/2) standing for service versions.
//!
//! Each answers every request with its name in the body and in `x-upstream`, echoes the
//! decision header it received in `x-seen-variant`, and can be made to fail a share of requests,
//! answer slowly, or set a cookie of its own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Header naming the upstream that answered.
pub const UPSTREAM_HEADER: &str = "x-upstream";
/// Header echoing the decision header the upstream received.
pub const SEEN_VARIANT_HEADER: &str = "x-seen-variant";
/// Request headers an upstream accepts (hyper's default is 100), so that whatever Envoy
/// forwards reaches it.
pub const MAX_REQUEST_HEADERS: usize = 1000;

#[derive(Debug, Clone, Default)]
struct Behaviour {
    name: String,
    /// Every `fail_every`-th request gets a 500 (0: never).
    fail_every: u64,
    delay: Duration,
    set_cookie: Option<String>,
}

pub struct UpstreamBuilder(Behaviour);

impl UpstreamBuilder {
    /// Fails one request in `n` with a 500.
    pub fn fail_one_in(mut self, n: u64) -> Self {
        self.0.fail_every = n;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.0.delay = delay;
        self
    }

    /// Adds this `Set-Cookie` to every response.
    pub fn set_cookie(mut self, cookie: &str) -> Self {
        self.0.set_cookie = Some(cookie.to_owned());
        self
    }

    pub async fn start(self) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let behaviour = Arc::new(self.0);
        let served = Arc::new(AtomicU64::new(0));
        let name = behaviour.name.clone();
        let counter = Arc::clone(&served);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let behaviour = Arc::clone(&behaviour);
                let served = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        respond(Arc::clone(&behaviour), Arc::clone(&served), req)
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder.http1().max_headers(MAX_REQUEST_HEADERS);
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            name,
            addr,
            served,
            task,
        }
    }
}

async fn respond(
    behaviour: Arc<Behaviour>,
    served: Arc<AtomicU64>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = served.fetch_add(1, Ordering::Relaxed) + 1;
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    let status = if behaviour.fail_every > 0 && n.is_multiple_of(behaviour.fail_every) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let seen = req
        .headers()
        .get_all("x-canary-variant")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    let mut response = Response::builder()
        .status(status)
        .header(UPSTREAM_HEADER, behaviour.name.as_str())
        .header(SEEN_VARIANT_HEADER, seen);
    if let Some(cookie) = &behaviour.set_cookie {
        response = response.header("set-cookie", cookie.as_str());
    }
    Ok(response
        .body(Full::new(Bytes::from(behaviour.name.clone())))
        .expect("valid response"))
}

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    served: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub fn builder(name: &str) -> UpstreamBuilder {
        UpstreamBuilder(Behaviour {
            name: name.to_owned(),
            ..Behaviour::default()
        })
    }

    pub async fn start(name: &str) -> Upstream {
        Self::builder(name).start().await
    }

    /// Requests served so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
