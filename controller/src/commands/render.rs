//! `canaryctl render FILE [--api ...] [--module-kind ...] [--rbac NAMESPACE/NAME]`: the Istio
//! (or Envoy Gateway) resources of a canary spec, as YAML, and if asked the Role and RoleBinding
//! a controller needs to change them.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use canary_filter::ConfigError;

use super::validate::{malformed, report};
use crate::args::{Api, ModuleKind};
use crate::document::{self, Kind};
use crate::render::{self, ServiceAccount};
use crate::spec::Spec;

pub fn run(
    file: &Path,
    api: Api,
    module_kind: Option<ModuleKind>,
    rbac: Option<&ServiceAccount>,
) -> anyhow::Result<ExitCode> {
    let value = match document::load(file) {
        Ok(value) => value,
        Err(error) => return malformed(error),
    };
    if document::kind(&value) == Kind::PluginConfig {
        return Ok(report(
            &ConfigError::new(
                "$",
                "this is a plugin configuration; render needs a canary spec (see the README)",
            )
            .into(),
        ));
    }
    let spec = match Spec::from_value(value) {
        Ok(spec) => spec,
        Err(errors) => return Ok(report(&errors)),
    };
    let mut resources = render::resources(&spec, api, module_kind)?;
    if let Some(account) = rbac {
        resources.extend(render::rbac::role_and_binding(&spec, api, account));
    }
    tracing::debug!(file = %file.display(), ?api, ?module_kind, resources = resources.len(), "rendered");
    let yaml = render::to_yaml(&resources);
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
