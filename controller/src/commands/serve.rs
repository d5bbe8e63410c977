//! `canaryctl serve`: the command line made into the server's configuration.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tracing::warn;

use crate::args::ServeArgs;
use crate::serve::{ApiTls, Config, GrpcSecurity, Limits, Module, TlsFiles, Token};
use crate::targets::{Clients, Target};

pub async fn run(clients: Clients, args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::serve::run(config(args)?, clients).await
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
    let kube = matches!(target, Target::Kube { .. });
    let grpc = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
        // Most kube:// targets are delivered by istiod alone; a dynamic-module EnvoyFilter,
        // whose resource the server would push, then makes it refuse to start.
        (None, None) if kube && !args.insecure_grpc => GrpcSecurity::without_resources(grpc_token),
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
        api_tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(ApiTls { cert, key }),
            _ => None,
        },
    })
}
