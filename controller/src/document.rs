//! Reading an input file: JSON or YAML into a [`serde_json::Value`], and telling a plugin
//! configuration from a canary spec.
//!
//! A file named `*.json` is read as JSON; anything else as YAML (which also reads JSON).
//! A top-level mapping with a `pluginConfig` key is a canary spec; one with a `routes` key is a
//! plugin configuration; otherwise it is a canary spec if it has any other key a spec has, and
//! a plugin configuration if not (so that its errors are reported against the right format).
//!
//! JSON is read by the filter's own reader ([`canary_filter::config::read`]); YAML becomes the
//! same JSON tree. Every command then compiles a plugin configuration with [`compile`]: the
//! filter's [`canary_filter::parse`] on the JSON text of that tree, so canaryctl's verdict on a
//! document is the filter's verdict on its JSON.

use std::path::{Path, PathBuf};

use canary_filter::{ConfigErrors, RoutingTable};
use serde_json::Value;

use crate::spec;

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("$: invalid JSON: {0}")]
    Json(String),
    /// Refused by the filter's JSON reader: a syntax error or a duplicate key, at its path.
    #[error("{0}")]
    Refused(ConfigErrors),
    #[error("$: invalid YAML: {0}")]
    Yaml(#[source] serde_yaml::Error),
}

impl DocumentError {
    /// Whether the file was read but its content is malformed (the user's input is invalid), as
    /// opposed to unreadable.
    pub fn is_malformed(&self) -> bool {
        !matches!(self, DocumentError::Read { .. })
    }
}

/// What a document holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The filter's plugin configuration (the WasmPlugin `pluginConfig`).
    PluginConfig,
    /// A canary spec: the plugin configuration plus what rendering needs.
    CanarySpec,
}

/// Reads `path` as JSON (`*.json`) or YAML (anything else).
pub fn load(path: &Path) -> Result<Value, DocumentError> {
    let text = std::fs::read_to_string(path).map_err(|source| DocumentError::Read {
        path: path.to_owned(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    if is_json {
        parse_json(&text)
    } else {
        parse_yaml(&text)
    }
}

/// Reads JSON as the filter does, with the filter's own reader: it refuses what the filter
/// would refuse, a duplicate key among them.
pub fn parse_json(text: &str) -> Result<Value, DocumentError> {
    canary_filter::config::read(text.as_bytes()).map_err(DocumentError::Refused)
}

/// Reads YAML through serde_yaml's own tree, which refuses a duplicate key as the filter's JSON
/// reader does, then turns it into the JSON tree every command reads.
pub fn parse_yaml(text: &str) -> Result<Value, DocumentError> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(DocumentError::Yaml)?;
    serde_json::to_value(yaml).map_err(|error| DocumentError::Json(error.to_string()))
}

/// Compiles a plugin configuration read as `value` with the filter's own [`canary_filter::parse`],
/// on its JSON text.
pub fn compile(value: &Value) -> Result<RoutingTable, ConfigErrors> {
    canary_filter::parse(value.to_string().as_bytes())
}

/// Tells a canary spec from a plugin configuration (see the module documentation).
pub fn kind(value: &Value) -> Kind {
    let Some(map) = value.as_object() else {
        return Kind::PluginConfig;
    };
    if map.contains_key("pluginConfig") {
        Kind::CanarySpec
    } else if map.contains_key("routes") {
        Kind::PluginConfig
    } else if map.keys().any(|k| spec::FIELDS.contains(&k.as_str())) {
        Kind::CanarySpec
    } else {
        Kind::PluginConfig
    }
}

/// The differential check between canaryctl and the filter, run by the `validate` fuzz target
/// (`filter/fuzz`) and by a `cargo test` over the fuzz corpus: canaryctl's verdict on `data`,
/// read as JSON and also written as YAML and read back, is the filter's verdict on the bytes,
/// with the same errors for JSON, and an accepted document compiles to a table `same` finds
/// equal to the filter's (the fuzz helpers' `table_form` compares everything a table decides
/// with). `Err` describes the first disagreement.
pub fn agrees_with_filter(
    data: &[u8],
    same: impl Fn(&RoutingTable, &RoutingTable) -> bool,
) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        // canaryctl reads files as text; a document that is not UTF-8 never reaches the
        // filter's parser through it.
        return Ok(());
    };
    let filter = canary_filter::parse(data);
    let read = parse_json(text);
    let json = match &read {
        Ok(value) => compile(value),
        Err(DocumentError::Refused(errors)) => Err(errors.clone()),
        Err(other) => {
            return Err(format!(
                "JSON read failed outside the filter's reader: {other}"
            ))
        }
    };
    match (&filter, &json) {
        (Ok(a), Ok(b)) if !same(a, b) => {
            return Err("read as JSON, the document compiles to another table".into())
        }
        (Err(a), Err(b)) if a != b => {
            return Err(format!(
                "read as JSON, other errors: filter {a:?}, canaryctl {b:?}"
            ))
        }
        (Ok(_), Err(e)) => return Err(format!("read as JSON, canaryctl refuses it: {e}")),
        (Err(e), Ok(_)) => return Err(format!("read as JSON, the filter refuses it: {e}")),
        _ => {}
    }
    let Ok(value) = read else {
        return Ok(());
    };
    let yaml = serde_yaml::to_string(&value).map_err(|e| format!("cannot write YAML: {e}"))?;
    let from_yaml = parse_yaml(&yaml)
        .map_err(|e| format!("the document written as YAML does not read back: {e}"))?;
    match (&filter, compile(&from_yaml)) {
        (Ok(a), Ok(b)) if !same(a, &b) => {
            Err("written as YAML, the document compiles to another table".into())
        }
        (Ok(_), Err(e)) => Err(format!("written as YAML, canaryctl refuses it: {e}")),
        (Err(e), Ok(_)) => Err(format!("written as YAML, the filter refuses the JSON: {e}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds() {
        let cases = [
            (json!({"routes": []}), Kind::PluginConfig, "routes only"),
            (
                json!({"pluginConfig": {}}),
                Kind::CanarySpec,
                "pluginConfig",
            ),
            (
                json!({"pluginConfig": {}, "routes": []}),
                Kind::CanarySpec,
                "pluginConfig wins",
            ),
            (
                json!({"name": "x", "module": {}}),
                Kind::CanarySpec,
                "spec without pluginConfig",
            ),
            (
                json!({"decisionHeader": "x"}),
                Kind::PluginConfig,
                "no routes",
            ),
            (json!([1]), Kind::PluginConfig, "not a mapping"),
        ];
        for (value, want, label) in cases {
            assert_eq!(kind(&value), want, "{label}");
        }
    }

    #[test]
    fn yaml_and_json_read_the_same() {
        let yaml = parse_yaml("routes:\n- name: a\n  variants: [{name: s, weight: 100}]\n");
        let json =
            parse_json(r#"{"routes":[{"name":"a","variants":[{"name":"s","weight":100}]}]}"#);
        assert_eq!(yaml.ok(), json.ok());
    }

    #[test]
    fn a_duplicate_key_is_refused_as_the_filter_refuses_it() {
        let text = r#"{"routes": [], "routes": [{"name": "a"}]}"#;
        assert!(
            serde_json::from_str::<Value>(text).is_ok(),
            "serde_json alone keeps the last value"
        );
        let error = parse_json(text).err().map(|e| e.to_string());
        assert!(
            error.as_deref() == Some("routes: duplicate key `routes`"),
            "{error:?}"
        );
        let error = parse_yaml("routes: []\nroutes: [1]\n")
            .err()
            .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with("$: invalid YAML: ") && e.contains("duplicate")),
            "{error:?}"
        );
    }

    #[test]
    fn malformed_input_is_reported_at_the_root() {
        let error = parse_yaml("routes: [").err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with("$: invalid YAML")),
            "{error:?}"
        );
    }
}
