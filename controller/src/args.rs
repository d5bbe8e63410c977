//! The command line, as documented in the README.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::duration::parse_duration;
use crate::http::HttpOptions;
pub use crate::render::{Api, ModuleKind};
use crate::rollout::progress;

use crate::render::ServiceAccount;

#[derive(Debug, Parser)]
#[command(
    name = "canaryctl",
    version,
    about = "Canary routing for Istio and Envoy"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// A request for `assign` to decide as the filter would, targeting rules included.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RequestArgs {
    /// The request's `:path`, query string included (`/app?canary=always`).
    #[arg(long)]
    pub path: Option<String>,
    /// A request header, `NAME: VALUE`; repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A request cookie, `NAME=VALUE` as in a `cookie` header; repeatable.
    #[arg(long = "cookie", value_name = "NAME=VALUE")]
    pub cookies: Vec<String>,
}

impl RequestArgs {
    /// Whether a request is described at all.
    pub fn is_given(&self) -> bool {
        self.path.is_some() || !self.headers.is_empty() || !self.cookies.is_empty()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a plugin configuration (JSON or YAML) or a canary spec.
    Validate { file: PathBuf },
    /// Render the Istio (or Envoy Gateway) resources for a canary spec.
    Render {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Api::Wasmplugin)]
        api: Api,
        /// The filter build the resources run: the wasm module of the spec (the default, except
        /// for envoyextensionpolicy) or the native dynamic module, which the proxies must
        /// already have on their file system.
        #[arg(long, value_enum)]
        module_kind: Option<ModuleKind>,
        /// Also render a Role granting only get and patch on the filter resource, and a
        /// RoleBinding of it to this ServiceAccount (the controller's).
        #[arg(long, value_name = "NAMESPACE/NAME")]
        rbac: Option<ServiceAccount>,
    },
    /// Print a fresh seal for the decision values (256 bits from the OS random source).
    Seal,
    /// Compute a user's variant offline, exactly as the filter does.
    Assign {
        file: PathBuf,
        #[arg(long)]
        route: String,
        /// The identity to hash; given, the request's identity keys and cookie are not read.
        #[arg(long, required_unless_present_any = ["path", "headers", "cookies"])]
        user: Option<String>,
        #[command(flatten)]
        request: RequestArgs,
        /// The time to assign at, RFC 3339 (e.g. 2026-12-07T13:00:00Z), for a route with a
        /// ramp; default now.
        #[arg(long, value_name = "RFC3339", value_parser = crate::ramps::parse_at)]
        at: Option<u64>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Set variant weights on a live target; the baseline takes the remainder.
    SetWeight {
        #[command(flatten)]
        target: TargetArg,
        #[arg(long)]
        route: String,
        /// VARIANT=PERCENT, e.g. canary=30
        #[arg(required = true, value_name = "VARIANT=PCT")]
        weights: Vec<String>,
    },
    /// Give one variant all the traffic.
    Promote {
        #[command(flatten)]
        target: TargetArg,
        #[arg(long)]
        route: String,
        variant: String,
    },
    /// Give the baseline all the traffic.
    Abort {
        #[command(flatten)]
        target: TargetArg,
        #[arg(long)]
        route: String,
    },
    /// Show each route's weights, and the observed split from an Envoy admin endpoint.
    Status {
        #[command(flatten)]
        target: TargetArg,
        /// An Envoy admin endpoint (http:// or https://) to read the observed split from.
        #[arg(long, value_name = "URL")]
        envoy_admin: Option<String>,
        #[command(flatten)]
        envoy_admin_http: EnvoyAdminHttpArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Step a variant's weight up, checking its health at every step; promote or roll back.
    Rollout(Box<RolloutArgs>),
    /// Continue a rollout paused at a manual gate.
    Resume {
        #[command(flatten)]
        target: TargetArg,
        #[arg(long)]
        route: String,
    },
    /// Run the control sidecar: HTTP API, ECDS over gRPC, module serving.
    Serve(Box<ServeArgs>),
    /// Write the filter module as an OCI image layout for a registry.
    Package(PackageArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct TargetArg {
    /// file:PATH (an ECDS file, or an RDS file with the dynamic module as a route's cluster
    /// specifier), kube://NAMESPACE/NAME or kube://NAMESPACE/KIND/NAME (a WasmPlugin,
    /// TrafficExtension or EnvoyFilter).
    #[arg(long = "target", env = "CANARYCTL_TARGET", value_name = "TARGET")]
    pub target: String,
}

/// How `status` reaches `--envoy-admin`: the same options as `rollout --metrics-*`.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvoyAdminHttpArgs {
    /// PEM certificates to trust for an https:// --envoy-admin, instead of the system's roots.
    #[arg(long, value_name = "FILE", requires = "envoy_admin")]
    pub envoy_admin_ca: Option<PathBuf>,
    /// A file holding a bearer token for --envoy-admin, read at each request.
    #[arg(long, value_name = "FILE", requires = "envoy_admin")]
    pub envoy_admin_token_file: Option<PathBuf>,
    /// A file holding `user:password` for HTTP basic auth to --envoy-admin, read at each request.
    #[arg(
        long,
        value_name = "FILE",
        requires = "envoy_admin",
        conflicts_with = "envoy_admin_token_file"
    )]
    pub envoy_admin_basic_auth_file: Option<PathBuf>,
    /// How long connecting to --envoy-admin, and then the whole request, may take.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::duration::parse_duration)]
    pub envoy_admin_timeout: Duration,
}

/// As with no flag given: the system's roots, no credentials, the default timeout.
impl Default for EnvoyAdminHttpArgs {
    fn default() -> Self {
        Self {
            envoy_admin_ca: None,
            envoy_admin_token_file: None,
            envoy_admin_basic_auth_file: None,
            envoy_admin_timeout: crate::http::DEFAULT_TIMEOUT,
        }
    }
}

impl EnvoyAdminHttpArgs {
    pub fn options(&self) -> HttpOptions {
        HttpOptions {
            ca_file: self.envoy_admin_ca.clone(),
            token_file: self.envoy_admin_token_file.clone(),
            basic_auth_file: self.envoy_admin_basic_auth_file.clone(),
            timeout: self.envoy_admin_timeout,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PackageArgs {
    /// The built filter module (.wasm).
    #[arg(long, value_name = "PATH")]
    pub module: PathBuf,
    /// The directory to write the OCI image layout to (created if missing).
    #[arg(long, short, value_name = "DIR")]
    pub output: PathBuf,
    /// The tag recorded in the layout's index.json.
    #[arg(long, default_value = "latest")]
    pub tag: String,
}

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
    /// The HTTP API's TLS certificate chain (PEM). Without it the API is plaintext, and its
    /// bearer token crosses the network in clear text.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
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
    #[arg(long, value_name = "N", default_value_t = crate::serve::Limits::default().max_nodes)]
    pub max_envoys: usize,
    /// How long an Envoy whose streams have all gone is still listed, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = crate::serve::Limits::default().forget_after.as_secs())]
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

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub target: TargetArg,
    /// The route whose variant is rolled out.
    #[arg(long)]
    pub route: String,
    /// The variant to roll out; the route's first variant is the baseline it is compared with.
    #[arg(long)]
    pub variant: String,
    /// The variant's weight at each step, in percent, increasing. After the last it is promoted
    /// to 100 %.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,25,50,100")]
    pub steps: Vec<String>,
    /// How long each step lasts; its analysis covers that window (`30s`, `2m`, `500ms`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Make each step a time ramp: the weight moves linearly from where it is to the step's
    /// weight over the step's interval (at least 1s), in one write, instead of jumping.
    #[arg(long)]
    pub ramp: bool,
    /// Where the metrics come from: prometheus:URL or envoy:URL (an Envoy admin endpoint);
    /// the URL is http:// or https://.
    #[arg(long, value_name = "SOURCE")]
    pub metrics: String,
    #[command(flatten)]
    pub metrics_http: MetricsHttpArgs,
    /// With --metrics envoy:URL: the upstream cluster serving a variant, e.g.
    /// canary=outbound|80|v2|web.shop.svc.cluster.local; read that cluster's stats instead of
    /// the filter's. Repeatable; the variant and the baseline each need one.
    #[arg(long, value_name = "VARIANT=CLUSTER", conflicts_with = "istio")]
    pub envoy_cluster: Vec<String>,
    /// Read Istio's standard metrics (istio_requests_total) from Prometheus instead of the
    /// filter's.
    #[arg(long)]
    pub istio: bool,
    /// With --istio: match destination_service (the FQDN) instead of destination_service_name =
    /// the route.
    #[arg(long, value_name = "FQDN", requires = "istio")]
    pub istio_service: Option<String>,
    /// With --istio: a variant whose pods' `version` label (Istio's destination_version) is
    /// not its name, e.g. canary=v2. Repeatable.
    #[arg(long, value_name = "VARIANT=VERSION", requires = "istio")]
    pub istio_version: Vec<String>,
    /// With --istio: the reporter label to read.
    #[arg(long, default_value = "source", requires = "istio")]
    pub istio_reporter: String,
    /// Highest 5xx share of the variant's responses in a step (0..=1).
    #[arg(long, default_value_t = 0.05)]
    pub max_error_rate: f64,
    /// Highest 5xx share as a multiple of the baseline's.
    #[arg(long, value_name = "RATIO")]
    pub max_error_rate_ratio: Option<f64>,
    /// Highest p99 of the upstream time, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub max_p99_ms: Option<f64>,
    /// Highest p99 as a multiple of the baseline's.
    #[arg(long, value_name = "RATIO")]
    pub max_p99_ratio: Option<f64>,
    /// Fewest responses from the variant in a step for its analysis to count.
    #[arg(long, default_value_t = 50)]
    pub min_requests: u64,
    /// How many times in a row a step without enough data is repeated before rolling back.
    #[arg(long, default_value_t = 2)]
    pub no_data_retries: u32,
    /// Weights at which to wait, once the step has passed, for `canaryctl resume`.
    #[arg(long, value_delimiter = ',', value_name = "PCT")]
    pub pause_at: Vec<String>,
    /// How progress is shown.
    #[arg(long, value_enum, default_value_t = progress::Mode::Auto)]
    pub progress: progress::Mode,
}

/// How `rollout` reaches `--metrics`.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsHttpArgs {
    /// PEM certificates to trust for an https:// metrics source, instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub metrics_ca: Option<PathBuf>,
    /// A file holding a bearer token for the metrics source, read at each request (so a
    /// rotated service-account token is picked up).
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// A file holding `user:password` for HTTP basic auth to the metrics source, read at each
    /// request.
    #[arg(long, value_name = "FILE", conflicts_with = "metrics_token_file")]
    pub metrics_basic_auth_file: Option<PathBuf>,
    /// How long connecting to the metrics source, and then each whole request, may take.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub metrics_timeout: Duration,
}

impl MetricsHttpArgs {
    pub fn options(&self) -> HttpOptions {
        HttpOptions {
            ca_file: self.metrics_ca.clone(),
            token_file: self.metrics_token_file.clone(),
            basic_auth_file: self.metrics_basic_auth_file.clone(),
            timeout: self.metrics_timeout,
        }
    }
}
