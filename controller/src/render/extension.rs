//! The resource that puts the filter into Envoy: WasmPlugin, TrafficExtension or EnvoyFilter
//! in Istio, EnvoyExtensionPolicy in Envoy Gateway.
//!
//! All three attach the filter where Istio routes: the client side. A VirtualService bound to
//! `mesh` is applied by the calling sidecar's outbound listener, one bound to a gateway by the
//! gateway; so WasmPlugin and TrafficExtension match mode `CLIENT` (which Istio applies to
//! sidecar outbound and gateway listeners), and EnvoyFilter patches `SIDECAR_OUTBOUND` and/or
//! `GATEWAY` as the spec's gateways say. All fail open: if the module cannot be loaded,
//! requests carry no decision and take the VirtualService default route, the baseline.

use serde_json::{json, Map, Value};

use super::{metadata, ModuleKind, RenderError, Result, PHASE, PLUGIN_NAME};
use crate::ecds::{self, ModuleSource};
use crate::spec::{Spec, MESH};

const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
const ROUTER: &str = "envoy.filters.http.router";

/// `dynamic_module_config.name` of the native dynamic module: Envoy loads `lib<name>.so` from
/// the directories in its `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const DYNAMIC_MODULE: &str = "canary_router";

/// The name an EnvoyProxy's `dynamicModules` registers the dynamic module under, which the
/// EnvoyExtensionPolicy refers to (Envoy Gateway allows no `_` there).
pub const ENVOY_GATEWAY_MODULE: &str = "canary-router";

const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

pub fn wasm_plugin(spec: &Spec) -> Value {
    let mut body = attachment(spec, ISTIO_SELECTOR);
    body.insert("url".into(), json!(spec.module.url));
    body.insert("sha256".into(), json!(spec.module.sha256));
    body.insert("pluginName".into(), json!(PLUGIN_NAME));
    body.insert("phase".into(), json!(PHASE));
    body.insert("failStrategy".into(), json!("FAIL_OPEN"));
    body.insert("match".into(), json!([{ "mode": "CLIENT" }]));
    body.insert("pluginConfig".into(), spec.plugin_config.clone());
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": metadata(spec, &spec.name),
        "spec": body,
    })
}

pub fn traffic_extension(spec: &Spec) -> Value {
    let mut body = attachment(spec, ISTIO_SELECTOR);
    body.insert("phase".into(), json!(PHASE));
    body.insert("match".into(), json!([{ "mode": "CLIENT" }]));
    body.insert(
        "wasm".into(),
        json!({
            "url": spec.module.url,
            "sha256": spec.module.sha256,
            "pluginName": PLUGIN_NAME,
            "failStrategy": "FAIL_OPEN",
            "pluginConfig": spec.plugin_config,
        }),
    );
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "TrafficExtension",
        "metadata": metadata(spec, &spec.name),
        "spec": body,
    })
}

/// The filter delivered over ECDS, as istiod delivers a WasmPlugin: an `EXTENSION_CONFIG`
/// patch holds the filter configuration, and an `HTTP_FILTER` patch per listener context
/// inserts a filter that takes its configuration from it, just before the router. For the Wasm
/// module, the istio-agent fetches a remote module, `oci://` included, and checks its sha256;
/// the dynamic module ([`DYNAMIC_MODULE`]) must already be on the proxy's file system, in a
/// directory of its `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub fn envoy_filter(spec: &Spec, kind: ModuleKind) -> Result<Value> {
    let name = format!("{}.{}", spec.namespace, spec.name);
    let module = match (kind, spec.module.url.strip_prefix("file://")) {
        (ModuleKind::Dynamic, _) => ModuleSource::Dynamic {
            name: DYNAMIC_MODULE.to_owned(),
        },
        (ModuleKind::Wasm, Some(path)) => ModuleSource::Local(path.to_owned()),
        (ModuleKind::Wasm, None) => ModuleSource::Remote {
            uri: spec.module.url.clone(),
            // Not used: the istio-agent fetches the module itself.
            cluster: "_".to_owned(),
            sha256: spec.module.sha256.clone(),
        },
    };
    let type_urls = match kind {
        // RBAC: the istio-agent substitutes an allow-all RBAC filter when a fail-open module
        // cannot be fetched.
        ModuleKind::Wasm => json!([ecds::WASM, RBAC]),
        ModuleKind::Dynamic => json!([ecds::DYNAMIC_MODULE]),
    };
    let plugin_config = serde_json::to_string(&spec.plugin_config)?;
    let mut extension_config = ecds::document(&name, &module, &plugin_config)
        .pointer("/resources/0")
        .cloned()
        .unwrap_or_default();
    if let Some(fields) = extension_config.as_object_mut() {
        fields.shift_remove("@type");
    }
    let mut patches = vec![json!({
        "applyTo": "EXTENSION_CONFIG",
        "patch": { "operation": "ADD", "value": extension_config },
    })];
    for context in contexts(&spec.gateways) {
        patches.push(json!({
            "applyTo": "HTTP_FILTER",
            "match": {
                "context": context,
                "listener": {
                    "filterChain": {
                        "filter": {
                            "name": HTTP_CONNECTION_MANAGER,
                            "subFilter": { "name": ROUTER },
                        },
                    },
                },
            },
            "patch": {
                "operation": "INSERT_BEFORE",
                "value": {
                    "name": name,
                    "config_discovery": {
                        "config_source": {
                            "ads": {},
                            "initial_fetch_timeout": "0s",
                            "resource_api_version": "V3",
                        },
                        "type_urls": type_urls,
                    },
                },
            },
        }));
    }
    let mut body = attachment(spec, ENVOY_FILTER_SELECTOR);
    body.insert("configPatches".into(), Value::Array(patches));
    Ok(json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": metadata(spec, &spec.name),
        "spec": body,
    }))
}

/// Envoy Gateway's EnvoyExtensionPolicy: the dynamic module's filter, with the plugin
/// configuration, on the Gateways and HTTPRoutes of the spec's `targetRefs`. The EnvoyProxy of
/// those Gateways must register the module as [`ENVOY_GATEWAY_MODULE`] (see the README).
pub fn envoy_extension_policy(spec: &Spec) -> Result<Value> {
    let Some(refs) = &spec.attachment.target_refs else {
        return Err(RenderError::Unsupported(
            "attachment: an EnvoyExtensionPolicy attaches to Gateways and HTTPRoutes by \
             targetRefs; the spec has a selector"
                .to_owned(),
        ));
    };
    // Envoy Gateway requires the group, which Istio's references may leave out.
    let refs: Vec<Value> = refs
        .iter()
        .map(|r| {
            json!({
                "group": r.group.as_deref().unwrap_or(GATEWAY_API_GROUP),
                "kind": r.kind,
                "name": r.name,
            })
        })
        .collect();
    Ok(json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": metadata(spec, &spec.name),
        "spec": {
            "targetRefs": refs,
            "dynamicModule": [{
                "name": ENVOY_GATEWAY_MODULE,
                "filterName": ecds::DYNAMIC_MODULE_FILTER,
                "config": spec.plugin_config,
            }],
        },
    }))
}

/// The EnvoyFilter listener contexts where the spec's VirtualServices route, in order.
fn contexts(gateways: &[String]) -> Vec<&'static str> {
    let mut contexts = Vec::new();
    for gateway in gateways {
        let context = if gateway == MESH {
            "SIDECAR_OUTBOUND"
        } else {
            "GATEWAY"
        };
        if !contexts.contains(&context) {
            contexts.push(context);
        }
    }
    contexts
}

/// Field names of a workload selector and of its labels.
const ISTIO_SELECTOR: (&str, &str) = ("selector", "matchLabels");
const ENVOY_FILTER_SELECTOR: (&str, &str) = ("workloadSelector", "labels");

/// The start of a resource's spec: its workload selector or its targetRefs.
fn attachment(spec: &Spec, (selector_field, labels_field): (&str, &str)) -> Map<String, Value> {
    let mut body = Map::new();
    if let Some(selector) = &spec.attachment.selector {
        body.insert(
            selector_field.into(),
            json!({ labels_field: selector.match_labels }),
        );
    }
    if let Some(refs) = &spec.attachment.target_refs {
        let refs: Vec<Value> = refs
            .iter()
            .map(|r| {
                let mut out = Map::new();
                if let Some(group) = &r.group {
                    out.insert("group".into(), json!(group));
                }
                out.insert("kind".into(), json!(r.kind));
                out.insert("name".into(), json!(r.name));
                Value::Object(out)
            })
            .collect();
        body.insert("targetRefs".into(), Value::Array(refs));
    }
    body
}
