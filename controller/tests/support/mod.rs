//! Shared by the integration tests: the stand-in Kubernetes API server and a way to run
//! the `canaryctl` binary.
#![allow(dead_code)]

pub mod kube_api;
pub mod schema;

use std::path::Path;
use std::process::{Command, Output};

/// What a `canaryctl` run did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the `canaryctl` binary with `args`, the Kubernetes client configured by `kubeconfig`
/// only (no home directory, no in-cluster environment, no target from the environment).
pub fn canaryctl(args: &[&str], kubeconfig: Option<&Path>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_canaryctl"));
    command
        .args(args)
        .env_remove("CANARYCTL_TARGET")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("HOME", std::env::temp_dir().join("canaryctl-test-no-home"))
        .env("CANARYCTL_LOG", "info");
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        None => command.env_remove("KUBECONFIG"),
    };
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run canaryctl");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
