//! Renders the Istio resources of a canary spec: the filter resource (WasmPlugin,
//! TrafficExtension or EnvoyFilter), then per route its DestinationRule and VirtualService, in
//! the order they should be applied (subsets exist before a VirtualService names them); and, on
//! request, the Role and RoleBinding a controller needs to change the filter resource ([`rbac`]).
//! For Envoy Gateway, the filter resource is an EnvoyExtensionPolicy running the native dynamic
//! module, alone: Envoy Gateway routes with HTTPRoutes, not Istio's routing resources.
//!
//! Output is deterministic: the same spec renders the same bytes.

pub mod extension;
pub mod rbac;
mod routing;
mod yaml;

use serde_json::Value;

use crate::spec::Spec;

pub use self::rbac::ServiceAccount;

/// Root id of the filter in Envoy (`pluginName` in Istio).
pub const PLUGIN_NAME: &str = "canary";

/// Where the filter is inserted in Istio's chain: after authentication and authorization, before
/// Istio's stats filter, CORS, fault injection and the router. See the README.
pub const PHASE: &str = "STATS";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = RenderError> = std::result::Result<T, E>;

/// The API that delivers the filter: `--api` of `canaryctl render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    Wasmplugin,
    Trafficextension,
    Envoyfilter,
    /// Envoy Gateway's policy; it runs the dynamic module.
    Envoyextensionpolicy,
}

/// Which build of the filter the resources run: `--module-kind` of `canaryctl render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModuleKind {
    /// The proxy-wasm module of the spec's `module`.
    Wasm,
    /// The native dynamic module, `libcanary_router.so`, already on the proxies' file system.
    Dynamic,
}

impl Api {
    /// The module kind this API runs when none is asked for.
    pub fn default_module_kind(self) -> ModuleKind {
        match self {
            Api::Wasmplugin | Api::Trafficextension | Api::Envoyfilter => ModuleKind::Wasm,
            Api::Envoyextensionpolicy => ModuleKind::Dynamic,
        }
    }
}

/// Every resource of the spec, in apply order, running `module` (by default the API's own,
/// [`Api::default_module_kind`]).
pub fn resources(spec: &Spec, api: Api, module: Option<ModuleKind>) -> Result<Vec<Value>> {
    let module = module.unwrap_or(api.default_module_kind());
    let unsupported = |what: &str| Err(RenderError::Unsupported(what.to_owned()));
    let filter =
        match (api, module) {
            (Api::Wasmplugin, ModuleKind::Wasm) => extension::wasm_plugin(spec),
            (Api::Trafficextension, ModuleKind::Wasm) => extension::traffic_extension(spec),
            (Api::Envoyfilter, _) => extension::envoy_filter(spec, module)?,
            (Api::Envoyextensionpolicy, ModuleKind::Dynamic) => {
                return Ok(vec![extension::envoy_extension_policy(spec)?]);
            }
            (Api::Wasmplugin | Api::Trafficextension, ModuleKind::Dynamic) => {
                return unsupported(
                    "--module-kind dynamic: a WasmPlugin or TrafficExtension runs wasm only; use \
                 --api envoyfilter for the dynamic module in Istio",
                )
            }
            (Api::Envoyextensionpolicy, ModuleKind::Wasm) => return unsupported(
                "--module-kind wasm: the EnvoyExtensionPolicy is rendered for the dynamic module \
                 only",
            ),
        };
    let mut docs = vec![filter];
    for route in &spec.config.routes {
        if let Some(service) = spec.services.get(&route.name) {
            docs.push(routing::destination_rule(spec, route, service));
            docs.push(routing::virtual_service(spec, route, service));
        }
    }
    Ok(docs)
}

/// The resources as one multi-document YAML stream, `---` between documents.
pub fn to_yaml(docs: &[Value]) -> String {
    let documents: Vec<String> = docs.iter().map(yaml::document).collect();
    documents.join("---\n")
}

/// `metadata` of a resource named `name` in the spec's namespace.
fn metadata(spec: &Spec, name: &str) -> Value {
    serde_json::json!({
        "name": name,
        "namespace": spec.namespace,
        "labels": { "app.kubernetes.io/managed-by": "canaryctl" },
    })
}
