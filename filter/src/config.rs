//! The plugin configuration as the operator writes it (the WasmPlugin `pluginConfig`).
//!
//! These types mirror the JSON one to one: serde with camelCase names and unknown fields
//! rejected. They carry no validation beyond JSON types; [`crate::table::RoutingTable`] is
//! built from them by [`parse`] / [`from_value`], which check everything else and report
//! every error with its JSON path.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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

/// [`Envelope`] read straight from the bytes, each route left as its JSON text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEnvelope<'a> {
    #[serde(default = "default_decision_header")]
    decision_header: String,
    #[serde(default)]
    debug_header: bool,
    #[serde(borrow)]
    routes: Vec<&'a RawValue>,
}

/// Parses the plugin configuration bytes (JSON) and compiles it.
///
/// Same result as [`from_value`] on the parsed document, without building the document as a
/// [`Value`] first: each route is decoded from its own JSON text.
pub fn parse(bytes: &[u8]) -> Result<RoutingTable, ConfigErrors> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new("$", "configuration is empty").into());
    }
    // Syntax first, so that a malformed document is reported as such.
    serde_json::from_slice::<IgnoredAny>(bytes)
        .map_err(|e| ConfigErrors::from(ConfigError::new("$", format!("invalid JSON: {e}"))))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConfigError::new("$", "must be a JSON object").into());
    }
    let envelope: RawEnvelope =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes))
            .map_err(|e| ConfigErrors::from(decode_error("", &e)))?;
    let routes = decode_routes(envelope.routes.into_iter().map(|raw| {
        let text = raw.get();
        text.starts_with('{').then(|| {
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
        })
    }))?;
    RoutingTable::try_from(&PluginConfig {
        decision_header: envelope.decision_header,
        debug_header: envelope.debug_header,
        routes,
    })
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
    let routes = decode_routes(envelope.routes.into_iter().map(|raw| {
        raw.is_object()
            .then(|| serde_path_to_error::deserialize(raw))
    }))?;
    Ok(PluginConfig {
        decision_header: envelope.decision_header,
        debug_header: envelope.debug_header,
        routes,
    })
}

/// Each route decoded, or `None` where it is not a JSON object; one error per bad route.
fn decode_routes(
    decoded: impl Iterator<Item = Option<Result<RouteConfig, PathError>>>,
) -> Result<Vec<RouteConfig>, ConfigErrors> {
    let mut errors = Vec::new();
    let mut routes = Vec::with_capacity(decoded.size_hint().0);
    for (i, route) in decoded.enumerate() {
        match route {
            Some(Ok(route)) => routes.push(route),
            Some(Err(e)) => errors.push(decode_error(&format!("routes[{i}]"), &e)),
            None => errors.push(ConfigError::new(
                format!("routes[{i}]"),
                "must be an object",
            )),
        }
    }
    if errors.is_empty() {
        Ok(routes)
    } else {
        Err(ConfigErrors(errors))
    }
}

type PathError = serde_path_to_error::Error<serde_json::Error>;

/// A decoding error, its path put under `prefix` (the document root when empty).
fn decode_error(prefix: &str, e: &PathError) -> ConfigError {
    let inner = e.path().to_string();
    let path = match (prefix.is_empty(), inner == ".") {
        (true, true) => "$".to_owned(),
        (true, false) => inner,
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{inner}"),
    };
    // The reason alone: errors read from text end with a position, those from a `Value` do not.
    let inner = e.inner();
    let reason = inner.to_string();
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    let reason = reason.strip_suffix(&position).unwrap_or(&reason).to_owned();
    ConfigError::new(path, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse` reads routes from their text, `from_value` from a `Value` (the controller's way,
    /// after YAML): both must accept and reject the same documents with the same errors.
    #[test]
    fn parse_agrees_with_from_value() {
        let documents = [
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":100}]}]}"#,
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":"x"}]}]}"#,
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":100}],"extra":1}]}"#,
            r#"{"routes":[1,{"name":"r"},{"name":"s","variants":[{"name":"a","weight":60}]}]}"#,
            r#"{"routes":{}}"#,
            r#"{"routes":[],"debugHeader":"yes"}"#,
            r#"{"routs":[]}"#,
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":100}],
                "targeting":[{"name":"t","header":"x","matches":"(","variant":"a"}]}]}"#,
            r#"[]"#,
            r#"  {"routes":[{"name":"r","variants":[{"name":"a","weight":1e2}]}]} "#,
        ];
        for document in documents {
            let value: Value = serde_json::from_str(document).unwrap();
            let errors = |r: Result<RoutingTable, ConfigErrors>| r.err().map(|e| e.to_string());
            assert_eq!(
                errors(parse(document.as_bytes())),
                errors(from_value(value)),
                "{document}"
            );
        }
    }

    #[test]
    fn malformed_json_is_reported_as_such() {
        for document in ["{", r#"{"routes":[}"#, "{} x"] {
            let errors = parse(document.as_bytes()).unwrap_err().to_string();
            assert!(
                errors.starts_with("$: invalid JSON"),
                "{document}: {errors}"
            );
        }
    }
}
