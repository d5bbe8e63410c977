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
mod metrics;
mod module;
mod resource;
mod store;
mod xds;

use std::net::SocketAddr;
use std::path::PathBuf;
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
pub use self::module::Module;
pub use self::resource::{Resource, ResourceError};
pub use self::store::{Snapshot, StoreError};
use crate::args::TargetArg;
use crate::targets::Target;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// Address of the HTTP API, module, metrics and probes.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the ECDS gRPC server (needs a file: target).
    #[arg(long, default_value = "0.0.0.0:18000")]
    pub grpc_listen: SocketAddr,
    /// The filter module to serve at /filter.wasm.
    #[arg(long, value_name = "PATH")]
    pub module: Option<PathBuf>,
    /// A file holding the bearer token that mutating API calls need (else the token is taken
    /// from the CANARYCTL_TOKEN environment variable; never from the command line, where any
    /// local user could read it).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// How often the target is read for changes made by others, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub poll_ms: u64,
    /// Envoys tracked at most, connected or recently gone; a stream from another is refused
    /// (RESOURCE_EXHAUSTED) and counted.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_nodes)]
    pub max_envoys: usize,
    /// How long an Envoy whose streams have all gone is still listed, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().forget_after.as_secs())]
    pub forget_envoys_after: u64,
    /// The ECDS server's TLS certificate chain (PEM).
    #[arg(long, value_name = "PATH", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// The key of --grpc-tls-cert (PEM).
    #[arg(long, value_name = "PATH", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,
    /// CA bundle (PEM) for Envoys' client certificates: with it, an Envoy must present one.
    #[arg(long, value_name = "PATH", requires = "grpc_tls_cert")]
    pub grpc_client_ca: Option<PathBuf>,
    /// A file holding the token Envoys send as `authorization: Bearer <token>` in the ECDS
    /// stream's initial metadata (a different secret from the API token).
    #[arg(long, value_name = "PATH")]
    pub grpc_token_file: Option<PathBuf>,
    /// Serve ECDS in plaintext: anyone who reaches the port reads the configuration.
    #[arg(long, conflicts_with_all = ["grpc_tls_cert", "grpc_client_ca"])]
    pub insecure_grpc: bool,
}

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
    /// Reads the target, binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<Server, ServeError> {
        let store = Arc::new(store::Store::open(config.target).await?);
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
        tasks.push(tokio::spawn(async move {
            axum::serve(http, router)
                .with_graceful_shutdown(http_stop)
                .await
                .map_err(|e| ServeError::Task(format!("HTTP server: {e}")))
        }));
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

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        println!(
            "serving: http {} grpc {}",
            server.http_addr(),
            server.grpc_addr()
        );
        termination().await?;
        info!("shutting down");
        server.shutdown().await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn config(args: ServeArgs) -> anyhow::Result<Config> {
    let target: Target = args.target.target.parse()?;
    let secret = match (&args.token_file, std::env::var("CANARYCTL_TOKEN")) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?,
        (None, Ok(token)) => token,
        (None, Err(_)) => anyhow::bail!(
            "a bearer token is required for the mutating API calls: --token-file PATH or CANARYCTL_TOKEN"
        ),
    };
    let token = Token::new(&secret).context("the bearer token is empty")?;
    let module = args
        .module
        .as_deref()
        .map(|path| {
            Module::read(path).with_context(|| format!("cannot read the module {}", path.display()))
        })
        .transpose()?;
    anyhow::ensure!(args.max_envoys > 0, "--max-envoys must be at least 1");
    let grpc_token = args
        .grpc_token_file
        .as_deref()
        .map(|path| {
            let secret = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the gRPC token file {}", path.display()))?;
            Token::new(&secret)
                .with_context(|| format!("the gRPC token in {} is empty", path.display()))
        })
        .transpose()?;
    let delivered_by_istiod = matches!(target, Target::Kube { .. });
    let grpc = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
        // A kube:// target's ECDS server serves no resource: nothing to protect but the fleet
        // list, which is bounded.
        (None, None) if delivered_by_istiod => GrpcSecurity::insecure(grpc_token),
        _ if args.insecure_grpc => {
            warn!("--insecure-grpc: the ECDS server runs in plaintext; anyone who reaches it reads the configuration");
            GrpcSecurity::insecure(grpc_token)
        }
        (Some(cert), Some(key)) => GrpcSecurity::tls(
            &TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.grpc_client_ca.clone(),
            },
            grpc_token,
        )?,
        _ => anyhow::bail!(
            "the ECDS server needs TLS (--grpc-tls-cert and --grpc-tls-key, with --grpc-client-ca \
             and/or --grpc-token-file), or --insecure-grpc to serve plaintext"
        ),
    };
    if matches!(target, Target::Kube { .. }) {
        warn!(
            "a kube:// target is delivered by istiod; the ECDS gRPC server will push no resource"
        );
    }
    Ok(Config {
        target,
        listen: args.listen,
        grpc_listen: args.grpc_listen,
        module,
        token,
        poll: Duration::from_millis(args.poll_ms.max(50)),
        fleet: Limits {
            max_nodes: args.max_envoys,
            forget_after: Duration::from_secs(args.forget_envoys_after),
        },
        grpc,
    })
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
