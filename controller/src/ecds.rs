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

pub const ROUTE_CONFIGURATION: &str =
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// The dynamic module as a route's cluster specifier: the plugin configuration is the
/// `routing` of its `specifier_config`.
pub const CLUSTER_SPECIFIER: &str = "type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier";

/// The `filter_name` the native dynamic module serves (its `FILTER_NAME`), and its
/// `specifier_name` as a cluster specifier.
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
/// the filter's own decoder. Also an RDS file whose route picks its cluster with the dynamic
/// module's cluster specifier: there the plugin configuration is the `routing` of the
/// specifier's configuration.
pub struct EcdsFile {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub document: Value,
    pub config: PluginConfig,
    /// The cluster specifier's configuration, when the plugin configuration is its `routing`.
    specifier: Option<Value>,
    /// Whether the configuration string was written over several lines.
    config_pretty: bool,
}

impl EcdsFile {
    /// Reads `bytes`, written in `format`.
    pub fn parse(bytes: Vec<u8>, format: Format) -> Result<Self, EcdsError> {
        let document = format
            .parse(&bytes)
            .map_err(|reason| EcdsError::Syntax { format, reason })?;
        let place = plugin_config_place(&document).map_err(EcdsError::Shape)?;
        let text = config_text(&document, &place).map_err(EcdsError::Shape)?;
        let (specifier, routing) = match place.kind {
            CLUSTER_SPECIFIER => {
                let (specifier, routing) =
                    specifier_routing(text, &place.name).map_err(EcdsError::Shape)?;
                (Some(specifier), routing)
            }
            _ => (None, text.to_owned()),
        };
        let config =
            canary_filter::config::decode(routing.as_bytes()).map_err(EcdsError::PluginConfig)?;
        Ok(EcdsFile {
            config_pretty: text.trim_end().contains('\n'),
            specifier,
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
        let mut value = serde_json::to_value(config).map_err(|e| e.to_string())?;
        if let Some(specifier) = &self.specifier {
            let mut specifier = specifier.clone();
            specifier["routing"] = value;
            value = specifier;
        }
        let text = if self.config_pretty {
            serde_json::to_string_pretty(&value)
        } else {
            serde_json::to_string(&value)
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

/// The cluster specifier's configuration `text` (at `name`), and its `routing` as JSON text.
fn specifier_routing(text: &str, name: &str) -> Result<(Value, String), String> {
    let specifier: Value = serde_json::from_str(text)
        .map_err(|e| format!("{name} is not the cluster specifier's JSON: {e}"))?;
    let routing = specifier
        .get("routing")
        .filter(|routing| routing.is_object())
        .ok_or_else(|| format!("{name} has no `routing` object (the plugin configuration)"))?;
    Ok((specifier.clone(), routing.to_string()))
}

/// The one plugin configuration string of the document: the `value` of the Wasm filter's
/// `configuration`, of the dynamic module's `filter_config`, or of the cluster specifier's
/// `specifier_config` (which holds the plugin configuration as its `routing`), or what makes
/// the document something else.
pub fn plugin_config_text(document: &Value) -> Result<&str, String> {
    config_text(document, &plugin_config_place(document)?)
}

fn config_text<'d>(document: &'d Value, place: &ConfigPath) -> Result<&'d str, String> {
    document
        .pointer(&place.pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{} is not a string", place.name))
}

/// The plugin configuration string, to replace.
pub fn plugin_config_slot(document: &mut Value) -> Result<&mut Value, String> {
    let place = plugin_config_place(document)?;
    config_text(document, &place)?;
    document
        .pointer_mut(&place.pointer)
        .ok_or_else(|| format!("{} is missing", place.name))
}

/// Where a plugin configuration string sits in a document: a JSON pointer, the same path as
/// errors name it, and the type of what carries it ([`WASM`], [`DYNAMIC_MODULE`] or
/// [`CLUSTER_SPECIFIER`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPath {
    pub pointer: String,
    pub name: String,
    pub kind: &'static str,
}

/// The filter type of the document's one resource, or the cluster specifier of its route, and
/// where its plugin configuration is.
pub fn plugin_config_place(document: &Value) -> Result<ConfigPath, String> {
    let resource = the_resource(document)?;
    if resource.get("@type").and_then(Value::as_str) == Some(ROUTE_CONFIGURATION) {
        return specifier_place(resource);
    }
    let typed_config = resource
        .get("typed_config")
        .ok_or("resources[0] has no typed_config")?;
    let (kind, field, configuration) = match typed_config.get("@type").and_then(Value::as_str) {
        Some(WASM) => (
            WASM,
            "config.configuration",
            typed_config
                .pointer("/config/configuration")
                .ok_or("the Wasm filter has no config.configuration (the plugin configuration)")?,
        ),
        Some(DYNAMIC_MODULE) => (
            DYNAMIC_MODULE,
            "filter_config",
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
    let at = format!("resources[0].typed_config.{field}");
    expect_type(configuration, &at, STRING_VALUE)?;
    Ok(ConfigPath {
        pointer: format!(
            "/resources/0/typed_config/{}/value",
            field.replace('.', "/")
        ),
        name: format!("{at}.value"),
        kind,
    })
}

/// The one route of a RouteConfiguration whose cluster the dynamic module's cluster specifier
/// `canary` picks, and where its configuration string is.
fn specifier_place(route_configuration: &Value) -> Result<ConfigPath, String> {
    let mut found = Vec::new();
    let hosts = route_configuration
        .get("virtual_hosts")
        .and_then(Value::as_array);
    for (h, host) in hosts.into_iter().flatten().enumerate() {
        let routes = host.get("routes").and_then(Value::as_array);
        for (r, route) in routes.into_iter().flatten().enumerate() {
            let Some(typed_config) =
                route.pointer("/route/inline_cluster_specifier_plugin/extension/typed_config")
            else {
                continue;
            };
            let ours = typed_config.get("@type").and_then(Value::as_str) == Some(CLUSTER_SPECIFIER)
                && typed_config.get("specifier_name").and_then(Value::as_str)
                    == Some(DYNAMIC_MODULE_FILTER);
            if ours {
                found.push((h, r, typed_config));
            }
        }
    }
    let at = |h: usize, r: usize| {
        format!(
            "resources[0].virtual_hosts[{h}].routes[{r}].route.inline_cluster_specifier_plugin\
             .extension.typed_config"
        )
    };
    let [(h, r, typed_config)] = found.as_slice() else {
        if found.is_empty() {
            return Err(format!(
                "no route of resources[0] picks its cluster with the {CLUSTER_SPECIFIER} \
                 `{DYNAMIC_MODULE_FILTER}` (the plugin configuration's place)"
            ));
        }
        let places: Vec<String> = found.iter().map(|(h, r, _)| at(*h, *r)).collect();
        return Err(format!(
            "{} routes pick their cluster with the cluster specifier `{DYNAMIC_MODULE_FILTER}`, \
             at {}; exactly one is expected",
            found.len(),
            places.join(", ")
        ));
    };
    let at = format!("{}.specifier_config", at(*h, *r));
    let configuration = typed_config
        .get("specifier_config")
        .ok_or_else(|| format!("{at} is missing (the plugin configuration)"))?;
    expect_type(configuration, &at, STRING_VALUE)?;
    Ok(ConfigPath {
        pointer: format!(
            "/resources/0/virtual_hosts/{h}/routes/{r}/route/inline_cluster_specifier_plugin\
             /extension/typed_config/specifier_config/value"
        ),
        name: format!("{at}.value"),
        kind: CLUSTER_SPECIFIER,
    })
}

fn the_resource(document: &Value) -> Result<&Value, String> {
    let resources = document
        .get("resources")
        .and_then(Value::as_array)
        .ok_or("no `resources` list")?;
    let [resource] = resources.as_slice() else {
        return Err(format!(
            "`resources` holds {} entries; exactly one TypedExtensionConfig (or one \
             RouteConfiguration) is expected",
            resources.len()
        ));
    };
    if resource.get("@type").and_then(Value::as_str) != Some(ROUTE_CONFIGURATION) {
        expect_type(resource, "resources[0]", TYPED_EXTENSION_CONFIG)?;
    }
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
            plugin_config_place(&doc).map(|place| place.kind),
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

    fn route_file(routes: Vec<Value>) -> Value {
        json!({ "resources": [{
            "@type": ROUTE_CONFIGURATION,
            "name": "routes",
            "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }],
        }] })
    }

    fn specifier_route(name: &str, specifier: &Value) -> Value {
        json!({
            "match": { "prefix": "/" },
            "route": { "inline_cluster_specifier_plugin": { "extension": {
                "name": "canary",
                "typed_config": {
                    "@type": CLUSTER_SPECIFIER,
                    "dynamic_module_config": { "name": "canary_router" },
                    "specifier_name": name,
                    "specifier_config": { "@type": STRING_VALUE, "value": specifier.to_string() },
                },
            } } },
        })
    }

    fn specifier(weight: u32) -> Value {
        json!({
            "cluster": "outbound|80|{variant}|web",
            "defaultCluster": "outbound|80|stable|web",
            "routing": { "routes": [{ "name": "web", "variants": [
                { "name": "stable", "weight": 100 - weight },
                { "name": "canary", "weight": weight }] }] },
        })
    }

    #[test]
    fn a_route_file_carries_the_plugin_configuration_as_the_specifier_routing() {
        let other = json!({ "match": { "prefix": "/x" }, "route": { "cluster": "x" } });
        let doc = route_file(vec![other, specifier_route("canary", &specifier(10))]);
        let bytes = serde_json::to_vec(&doc).unwrap();
        let file = EcdsFile::parse(bytes, Format::Json).unwrap();
        assert_eq!(file.config.routes[0].variants[1].weight, 10.0);

        let mut config = file.config.clone();
        config.routes[0].variants[0].weight = 60.0;
        config.routes[0].variants[1].weight = 40.0;
        let written: Value = serde_json::from_slice(&file.render(&config).unwrap()).unwrap();
        let place = plugin_config_place(&written).unwrap();
        assert_eq!(place.kind, CLUSTER_SPECIFIER);
        assert_eq!(
            place.name,
            "resources[0].virtual_hosts[0].routes[1].route.inline_cluster_specifier_plugin\
             .extension.typed_config.specifier_config.value"
        );
        let text = plugin_config_text(&written).unwrap();
        let mut want = specifier(40);
        want["routing"]["routes"][0]["variants"][0]["weight"] = json!(60);
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), want);
        // Nothing else in the file changed.
        let mut rest = written.clone();
        *plugin_config_slot(&mut rest).unwrap() = json!("");
        let mut before = doc.clone();
        *plugin_config_slot(&mut before).unwrap() = json!("");
        assert_eq!(rest, before);
    }

    #[test]
    fn a_route_file_must_hold_exactly_one_canary_specifier_with_a_routing() {
        let ours = specifier_route("canary", &specifier(10));
        let theirs = specifier_route("other", &specifier(10));
        let two = route_file(vec![ours.clone(), ours.clone()]);
        let error = plugin_config_text(&two).unwrap_err();
        assert!(
            error.starts_with("2 routes pick their cluster with the cluster specifier `canary`")
                && error.contains("routes[0].route")
                && error.contains("routes[1].route"),
            "{error}"
        );
        let error = plugin_config_text(&route_file(vec![theirs])).unwrap_err();
        assert!(
            error.starts_with("no route of resources[0] picks its cluster"),
            "{error}"
        );
        let mut no_routing = specifier(10);
        no_routing.as_object_mut().unwrap().remove("routing");
        let doc = route_file(vec![specifier_route("canary", &no_routing)]);
        let error = EcdsFile::parse(serde_json::to_vec(&doc).unwrap(), Format::Json)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("has no `routing` object"), "{error}");
    }

    #[test]
    fn the_format_is_chosen_by_extension_as_envoy_does() {
        assert_eq!(Format::of(Path::new("a/ecds.yaml")), Format::Yaml);
        assert_eq!(Format::of(Path::new("a/ecds.YML")), Format::Yaml);
        assert_eq!(Format::of(Path::new("a/ecds.json")), Format::Json);
        assert_eq!(Format::of(Path::new("a/ecds")), Format::Json);
    }
}
