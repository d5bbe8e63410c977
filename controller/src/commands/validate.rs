//! `canaryctl validate FILE`: a plugin configuration or a canary spec, every error with its path.

use std::path::Path;
use std::process::ExitCode;

use canary_filter::ConfigErrors;

use crate::document::{self, DocumentError, Kind};
use crate::spec::Spec;

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    match check(file) {
        Ok(Ok(summary)) => {
            println!("{}: {summary}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(errors)) => Ok(report(&errors)),
        Err(error) => malformed(error),
    }
}

/// The verdict on a file: a summary of what it holds, or every error of the plugin
/// configuration or canary spec; an error if the file cannot be read as JSON or YAML. A plugin
/// configuration is compiled by [`document::compile`], the filter's own parser.
pub fn check(file: &Path) -> Result<Result<String, ConfigErrors>, DocumentError> {
    let value = document::load(file)?;
    let kind = document::kind(&value);
    tracing::debug!(file = %file.display(), ?kind, "validating");
    Ok(match kind {
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
    })
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
