//! `canaryctl validate FILE`: a plugin configuration or a canary spec, every error with its path.

use std::path::Path;
use std::process::ExitCode;

use canary_filter::ConfigErrors;

use crate::document::{self, DocumentError, Kind};
use crate::spec::Spec;

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let value = match document::load(file) {
        Ok(value) => value,
        Err(error) => return malformed(error),
    };
    let kind = document::kind(&value);
    tracing::debug!(file = %file.display(), ?kind, "validating");
    let result = match kind {
        Kind::PluginConfig => document::compile(&value).map(|table| {
            format!(
                "valid plugin configuration, {} route(s)",
                table.routes.len()
            )
        }),
        Kind::CanarySpec => Spec::from_value(value).map(|spec| {
            format!(
                "valid canary spec {}/{}, {} route(s)",
                spec.namespace,
                spec.name,
                spec.config.routes.len()
            )
        }),
    };
    match result {
        Ok(summary) => {
            println!("{}: {summary}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => Ok(report(&errors)),
    }
}

/// Prints each error as `PATH: reason` on standard error; exit code 1.
pub fn report(errors: &ConfigErrors) -> ExitCode {
    for error in errors.iter() {
        eprintln!("{error}");
    }
    ExitCode::FAILURE
}

/// A file that could not be parsed is invalid input (exit 1); one that could not be read is an
/// error.
pub fn malformed(error: DocumentError) -> anyhow::Result<ExitCode> {
    if error.is_malformed() {
        eprintln!("{error}");
        Ok(ExitCode::FAILURE)
    } else {
        Err(error.into())
    }
}
