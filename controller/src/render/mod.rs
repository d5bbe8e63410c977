//! Renders the Istio resources of a canary spec: the filter resource (WasmPlugin,
//! TrafficExtension or EnvoyFilter), then per route its DestinationRule and VirtualService, in
//! the order they should be applied (subsets exist before a VirtualService names them); and, on
//! request, the Role and RoleBinding a controller needs to change the filter resource ([`rbac`]).
//!
//! Output is deterministic: the same spec renders the same bytes.

mod extension;
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
}

pub type Result<T, E = RenderError> = std::result::Result<T, E>;

/// The Istio API that delivers the filter: `--api` of `canaryctl render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    Wasmplugin,
    Trafficextension,
    Envoyfilter,
}

/// Every resource of the spec, in apply order.
pub fn resources(spec: &Spec, api: Api) -> Result<Vec<Value>> {
    let mut docs = vec![match api {
        Api::Wasmplugin => extension::wasm_plugin(spec),
        Api::Trafficextension => extension::traffic_extension(spec),
        Api::Envoyfilter => extension::envoy_filter(spec)?,
    }];
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
