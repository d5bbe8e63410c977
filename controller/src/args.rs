//! The command line, as documented in the README.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
        #[arg(long, value_name = "URL")]
        envoy_admin: Option<String>,
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
