//! The plugin configuration as the operator writes it (the WasmPlugin `pluginConfig`).
//!
//! These types mirror the JSON one to one: serde with camelCase names and unknown fields
//! rejected. They carry no validation beyond JSON types; [`crate::table::RoutingTable`] is
//! built from them by [`parse`] / [`from_value`], which check everything else and report
//! every error with its JSON path.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ConfigError, ConfigErrors};
use crate::table::RoutingTable;

/// Header the decision is written to when the configuration names none.
pub const DEFAULT_DECISION_HEADER: &str = "x-canary-variant";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default = "default_decision_header")]
    pub decision_header: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub debug_header: bool,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<MatchConfig>,
    pub variants: Vec<VariantConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targeting: Vec<TargetingRuleConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<StickinessConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefixes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VariantConfig {
    pub name: String,
    /// Percentage of traffic, at most three decimals.
    pub weight: f64,
}

/// One targeting rule: exactly one source and exactly one predicate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetingRuleConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    pub variant: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StickinessConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<IdentityCookieConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

/// Where an identity is read from: exactly one of `header` or `cookie`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityCookieConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

fn default_decision_header() -> String {
    DEFAULT_DECISION_HEADER.to_owned()
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The top level with routes kept raw, so that each route is decoded on its own and a
/// malformed route does not hide the errors of the others.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope {
    #[serde(default = "default_decision_header")]
    decision_header: String,
    #[serde(default)]
    debug_header: bool,
    routes: Vec<Value>,
}

/// Parses the plugin configuration bytes (JSON) and compiles it.
pub fn parse(bytes: &[u8]) -> Result<RoutingTable, ConfigErrors> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new("$", "configuration is empty").into());
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ConfigErrors::from(ConfigError::new("$", format!("invalid JSON: {e}"))))?;
    from_value(value)
}

/// Decodes and compiles a configuration already read as JSON (or converted from YAML).
pub fn from_value(value: Value) -> Result<RoutingTable, ConfigErrors> {
    let config = decode(value)?;
    RoutingTable::try_from(&config)
}

/// Decodes the JSON types only, collecting one error per malformed route.
pub fn decode(value: Value) -> Result<PluginConfig, ConfigErrors> {
    // serde would read a struct from an array too, and say so obscurely.
    if !value.is_object() {
        return Err(ConfigError::new("$", "must be a JSON object").into());
    }
    let envelope: Envelope = serde_path_to_error::deserialize(value)
        .map_err(|e| ConfigErrors::from(decode_error("", &e)))?;
    let mut errors = Vec::new();
    let mut routes = Vec::with_capacity(envelope.routes.len());
    for (i, raw) in envelope.routes.into_iter().enumerate() {
        if !raw.is_object() {
            errors.push(ConfigError::new(
                format!("routes[{i}]"),
                "must be an object",
            ));
            continue;
        }
        match serde_path_to_error::deserialize::<_, RouteConfig>(raw) {
            Ok(route) => routes.push(route),
            Err(e) => errors.push(decode_error(&format!("routes[{i}]"), &e)),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(PluginConfig {
        decision_header: envelope.decision_header,
        debug_header: envelope.debug_header,
        routes,
    })
}

/// A decoding error, its path put under `prefix` (the document root when empty).
fn decode_error(prefix: &str, e: &serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let inner = e.path().to_string();
    let path = match (prefix.is_empty(), inner == ".") {
        (true, true) => "$".to_owned(),
        (true, false) => inner,
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{inner}"),
    };
    ConfigError::new(path, e.inner().to_string())
}
