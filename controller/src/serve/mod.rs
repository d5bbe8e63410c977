//! `canaryctl serve`: the control sidecar. An HTTP API that changes weights on the target, an
//! ECDS gRPC server that pushes the filter's configuration to every connected Envoy and tracks
//! their ACKs and NACKs, the filter module at `/filter.wasm`, `/metrics`, `/healthz` and
//! `/readyz`. SIGTERM or SIGINT stops it gracefully.
//!
//! The target stays the only source of truth: an API change is written to it (validated by the
//! filter's own parser first) and what it then holds is pushed. A restarted controller reads it
//! back, so reconnecting Envoys get the version they already serve.

mod api;
mod auth;
mod fleet;
mod grpc_security;
mod https;
mod metrics;
mod module;
mod resource;
mod store;
mod xds;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

pub use self::auth::Token;
pub use self::fleet::{EnvoyStatus, Limits, Nack};
pub use self::grpc_security::{GrpcSecurity, TlsFiles};
pub use self::https::ApiTls;
pub use self::module::Module;
pub use self::resource::{Resource, ResourceError};
pub use self::store::{Snapshot, StoreError};
use crate::targets::{Clients, Target};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("a server task failed: {0}")]
    Task(String),
    #[error(
        "{0} holds an ECDS resource for the ECDS server to push (a dynamic-module EnvoyFilter), \
         which carries the salt and the targeting values: the ECDS server needs TLS \
         (--grpc-tls-cert and --grpc-tls-key, with --grpc-client-ca and/or --grpc-token-file), \
         or --insecure-grpc to serve plaintext"
    )]
    Unprotected(String),
}

/// What a server is started with.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    pub module: Option<Module>,
    pub token: Token,
    pub poll: Duration,
    pub fleet: Limits,
    pub grpc: GrpcSecurity,
    /// TLS for the HTTP API; plaintext without.
    pub api_tls: Option<ApiTls>,
}

/// A running server.
pub struct Server {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    stop: watch::Sender<bool>,
    ready: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    /// Reads the target, binds both listeners and starts serving, with clients of its own.
    pub async fn start(config: Config) -> Result<Server, ServeError> {
        Self::start_with(config, Clients::default()).await
    }

    /// Reads the target through `clients`, binds both listeners and starts serving.
    pub async fn start_with(config: Config, clients: Clients) -> Result<Server, ServeError> {
        let store = Arc::new(store::Store::open(config.target, clients).await?);
        match store.current().resource {
            Some(_) if !config.grpc.serves_resources() => {
                return Err(ServeError::Unprotected(store.target().to_string()));
            }
            Some(_) => {}
            None => {
                warn!(target = %store.target(), "istiod delivers this target; the ECDS server pushes no resource")
            }
        }
        let fleet = Arc::new(fleet::Fleet::new(config.fleet));
        let (stop, stopped) = watch::channel(false);
        let ready = Arc::new(AtomicBool::new(true));

        let http = bind(config.listen).await?;
        let grpc = bind(config.grpc_listen).await?;
        let http_addr = local_addr(&http, config.listen)?;
        let grpc_addr = local_addr(&grpc, config.grpc_listen)?;

        let metrics = metrics::Metrics::new(Arc::clone(&fleet), store.subscribe());
        let router = api::router(api::Api {
            store: Arc::clone(&store),
            fleet: Arc::clone(&fleet),
            metrics: Arc::new(metrics),
            token: Arc::new(config.token),
            module: config.module.map(Arc::new),
            ready: Arc::clone(&ready),
        });
        let mut tasks = Vec::new();
        let http_stop = until_stopped(stopped.clone());
        match &config.api_tls {
            Some(tls) => {
                let acceptor = tls
                    .acceptor()
                    .map_err(|e| ServeError::Task(format!("HTTP API TLS: {e:#}")))?;
                let https = https::HttpsListener::new(http, acceptor, http_addr);
                tasks.push(tokio::spawn(async move {
                    axum::serve(https, router)
                        .with_graceful_shutdown(http_stop)
                        .await
                        .map_err(|e| ServeError::Task(format!("HTTPS server: {e}")))
                }));
            }
            None => {
                warn!(http = %http_addr, "the HTTP API serves plaintext: its bearer token crosses the network in clear text (--tls-cert and --tls-key serve it over TLS)");
                tasks.push(tokio::spawn(async move {
                    axum::serve(http, router)
                        .with_graceful_shutdown(http_stop)
                        .await
                        .map_err(|e| ServeError::Task(format!("HTTP server: {e}")))
                }));
            }
        }
        let security = Arc::new(config.grpc);
        let grpc_tls = security.server_tls();
        info!(grpc = %grpc_addr, security = security.describe(), "ECDS server");
        let ecds = xds::Ecds::service(
            store.subscribe(),
            Arc::clone(&fleet),
            security,
            stopped.clone(),
        );
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = grpc_tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| ServeError::Task(format!("gRPC TLS: {e}")))?;
        }
        let grpc_stop = until_stopped(stopped.clone());
        tasks.push(tokio::spawn(async move {
            builder
                .add_service(ecds)
                .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), grpc_stop)
                .await
                .map_err(|e| ServeError::Task(format!("gRPC server: {e}")))
        }));
        let (poll, watcher) = (config.poll, Arc::clone(&store));
        let watch_stop = stopped.clone();
        tasks.push(tokio::spawn(async move {
            watcher.watch(poll, watch_stop).await;
            Ok(())
        }));
        info!(http = %http_addr, grpc = %grpc_addr, target = %store.target(), "serving");
        Ok(Server {
            http_addr,
            grpc_addr,
            stop,
            ready,
            tasks,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Stops accepting, closes the ECDS streams, lets in-flight requests finish.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.ready.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.map_err(|e| ServeError::Task(e.to_string()))??;
        }
        info!("stopped");
        Ok(())
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| ServeError::Listen { addr, error })
}

/// The address bound (the port chosen, for port 0).
fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|error| ServeError::Listen { addr, error })
}

async fn until_stopped(mut stop: watch::Receiver<bool>) {
    stopped(&mut stop).await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Serves `config`, reaching the target through `clients`, until SIGTERM or SIGINT, then stops
/// gracefully.
pub async fn run(config: Config, clients: Clients) -> anyhow::Result<ExitCode> {
    let server = Server::start_with(config, clients).await?;
    println!(
        "serving: http {} grpc {}",
        server.http_addr(),
        server.grpc_addr()
    );
    termination().await?;
    info!("shutting down");
    server.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
