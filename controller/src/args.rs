//! The command line, as documented in the README.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::http::HttpOptions;

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a plugin configuration (JSON or YAML) or a canary spec.
    Validate { file: PathBuf },
    /// Render the Istio resources for a canary spec.
    Render {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Api::Wasmplugin)]
        api: Api,
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
        #[arg(long)]
        user: String,
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
    Rollout(Box<crate::rollout::RolloutArgs>),
    /// Continue a rollout paused at a manual gate.
    Resume {
        #[command(flatten)]
        target: TargetArg,
        #[arg(long)]
        route: String,
    },
    /// Run the control sidecar: HTTP API, ECDS over gRPC, module serving.
    Serve(Box<crate::serve::ServeArgs>),
    /// Write the filter module as an OCI image layout for a registry.
    Package(crate::package::PackageArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct TargetArg {
    /// file:PATH (an ECDS file), kube://NAMESPACE/NAME or kube://NAMESPACE/KIND/NAME (a
    /// WasmPlugin, TrafficExtension or EnvoyFilter).
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
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::rollout::parse_duration)]
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
pub enum Api {
    Wasmplugin,
    Trafficextension,
    Envoyfilter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}
