//! The ECDS document a standalone Envoy reads from a watched file: `resources:` holding one
//! `TypedExtensionConfig` with an `envoy.extensions.filters.http.wasm.v3.Wasm`, the plugin
//! configuration carried as a JSON `StringValue`, shaped as istiod shapes it.

use serde_json::{json, Value};

pub const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// Where Envoy loads the module from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// A file on the Envoy's file system.
    Local(String),
    /// An HTTP URL, fetched through an Envoy cluster, checked against its sha256.
    Remote {
        uri: String,
        cluster: String,
        sha256: String,
    },
}

/// A whole ECDS file: one `TypedExtensionConfig` named `name`, the filter's root id `canary`.
pub fn document(name: &str, module: &ModuleSource, plugin_config: &str) -> Value {
    let code = match module {
        ModuleSource::Local(filename) => json!({ "local": { "filename": filename } }),
        ModuleSource::Remote {
            uri,
            cluster,
            sha256,
        } => json!({
            "remote": {
                "http_uri": { "uri": uri, "cluster": cluster, "timeout": "30s" },
                "sha256": sha256,
            }
        }),
    };
    json!({
        "resources": [{
            "@type": TYPED_EXTENSION_CONFIG,
            "name": name,
            "typed_config": {
                "@type": WASM,
                "config": {
                    "name": name,
                    "root_id": "canary",
                    "vm_config": {
                        "vm_id": name,
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": code,
                    },
                    "configuration": { "@type": STRING_VALUE, "value": plugin_config },
                    "failure_policy": "FAIL_OPEN",
                },
            },
        }],
    })
}
