//! The ECDS document a standalone Envoy reads from a watched file: `resources:` holding one
//! `TypedExtensionConfig` with an `envoy.extensions.filters.http.wasm.v3.Wasm` (shaped as istiod
//! shapes it) or, for the native dynamic module, an
//! `envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter`; either way the plugin
//! configuration is carried as a JSON `StringValue`. How it is built, where the plugin
//! configuration sits in it, and [`EcdsFile`], the one way a file of it is read and written
//! back.

use std::path::Path;

use canary_filter::{ConfigErrors, PluginConfig};
use serde_json::{json, Value};

pub const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
pub const DYNAMIC_MODULE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// The `filter_name` the native dynamic module serves (its `FILTER_NAME`).
pub const DYNAMIC_MODULE_FILTER: &str = "canary";

/// The dynamic module's `metrics_namespace`: the prefix Envoy gives the proxy-wasm filter's
/// metrics, so that both builds' metrics have the same names (and the same `stats_tags`,
/// dashboards and `canaryctl status` read either).
pub const METRICS_NAMESPACE: &str = "wasmcustom";

/// The filter module, and where Envoy loads it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// A wasm file on the Envoy's file system.
    Local(String),
    /// A wasm module at an HTTP URL, fetched through an Envoy cluster, checked against its
    /// sha256.
    Remote {
        uri: String,
        cluster: String,
        sha256: String,
    },
    /// The native dynamic module `lib<name>.so`, which Envoy finds in its
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    Dynamic { name: String },
}

impl ModuleSource {
    /// The `typed_config` type of the filter that runs this module.
    pub fn type_url(&self) -> &'static str {
        match self {
            ModuleSource::Local(_) | ModuleSource::Remote { .. } => WASM,
            ModuleSource::Dynamic { .. } => DYNAMIC_MODULE,
        }
    }
}

/// A whole ECDS file: one `TypedExtensionConfig` named `name`, running `module` (a wasm filter
/// with root id `canary`, or the dynamic module's filter `canary`) with `plugin_config`.
pub fn document(name: &str, module: &ModuleSource, plugin_config: &str) -> Value {
    let configuration = json!({ "@type": STRING_VALUE, "value": plugin_config });
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
        ModuleSource::Dynamic { name: library } => {
            return json!({
                "resources": [{
                    "@type": TYPED_EXTENSION_CONFIG,
                    "name": name,
                    "typed_config": {
                        "@type": DYNAMIC_MODULE,
                        "dynamic_module_config": {
                            "name": library,
                            "metrics_namespace": METRICS_NAMESPACE,
                        },
                        "filter_name": DYNAMIC_MODULE_FILTER,
                        "filter_config": configuration,
                    },
                }],
            })
        }
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
                    "configuration": configuration,
                    "failure_policy": "FAIL_OPEN",
                },
            },
        }],
    })
}

/// How an ECDS file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
        })
    }
}

impl Format {
    /// As Envoy chooses: by the file's extension, `.yaml`/`.yml` YAML, anything else JSON.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                Format::Yaml
            }
            _ => Format::Json,
        }
    }

    /// The document in `bytes`, read as this format.
    pub fn parse(self, bytes: &[u8]) -> Result<Value, String> {
        match self {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Format::Yaml => serde_yaml::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }
}

/// Why bytes are not an ECDS file holding a plugin configuration.
#[derive(Debug, thiserror::Error)]
pub enum EcdsError {
    #[error("not valid {format}: {reason}")]
    Syntax { format: Format, reason: String },
    #[error("not an ECDS file as Envoy reads it: {0}")]
    Shape(String),
    #[error("not an ECDS file as Envoy reads it: the plugin configuration: {0}")]
    PluginConfig(ConfigErrors),
}

/// An ECDS file as read: its bytes, the document, and the plugin configuration in it, read by
/// the filter's own decoder.
pub struct EcdsFile {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub document: Value,
    pub config: PluginConfig,
    /// Whether the plugin configuration string was written over several lines.
    config_pretty: bool,
}

impl EcdsFile {
    /// Reads `bytes`, written in `format`.
    pub fn parse(bytes: Vec<u8>, format: Format) -> Result<Self, EcdsError> {
        let document = format
            .parse(&bytes)
            .map_err(|reason| EcdsError::Syntax { format, reason })?;
        let text = plugin_config_text(&document).map_err(EcdsError::Shape)?;
        let config =
            canary_filter::config::decode(text.as_bytes()).map_err(EcdsError::PluginConfig)?;
        Ok(EcdsFile {
            config_pretty: text.trim_end().contains('\n'),
            bytes,
            format,
            document,
            config,
        })
    }

    /// The whole file with `config` in place of the plugin configuration, laid out as it was
    /// read: JSON on one line or indented, the configuration string on one line or indented,
    /// the final newline kept.
    pub fn render(&self, config: &PluginConfig) -> Result<Vec<u8>, String> {
        let text = if self.config_pretty {
            serde_json::to_string_pretty(config)
        } else {
            serde_json::to_string(config)
        }
        .map_err(|e| e.to_string())?;
        let mut document = self.document.clone();
        *plugin_config_slot(&mut document)? = Value::String(text);
        let mut bytes = match self.format {
            Format::Json if self.bytes.contains(&b'\n') => {
                serde_json::to_vec_pretty(&document).map_err(|e| e.to_string())?
            }
            Format::Json => serde_json::to_vec(&document).map_err(|e| e.to_string())?,
            Format::Yaml => serde_yaml::to_string(&document)
                .map_err(|e| e.to_string())?
                .into_bytes(),
        };
        if self.bytes.ends_with(b"\n") && !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        Ok(bytes)
    }
}

/// The one `TypedExtensionConfig`'s plugin configuration: the `value` of the Wasm filter's
/// `configuration` or of the dynamic module's `filter_config`, or what makes the document
/// something else.
pub fn plugin_config_text(document: &Value) -> Result<&str, String> {
    let (_, path) = plugin_config_place(document)?;
    document
        .pointer(path.pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{} is not a string", path.name))
}

/// The plugin configuration string, to replace.
pub fn plugin_config_slot(document: &mut Value) -> Result<&mut Value, String> {
    let (_, path) = plugin_config_place(document)?;
    plugin_config_text(document)?;
    document
        .pointer_mut(path.pointer)
        .ok_or_else(|| format!("{} is missing", path.name))
}

/// Where a plugin configuration string sits in a document: a JSON pointer, and the same path
/// as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigPath {
    pub pointer: &'static str,
    pub name: &'static str,
}

const WASM_CONFIG: ConfigPath = ConfigPath {
    pointer: "/resources/0/typed_config/config/configuration/value",
    name: "resources[0].typed_config.config.configuration.value",
};
const DYNAMIC_MODULE_CONFIG: ConfigPath = ConfigPath {
    pointer: "/resources/0/typed_config/filter_config/value",
    name: "resources[0].typed_config.filter_config.value",
};

/// The filter type of the document's one resource and where its plugin configuration is.
pub fn plugin_config_place(document: &Value) -> Result<(&'static str, ConfigPath), String> {
    let resource = the_resource(document)?;
    let typed_config = resource
        .get("typed_config")
        .ok_or("resources[0] has no typed_config")?;
    let (kind, path, configuration) = match typed_config.get("@type").and_then(Value::as_str) {
        Some(WASM) => (
            WASM,
            WASM_CONFIG,
            typed_config
                .pointer("/config/configuration")
                .ok_or("the Wasm filter has no config.configuration (the plugin configuration)")?,
        ),
        Some(DYNAMIC_MODULE) => (
            DYNAMIC_MODULE,
            DYNAMIC_MODULE_CONFIG,
            typed_config
                .get("filter_config")
                .ok_or("the DynamicModuleFilter has no filter_config (the plugin configuration)")?,
        ),
        Some(other) => {
            return Err(format!(
                "resources[0].typed_config is a {other}, not a {WASM} or a {DYNAMIC_MODULE}"
            ))
        }
        None => {
            return Err(format!(
                "resources[0].typed_config has no @type (expected {WASM} or {DYNAMIC_MODULE})"
            ))
        }
    };
    let at = path.name.trim_end_matches(".value");
    expect_type(configuration, at, STRING_VALUE)?;
    Ok((kind, path))
}

fn the_resource(document: &Value) -> Result<&Value, String> {
    let resources = document
        .get("resources")
        .and_then(Value::as_array)
        .ok_or("no `resources` list")?;
    let [resource] = resources.as_slice() else {
        return Err(format!(
            "`resources` holds {} entries; exactly one TypedExtensionConfig is expected",
            resources.len()
        ));
    };
    expect_type(resource, "resources[0]", TYPED_EXTENSION_CONFIG)?;
    Ok(resource)
}

fn expect_type(value: &Value, path: &str, want: &str) -> Result<(), String> {
    match value.get("@type").and_then(Value::as_str) {
        Some(t) if t == want => Ok(()),
        Some(t) => Err(format!("{path} is a {t}, not a {want}")),
        None => Err(format!("{path} has no @type (expected {want})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_documents_that_are_not_one_wasm_typed_extension_config() {
        let good = document("canary", &ModuleSource::Local("/m.wasm".into()), "{}");
        assert_eq!(plugin_config_text(&good), Ok("{}"));
        let mut two = good.clone();
        two["resources"] = json!([good["resources"][0], good["resources"][0]]);
        let mut lua = good.clone();
        lua["resources"][0]["typed_config"]["@type"] =
            json!("type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua");
        let mut no_config = good.clone();
        if let Some(config) = no_config["resources"][0]["typed_config"]["config"].as_object_mut() {
            config.remove("configuration");
        }
        for (label, doc, fragment) in [
            ("two resources", two, "holds 2 entries"),
            ("not wasm", lua, "lua.v3.Lua, not a"),
            ("no configuration", no_config, "no config.configuration"),
            ("not a document", json!([1]), "no `resources`"),
        ] {
            let error = plugin_config_text(&doc).unwrap_err();
            assert!(error.contains(fragment), "{label}: {error}");
        }
    }

    #[test]
    fn the_dynamic_module_document_carries_the_plugin_configuration_in_filter_config() {
        let module = ModuleSource::Dynamic {
            name: "canary_router".into(),
        };
        let mut doc = document("canary", &module, r#"{"routes":[]}"#);
        assert_eq!(
            doc["resources"][0]["typed_config"]["@type"],
            json!(DYNAMIC_MODULE)
        );
        assert_eq!(
            doc["resources"][0]["typed_config"]["dynamic_module_config"]["name"],
            json!("canary_router")
        );
        assert_eq!(plugin_config_text(&doc), Ok(r#"{"routes":[]}"#));
        assert_eq!(
            plugin_config_place(&doc).map(|(kind, _)| kind),
            Ok(DYNAMIC_MODULE)
        );
        *plugin_config_slot(&mut doc).unwrap() = json!("{}");
        assert_eq!(
            doc["resources"][0]["typed_config"]["filter_config"]["value"],
            json!("{}")
        );

        let mut bytes = doc.clone();
        bytes["resources"][0]["typed_config"]["filter_config"]["@type"] =
            json!("type.googleapis.com/google.protobuf.BytesValue");
        let error = plugin_config_text(&bytes).unwrap_err();
        assert!(
            error.contains("resources[0].typed_config.filter_config is a type.googleapis.com/google.protobuf.BytesValue"),
            "{error}"
        );
        let mut none = doc.clone();
        if let Some(typed_config) = none["resources"][0]["typed_config"].as_object_mut() {
            typed_config.remove("filter_config");
        }
        let error = plugin_config_text(&none).unwrap_err();
        assert!(error.contains("has no filter_config"), "{error}");
    }

    #[test]
    fn the_format_is_chosen_by_extension_as_envoy_does() {
        assert_eq!(Format::of(Path::new("a/ecds.yaml")), Format::Yaml);
        assert_eq!(Format::of(Path::new("a/ecds.YML")), Format::Yaml);
        assert_eq!(Format::of(Path::new("a/ecds.json")), Format::Json);
        assert_eq!(Format::of(Path::new("a/ecds")), Format::Json);
    }
}
