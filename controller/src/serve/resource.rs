//! The ECDS resource pushed over gRPC, built from the ECDS document the target holds: the one
//! `TypedExtensionConfig` carrying an `envoy.extensions.filters.http.wasm.v3.Wasm` or the
//! dynamic module's `envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter`, as
//! Envoy would read it from a file; or from the `TypedExtensionConfig` a dynamic-module
//! EnvoyFilter's `EXTENSION_CONFIG` patch holds.
//!
//! The document is converted field by field. Only the fields a canary-router deployment uses
//! are known; any other field is an error naming its path, so nothing in the document is
//! silently dropped on the way to Envoy.

use envoy_types::pb::envoy::config::core::v3::{
    async_data_source, data_source, http_uri, AsyncDataSource, DataSource, HttpUri,
    RemoteDataSource, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::dynamic_modules::v3::DynamicModuleConfig;
use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config, FailurePolicy, PluginConfig, VmConfig,
};
use envoy_types::pb::google::protobuf::{Any, Duration, StringValue};
use prost::Message;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::ecds::{DYNAMIC_MODULE, STRING_VALUE, TYPED_EXTENSION_CONFIG, WASM};

/// A field of the ECDS document Envoy would not get as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ResourceError {
    pub path: String,
    pub reason: String,
}

type Result<T, E = ResourceError> = std::result::Result<T, E>;

/// The resource, ready to send: its name, a version derived from its content, and its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    /// The first 16 hex digits of the sha256 of the encoded resource: the same document gives
    /// the same version in every controller, before and after a restart.
    pub version: String,
    pub any: Any,
}

impl Resource {
    /// The resource of an ECDS document: `resources:` holding one `TypedExtensionConfig`.
    pub fn from_document(document: &Value) -> Result<Resource> {
        Ok(Self::new(typed_extension_config(document)?))
    }

    /// The resource of one `TypedExtensionConfig` (whose `@type` may be left out, as in an
    /// EnvoyFilter's patch), at `path` for errors.
    pub fn from_extension_config(value: &Value, path: &str) -> Result<Resource> {
        Ok(Self::new(extension_config(&Object::at(path, value)?)?))
    }

    fn new(config: TypedExtensionConfig) -> Resource {
        let value = config.encode_to_vec();
        let version = hex::encode(Sha256::digest(&value))
            .chars()
            .take(16)
            .collect();
        Resource {
            name: config.name,
            version,
            any: Any {
                type_url: TYPED_EXTENSION_CONFIG.to_owned(),
                value,
            },
        }
    }
}

fn typed_extension_config(document: &Value) -> Result<TypedExtensionConfig> {
    let top = Object::at("$", document)?;
    top.only(&["resources"])?;
    let resources = top
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| error("resources", "is missing or not a list"))?;
    let [resource] = resources.as_slice() else {
        return Err(error(
            "resources",
            format!("holds {} entries; exactly one is expected", resources.len()),
        ));
    };
    let resource = Object::at("resources[0]", resource)?;
    resource.type_is(TYPED_EXTENSION_CONFIG)?;
    extension_config(&resource)
}

/// A `TypedExtensionConfig`: its name, and a Wasm filter or a dynamic module's filter.
fn extension_config(resource: &Object<'_>) -> Result<TypedExtensionConfig> {
    resource.only(&["@type", "name", "typed_config"])?;
    if resource.get("@type").is_some() {
        resource.type_is(TYPED_EXTENSION_CONFIG)?;
    }
    let typed = resource.object("typed_config")?;
    let (type_url, value) = match typed.optional_string("@type")? {
        Some(DYNAMIC_MODULE) => (DYNAMIC_MODULE, dynamic_module(&typed)?.encode_to_vec()),
        _ => {
            typed.only(&["@type", "config"])?;
            typed.type_is(WASM)?;
            let wasm = Wasm {
                config: Some(plugin(&typed.object("config")?)?),
            };
            (WASM, wasm.encode_to_vec())
        }
    };
    Ok(TypedExtensionConfig {
        name: resource.string("name")?.to_owned(),
        typed_config: Some(Any {
            type_url: type_url.to_owned(),
            value,
        }),
    })
}

/// The dynamic module's filter, as `canaryctl render` and the README write it: the module by
/// name (Envoy finds it in its search path), the filter's name, and the plugin configuration
/// as a `StringValue`.
fn dynamic_module(filter: &Object<'_>) -> Result<DynamicModuleFilter> {
    filter.only(&[
        "@type",
        "dynamic_module_config",
        "filter_name",
        "filter_config",
    ])?;
    let module = filter.object("dynamic_module_config")?;
    module.only(&["name", "do_not_close", "load_globally", "metrics_namespace"])?;
    let config = filter.object("filter_config")?;
    config.only(&["@type", "value"])?;
    config.type_is(STRING_VALUE)?;
    Ok(DynamicModuleFilter {
        dynamic_module_config: Some(DynamicModuleConfig {
            name: module.string("name")?.to_owned(),
            do_not_close: module.bool("do_not_close")?,
            load_globally: module.bool("load_globally")?,
            metrics_namespace: module
                .optional_string("metrics_namespace")?
                .unwrap_or_default()
                .to_owned(),
            ..Default::default()
        }),
        filter_name: filter.string("filter_name")?.to_owned(),
        filter_config: Some(Any {
            type_url: STRING_VALUE.to_owned(),
            value: StringValue {
                value: config.string("value")?.to_owned(),
            }
            .encode_to_vec(),
        }),
        terminal_filter: false,
    })
}

fn plugin(config: &Object<'_>) -> Result<PluginConfig> {
    config.only(&[
        "name",
        "root_id",
        "vm_config",
        "configuration",
        "fail_open",
        "failure_policy",
    ])?;
    let configuration = config.object("configuration")?;
    configuration.only(&["@type", "value"])?;
    configuration.type_is(STRING_VALUE)?;
    let failure_policy = match config.optional_string("failure_policy")? {
        None | Some("UNSPECIFIED") => FailurePolicy::Unspecified,
        Some("FAIL_RELOAD") => FailurePolicy::FailReload,
        Some("FAIL_CLOSED") => FailurePolicy::FailClosed,
        Some("FAIL_OPEN") => FailurePolicy::FailOpen,
        Some(other) => {
            return Err(config.error(
                "failure_policy",
                format!("{other:?} is not FAIL_CLOSED, FAIL_OPEN or FAIL_RELOAD"),
            ))
        }
    };
    #[allow(deprecated)]
    Ok(PluginConfig {
        name: config
            .optional_string("name")?
            .unwrap_or_default()
            .to_owned(),
        root_id: config
            .optional_string("root_id")?
            .unwrap_or_default()
            .to_owned(),
        configuration: Some(Any {
            type_url: STRING_VALUE.to_owned(),
            value: StringValue {
                value: configuration.string("value")?.to_owned(),
            }
            .encode_to_vec(),
        }),
        fail_open: config.bool("fail_open")?,
        failure_policy: failure_policy.into(),
        vm: Some(plugin_config::Vm::VmConfig(vm(
            &config.object("vm_config")?
        )?)),
        ..Default::default()
    })
}

fn vm(vm: &Object<'_>) -> Result<VmConfig> {
    vm.only(&[
        "vm_id",
        "runtime",
        "code",
        "allow_precompiled",
        "nack_on_code_cache_miss",
    ])?;
    Ok(VmConfig {
        vm_id: vm.optional_string("vm_id")?.unwrap_or_default().to_owned(),
        runtime: vm.string("runtime")?.to_owned(),
        code: Some(code(&vm.object("code")?)?),
        allow_precompiled: vm.bool("allow_precompiled")?,
        nack_on_code_cache_miss: vm.bool("nack_on_code_cache_miss")?,
        ..Default::default()
    })
}

fn code(code: &Object<'_>) -> Result<AsyncDataSource> {
    code.only(&["local", "remote"])?;
    let specifier = match (code.get("local"), code.get("remote")) {
        (Some(_), None) => {
            let local = code.object("local")?;
            local.only(&["filename", "inline_string"])?;
            let specifier = match (
                local.optional_string("filename")?,
                local.optional_string("inline_string")?,
            ) {
                (Some(file), None) => data_source::Specifier::Filename(file.to_owned()),
                (None, Some(text)) => data_source::Specifier::InlineString(text.to_owned()),
                _ => {
                    return Err(error(
                        &local.path,
                        "needs exactly one of filename, inline_string",
                    ))
                }
            };
            async_data_source::Specifier::Local(DataSource {
                specifier: Some(specifier),
                ..Default::default()
            })
        }
        (None, Some(_)) => {
            let remote = code.object("remote")?;
            remote.only(&["http_uri", "sha256"])?;
            let uri = remote.object("http_uri")?;
            uri.only(&["uri", "cluster", "timeout"])?;
            async_data_source::Specifier::Remote(RemoteDataSource {
                http_uri: Some(HttpUri {
                    uri: uri.string("uri")?.to_owned(),
                    timeout: Some(duration(&uri, "timeout")?),
                    http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(
                        uri.string("cluster")?.to_owned(),
                    )),
                }),
                sha256: remote.string("sha256")?.to_owned(),
                ..Default::default()
            })
        }
        _ => return Err(error(&code.path, "needs exactly one of local, remote")),
    };
    Ok(AsyncDataSource {
        specifier: Some(specifier),
    })
}

/// A protobuf JSON duration such as `10s` or `0.5s`.
fn duration(object: &Object<'_>, key: &str) -> Result<Duration> {
    let text = object.string(key)?;
    let seconds: f64 = text
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s < 315_576_000_000.0)
        .ok_or_else(|| object.error(key, format!("{text:?} is not a duration such as \"10s\"")))?;
    let whole = seconds.trunc();
    // In range by the filter above.
    Ok(Duration {
        seconds: whole as i64,
        nanos: ((seconds - whole) * 1e9).round() as i32,
    })
}

/// A JSON object being read, with its path for errors.
struct Object<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Object<'a> {
    fn at(path: &str, value: &'a Value) -> Result<Self> {
        let map = value
            .as_object()
            .ok_or_else(|| error(path, "is not an object"))?;
        Ok(Object {
            path: path.to_owned(),
            map,
        })
    }

    fn field_path(&self, key: &str) -> String {
        if self.path == "$" {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn error(&self, key: &str, reason: impl Into<String>) -> ResourceError {
        error(&self.field_path(key), reason)
    }

    /// Fails on the first field not in `known`.
    fn only(&self, known: &[&str]) -> Result<()> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(self.error(
                unknown,
                format!(
                    "is not a field canaryctl serve knows (known: {})",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn object(&self, key: &str) -> Result<Object<'a>> {
        let value = self.get(key).ok_or_else(|| self.error(key, "is missing"))?;
        Object::at(&self.field_path(key), value)
    }

    fn optional_string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.error(key, "is not a string")),
        }
    }

    fn string(&self, key: &str) -> Result<&'a str> {
        self.optional_string(key)?
            .ok_or_else(|| self.error(key, "is missing"))
    }

    fn bool(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.error(key, "is not a boolean")),
        }
    }

    fn type_is(&self, want: &str) -> Result<()> {
        match self.optional_string("@type")? {
            Some(t) if t == want => Ok(()),
            Some(t) => Err(self.error("@type", format!("is {t}, not {want}"))),
            None => Err(self.error("@type", format!("is missing (expected {want})"))),
        }
    }
}

fn error(path: &str, reason: impl Into<String>) -> ResourceError {
    ResourceError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecds::{document, ModuleSource};
    use serde_json::json;

    fn decode_wasm(resource: &Resource) -> (TypedExtensionConfig, PluginConfig) {
        let config = TypedExtensionConfig::decode(resource.any.value.as_slice()).unwrap();
        let wasm = Wasm::decode(config.typed_config.as_ref().unwrap().value.as_slice()).unwrap();
        (config, wasm.config.unwrap())
    }

    #[test]
    fn converts_what_canaryctl_writes() {
        let remote = ModuleSource::Remote {
            uri: "http://canaryctl:8080/filter.wasm".into(),
            cluster: "canaryctl".into(),
            sha256: "ab".repeat(32),
        };
        let doc = document("canary", &remote, r#"{"routes":[]}"#);
        let resource = Resource::from_document(&doc).unwrap();
        assert_eq!(resource.name, "canary");
        assert_eq!(resource.version.len(), 16);
        let (config, plugin) = decode_wasm(&resource);
        assert_eq!(config.typed_config.unwrap().type_url, WASM);
        assert_eq!(plugin.root_id, "canary");
        assert_eq!(plugin.failure_policy, i32::from(FailurePolicy::FailOpen));
        let configuration = plugin.configuration.unwrap();
        assert_eq!(configuration.type_url, STRING_VALUE);
        assert_eq!(
            StringValue::decode(configuration.value.as_slice())
                .unwrap()
                .value,
            r#"{"routes":[]}"#
        );
        let Some(plugin_config::Vm::VmConfig(vm)) = plugin.vm else {
            panic!("no vm_config")
        };
        assert_eq!(vm.runtime, "envoy.wasm.runtime.v8");
        let Some(async_data_source::Specifier::Remote(remote)) = vm.code.unwrap().specifier else {
            panic!("not remote")
        };
        assert_eq!(remote.sha256, "ab".repeat(32));
        let uri = remote.http_uri.unwrap();
        let timeout = doc["resources"][0]["typed_config"]["config"]["vm_config"]["code"]["remote"]
            ["http_uri"]["timeout"]
            .as_str()
            .unwrap();
        let seconds = timeout.trim_end_matches('s').parse().unwrap();
        assert_eq!(uri.timeout, Some(Duration { seconds, nanos: 0 }));
        assert_eq!(
            uri.http_upstream_type,
            Some(http_uri::HttpUpstreamType::Cluster("canaryctl".into()))
        );
    }

    #[test]
    fn converts_the_dynamic_module_filter() {
        let module = ModuleSource::Dynamic {
            name: "canary_router".into(),
        };
        let doc = document("canary", &module, r#"{"routes":[]}"#);
        let resource = Resource::from_document(&doc).unwrap();
        let config = TypedExtensionConfig::decode(resource.any.value.as_slice()).unwrap();
        assert_eq!(config.name, "canary");
        let typed_config = config.typed_config.unwrap();
        assert_eq!(typed_config.type_url, DYNAMIC_MODULE);
        let filter = DynamicModuleFilter::decode(typed_config.value.as_slice()).unwrap();
        assert_eq!(filter.filter_name, "canary");
        let module = filter.dynamic_module_config.unwrap();
        assert_eq!(
            (module.name.as_str(), module.metrics_namespace.as_str()),
            ("canary_router", "wasmcustom")
        );
        let filter_config = filter.filter_config.unwrap();
        assert_eq!(filter_config.type_url, STRING_VALUE);
        assert_eq!(
            StringValue::decode(filter_config.value.as_slice())
                .unwrap()
                .value,
            r#"{"routes":[]}"#
        );

        // As an EnvoyFilter's patch holds it: the TypedExtensionConfig alone, maybe without
        // its @type; the same resource, errors named from where it sits.
        let mut value = doc["resources"][0].clone();
        value.as_object_mut().unwrap().remove("@type");
        let path = "spec.configPatches[0].patch.value";
        assert_eq!(
            Resource::from_extension_config(&value, path).unwrap(),
            resource
        );
        value["typed_config"]["terminal_filter"] = json!(true);
        let error = Resource::from_extension_config(&value, path)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "spec.configPatches[0].patch.value.typed_config.terminal_filter: is not a field"
            ),
            "{error}"
        );
    }

    #[test]
    fn the_version_follows_the_content() {
        let local = ModuleSource::Local("/m.wasm".into());
        let a = Resource::from_document(&document("canary", &local, "{}")).unwrap();
        let again = Resource::from_document(&document("canary", &local, "{}")).unwrap();
        let b = Resource::from_document(&document("canary", &local, "{ }")).unwrap();
        assert_eq!(a.version, again.version);
        assert_ne!(a.version, b.version);
    }

    type Edit = Box<dyn Fn(&mut Value)>;

    #[test]
    fn refuses_what_it_would_drop_naming_the_path() {
        let good = document("canary", &ModuleSource::Local("/m.wasm".into()), "{}");
        let cases: Vec<(&str, Edit, &str)> = vec![
            (
                "unknown vm field",
                Box::new(|d| {
                    d["resources"][0]["typed_config"]["config"]["vm_config"]
                        ["environment_variables"] = json!({})
                }),
                "resources[0].typed_config.config.vm_config.environment_variables: is not a field",
            ),
            (
                "not wasm",
                Box::new(|d| {
                    d["resources"][0]["typed_config"]["@type"] = json!("type.googleapis.com/x.Lua")
                }),
                "resources[0].typed_config.@type: is type.googleapis.com/x.Lua",
            ),
            (
                "two resources",
                Box::new(|d| {
                    let r = d["resources"][0].clone();
                    d["resources"] = json!([r.clone(), r]);
                }),
                "resources: holds 2 entries",
            ),
            (
                "bad timeout",
                Box::new(
                    |d| d["resources"][0]["typed_config"]["config"]["vm_config"]["code"] = json!({"remote": {"http_uri": {"uri": "http://x/", "cluster": "c", "timeout": "soon"}, "sha256": "x"}}),
                ),
                "vm_config.code.remote.http_uri.timeout: \"soon\" is not a duration",
            ),
            (
                "no code",
                Box::new(|d| {
                    d["resources"][0]["typed_config"]["config"]["vm_config"]["code"] = json!({})
                }),
                "vm_config.code: needs exactly one of local, remote",
            ),
            (
                // An RDS file, which a `file:` target may be: Envoy reads it over RDS, not ECDS.
                "a route configuration",
                Box::new(|d| {
                    *d = json!({ "resources": [{
                        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                        "name": "routes",
                        "virtual_hosts": [],
                    }] })
                }),
                "resources[0].@type: is type.googleapis.com/envoy.config.route.v3.RouteConfiguration, not type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            ),
        ];
        for (label, edit, want) in cases {
            let mut doc = good.clone();
            edit(&mut doc);
            let got = Resource::from_document(&doc).unwrap_err().to_string();
            assert!(got.contains(want), "{label}: {got}");
        }
    }
}
