//! The plugin configuration as the operator writes it (the WasmPlugin `pluginConfig`).
//!
//! These types mirror the JSON one to one, with camelCase names. They carry no validation
//! beyond JSON types; [`crate::table::RoutingTable`] is built from them by [`parse`] /
//! [`from_value`], which check everything else and report every error with its JSON path.
//!
//! The JSON is read by [`crate::json`] and decoded here by hand: unknown fields are rejected,
//! and every type error and missing field is reported at its path, not just the first. With
//! the `serde` feature (the controller's), the types also serialize, and [`from_value`] /
//! [`decode`] take a `serde_json::Value` through the same decoder.

use crate::error::{json_path, ConfigError, ConfigErrors, PathStep as Step};
use crate::json::{self, Document, Node};
use crate::table::RoutingTable;

/// Header the decision is written to when the configuration names none.
pub const DEFAULT_DECISION_HEADER: &str = "x-canary-variant";

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct PluginConfig {
    pub decision_header: String,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "is_false"))]
    pub debug_header: bool,
    /// The secret appended to every decision value, `<variant>.<seal>`; `None` writes the bare
    /// variant name.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub seal: Option<String>,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct RouteConfig {
    pub name: String,
    #[cfg_attr(
        feature = "serde",
        serde(rename = "match", skip_serializing_if = "Option::is_none")
    )]
    pub matcher: Option<MatchConfig>,
    pub variants: Vec<VariantConfig>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub targeting: Vec<TargetingRuleConfig>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub stickiness: Option<StickinessConfig>,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct MatchConfig {
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub hosts: Option<Vec<String>>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub path_prefixes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct VariantConfig {
    pub name: String,
    /// Percentage of traffic, at most three decimals.
    pub weight: f64,
}

/// One targeting rule: exactly one source and exactly one predicate.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct TargetingRuleConfig {
    pub name: String,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub header: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub cookie: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub equals: Option<String>,
    #[cfg_attr(
        feature = "serde",
        serde(rename = "in", skip_serializing_if = "Option::is_none")
    )]
    pub one_of: Option<Vec<String>>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub prefix: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub matches: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub present: Option<bool>,
    pub variant: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct StickinessConfig {
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub keys: Vec<KeyConfig>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub cookie: Option<IdentityCookieConfig>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub salt: Option<String>,
}

/// Where an identity is read from: exactly one of `header` or `cookie`.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct KeyConfig {
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub header: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub cookie: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct IdentityCookieConfig {
    pub name: String,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub max_age: Option<u64>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub path: Option<String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub secure: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub http_only: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub same_site: Option<SameSite>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[cfg(feature = "serde")]
fn is_false(b: &bool) -> bool {
    !*b
}

/// Parses the plugin configuration bytes (JSON) and compiles it.
pub fn parse(bytes: &[u8]) -> Result<RoutingTable, ConfigErrors> {
    let config = decode_json(bytes)?;
    RoutingTable::try_from(config)
}

/// Reads the plugin configuration bytes and decodes the JSON types only.
pub fn decode_json(bytes: &[u8]) -> Result<PluginConfig, ConfigErrors> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new("$", "configuration is empty").into());
    }
    let document = json::parse_document(bytes)
        .map_err(|e| ConfigErrors::from(ConfigError::new("$", format!("invalid JSON: {e}"))))?;
    decode_document(&document)
}

/// Decodes and compiles a configuration already read as JSON (or converted from YAML).
#[cfg(feature = "serde")]
pub fn from_value(value: serde_json::Value) -> Result<RoutingTable, ConfigErrors> {
    let config = decode(value)?;
    RoutingTable::try_from(config)
}

/// Decodes the JSON types only, with the same decoder and errors as [`parse`].
#[cfg(feature = "serde")]
pub fn decode(value: serde_json::Value) -> Result<PluginConfig, ConfigErrors> {
    let document = json::from_serde(&value)
        .map_err(|reason| ConfigErrors::from(ConfigError::new("$", reason)))?;
    decode_document(&document)
}

/// Decodes a JSON document into a [`PluginConfig`], collecting every error.
pub fn decode_document(document: &Document<'_>) -> Result<PluginConfig, ConfigErrors> {
    if !matches!(document.root(), Node::Object(_)) {
        return Err(ConfigError::new("$", "must be a JSON object").into());
    }
    let mut decoder = Decoder {
        document,
        path: Vec::new(),
        errors: Vec::new(),
    };
    match decoder.plugin(document.root()) {
        Some(config) if decoder.errors.is_empty() => Ok(config),
        _ if decoder.errors.is_empty() => {
            Err(ConfigError::new("$", "invalid configuration").into())
        }
        _ => Err(ConfigErrors(decoder.errors)),
    }
}

const PLUGIN_FIELDS: &[&str] = &["decisionHeader", "debugHeader", "seal", "routes"];
const ROUTE_FIELDS: &[&str] = &["name", "match", "variants", "targeting", "stickiness"];
const MATCH_FIELDS: &[&str] = &["hosts", "pathPrefixes"];
const VARIANT_FIELDS: &[&str] = &["name", "weight"];
const RULE_FIELDS: &[&str] = &[
    "name", "header", "cookie", "equals", "in", "prefix", "matches", "present", "variant",
];
const STICKINESS_FIELDS: &[&str] = &["keys", "cookie", "salt"];
const KEY_FIELDS: &[&str] = &["header", "cookie"];
const COOKIE_FIELDS: &[&str] = &["name", "maxAge", "path", "secure", "httpOnly", "sameSite"];
const SAME_SITE: &str = "one of `Strict`, `Lax`, `None`";

/// Decodes the configuration types from a document, recording every error at its path. The
/// path is a stack of steps, written out only when an error is recorded.
struct Decoder<'t> {
    document: &'t Document<'t>,
    path: Vec<Step<'t>>,
    errors: Vec<ConfigError>,
}

/// A field of an object being decoded.
enum Field<T> {
    Absent,
    /// Present with an error, already recorded.
    Invalid,
    Present(T),
}

impl<T> Field<T> {
    fn set(&mut self, decoded: Option<T>) {
        *self = decoded.map_or(Field::Invalid, Field::Present);
    }

    /// The value, the default when the field is absent, or `None` when it was invalid.
    fn or_else(self, default: impl FnOnce() -> T) -> Option<T> {
        match self {
            Field::Absent => Some(default()),
            Field::Invalid => None,
            Field::Present(value) => Some(value),
        }
    }

    fn or_default(self) -> Option<T>
    where
        T: Default,
    {
        self.or_else(T::default)
    }
}

impl<'t> Decoder<'t> {
    /// The current path, `routes[3].variants[0].weight`; `$` at the root.
    fn path(&self) -> String {
        json_path(self.path.iter().copied())
    }

    fn error(&mut self, reason: String) {
        let path = self.path();
        self.errors.push(ConfigError::new(path, reason));
    }

    fn invalid_type(&mut self, value: &Node<'_>, expected: &str) {
        self.error(format!(
            "invalid type: {}, expected {expected}",
            unexpected(value)
        ));
    }

    /// A required field: `None` if it is absent (recorded as missing) or invalid.
    fn required<T>(&mut self, field: Field<T>, name: &str) -> Option<T> {
        match field {
            Field::Present(value) => Some(value),
            Field::Invalid => None,
            Field::Absent => {
                self.error(format!("missing field `{name}`"));
                None
            }
        }
    }

    /// Hands each member of an object to `field`, which decodes it and returns `false` for a key
    /// it does not know. Returns `false` if the value is not an object.
    fn fields(
        &mut self,
        value: &'t Node<'t>,
        names: &[&str],
        mut field: impl FnMut(&mut Self, &'t str, &'t Node<'t>) -> bool,
    ) -> bool {
        let Node::Object(object) = value else {
            self.invalid_type(value, "an object");
            return false;
        };
        let document = self.document;
        for (key, value) in document.members(*object) {
            self.path.push(Step::Key(key));
            if !field(self, key, value) {
                let expected = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>();
                self.error(format!(
                    "unknown field `{key}`, expected one of {}",
                    expected.join(", ")
                ));
            }
            self.path.pop();
        }
        true
    }

    /// An array, each item decoded by `item`; `None` if any item is invalid.
    fn list<T>(
        &mut self,
        value: &'t Node<'t>,
        mut item: impl FnMut(&mut Self, &'t Node<'t>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Node::Array(array) = value else {
            self.invalid_type(value, "a sequence");
            return None;
        };
        let document = self.document;
        let items = document.items(*array);
        let mut decoded = Vec::with_capacity(items.len());
        let mut valid = true;
        for (i, value) in items.iter().enumerate() {
            self.path.push(Step::Index(i));
            match item(self, value) {
                Some(v) => decoded.push(v),
                None => valid = false,
            }
            self.path.pop();
        }
        valid.then_some(decoded)
    }

    /// An optional field's value: `null` is the same as leaving the field out.
    fn nullable<T>(
        &mut self,
        value: &'t Node<'t>,
        decode: impl FnOnce(&mut Self, &'t Node<'t>) -> Option<T>,
    ) -> Option<Option<T>> {
        match value {
            Node::Null => Some(None),
            value => decode(self, value).map(Some),
        }
    }

    fn string(&mut self, value: &Node<'_>) -> Option<String> {
        match value {
            Node::String(s) => Some(String::from(s.as_ref())),
            _ => {
                self.invalid_type(value, "a string");
                None
            }
        }
    }

    fn strings(&mut self, value: &'t Node<'t>) -> Option<Vec<String>> {
        self.list(value, Self::string)
    }

    fn boolean(&mut self, value: &Node<'_>) -> Option<bool> {
        match value {
            Node::Bool(b) => Some(*b),
            _ => {
                self.invalid_type(value, "a boolean");
                None
            }
        }
    }

    fn number(&mut self, value: &Node<'_>) -> Option<f64> {
        match value {
            Node::Number(text) => match text.parse::<f64>() {
                Ok(n) if n.is_finite() => Some(n),
                _ => {
                    self.error(format!("number `{text}` is out of range"));
                    None
                }
            },
            _ => {
                self.invalid_type(value, "a number");
                None
            }
        }
    }

    fn unsigned(&mut self, value: &Node<'_>) -> Option<u64> {
        const EXPECTED: &str = "a non-negative integer";
        let Node::Number(text) = value else {
            self.invalid_type(value, EXPECTED);
            return None;
        };
        if !is_integer(text) {
            self.invalid_type(value, EXPECTED);
            return None;
        }
        if let Ok(n) = text.parse::<u64>() {
            return Some(n);
        }
        match text.strip_prefix('-') {
            Some(digits) if digits.bytes().all(|b| b == b'0') => Some(0),
            Some(_) => {
                self.error(format!(
                    "invalid value: integer `{text}`, expected {EXPECTED}"
                ));
                None
            }
            None => {
                self.error(format!(
                    "invalid value: integer `{text}`, expected at most {}",
                    u64::MAX
                ));
                None
            }
        }
    }

    fn plugin(&mut self, value: &'t Node<'t>) -> Option<PluginConfig> {
        let mut decision_header = Field::Absent;
        let mut debug_header = Field::Absent;
        let mut seal = Field::Absent;
        let mut routes = Field::Absent;
        if !self.fields(value, PLUGIN_FIELDS, |d, key, v| {
            match key {
                "decisionHeader" => decision_header.set(d.string(v)),
                "debugHeader" => debug_header.set(d.boolean(v)),
                "seal" => seal.set(d.nullable(v, Self::string)),
                "routes" => routes.set(d.list(v, Self::route)),
                _ => return false,
            }
            true
        }) {
            return None;
        }
        let routes = self.required(routes, "routes");
        Some(PluginConfig {
            decision_header: decision_header.or_else(|| DEFAULT_DECISION_HEADER.to_owned())?,
            debug_header: debug_header.or_default()?,
            seal: seal.or_default()?,
            routes: routes?,
        })
    }

    fn route(&mut self, value: &'t Node<'t>) -> Option<RouteConfig> {
        if !matches!(value, Node::Object(_)) {
            self.error("must be an object".to_owned());
            return None;
        }
        let mut name = Field::Absent;
        let mut matcher = Field::Absent;
        let mut variants = Field::Absent;
        let mut targeting = Field::Absent;
        let mut stickiness = Field::Absent;
        self.fields(value, ROUTE_FIELDS, |d, key, v| {
            match key {
                "name" => name.set(d.string(v)),
                "match" => matcher.set(d.nullable(v, Self::matcher)),
                "variants" => variants.set(d.list(v, Self::variant)),
                "targeting" => targeting.set(d.list(v, Self::rule)),
                "stickiness" => stickiness.set(d.nullable(v, Self::stickiness)),
                _ => return false,
            }
            true
        });
        let name = self.required(name, "name");
        let variants = self.required(variants, "variants");
        Some(RouteConfig {
            name: name?,
            matcher: matcher.or_default()?,
            variants: variants?,
            targeting: targeting.or_default()?,
            stickiness: stickiness.or_default()?,
        })
    }

    fn matcher(&mut self, value: &'t Node<'t>) -> Option<MatchConfig> {
        let mut hosts = Field::Absent;
        let mut path_prefixes = Field::Absent;
        if !self.fields(value, MATCH_FIELDS, |d, key, v| {
            match key {
                "hosts" => hosts.set(d.nullable(v, Self::strings)),
                "pathPrefixes" => path_prefixes.set(d.nullable(v, Self::strings)),
                _ => return false,
            }
            true
        }) {
            return None;
        }
        Some(MatchConfig {
            hosts: hosts.or_default()?,
            path_prefixes: path_prefixes.or_default()?,
        })
    }

    fn variant(&mut self, value: &'t Node<'t>) -> Option<VariantConfig> {
        let mut name = Field::Absent;
        let mut weight = Field::Absent;
        if !self.fields(value, VARIANT_FIELDS, |d, key, v| {
            match key {
                "name" => name.set(d.string(v)),
                "weight" => weight.set(d.number(v)),
                _ => return false,
            }
            true
        }) {
            return None;
        }
        let name = self.required(name, "name");
        let weight = self.required(weight, "weight");
        Some(VariantConfig {
            name: name?,
            weight: weight?,
        })
    }

    fn rule(&mut self, value: &'t Node<'t>) -> Option<TargetingRuleConfig> {
        let mut name = Field::Absent;
        let mut header = Field::Absent;
        let mut cookie = Field::Absent;
        let mut equals = Field::Absent;
        let mut one_of = Field::Absent;
        let mut prefix = Field::Absent;
        let mut matches = Field::Absent;
        let mut present = Field::Absent;
        let mut variant = Field::Absent;
        if !self.fields(value, RULE_FIELDS, |d, key, v| {
            match key {
                "name" => name.set(d.string(v)),
                "header" => header.set(d.nullable(v, Self::string)),
                "cookie" => cookie.set(d.nullable(v, Self::string)),
                "equals" => equals.set(d.nullable(v, Self::string)),
                "in" => one_of.set(d.nullable(v, Self::strings)),
                "prefix" => prefix.set(d.nullable(v, Self::string)),
                "matches" => matches.set(d.nullable(v, Self::string)),
                "present" => present.set(d.nullable(v, Self::boolean)),
                "variant" => variant.set(d.string(v)),
                _ => return false,
            }
            true
        }) {
            return None;
        }
        let name = self.required(name, "name");
        let variant = self.required(variant, "variant");
        Some(TargetingRuleConfig {
            name: name?,
            header: header.or_default()?,
            cookie: cookie.or_default()?,
            equals: equals.or_default()?,
            one_of: one_of.or_default()?,
            prefix: prefix.or_default()?,
            matches: matches.or_default()?,
            present: present.or_default()?,
            variant: variant?,
        })
    }

    fn stickiness(&mut self, value: &'t Node<'t>) -> Option<StickinessConfig> {
        let mut keys = Field::Absent;
        let mut cookie = Field::Absent;
        let mut salt = Field::Absent;
        if !self.fields(value, STICKINESS_FIELDS, |d, key, v| {
            match key {
                "keys" => keys.set(d.list(v, Self::key)),
                "cookie" => cookie.set(d.nullable(v, Self::identity_cookie)),
                "salt" => salt.set(d.nullable(v, Self::string)),
                _ => return false,
            }
            true
        }) {
            return None;
        }
        Some(StickinessConfig {
            keys: keys.or_default()?,
            cookie: cookie.or_default()?,
            salt: salt.or_default()?,
        })
    }

    fn key(&mut self, value: &'t Node<'t>) -> Option<KeyConfig> {
        let mut header = Field::Absent;
        let mut cookie = Field::Absent;
        if !self.fields(value, KEY_FIELDS, |d, key, v| {
            match key {
                "header" => header.set(d.nullable(v, Self::string)),
                "cookie" => cookie.set(d.nullable(v, Self::string)),
                _ => return false,
            }
            true
        }) {
            return None;
        }
        Some(KeyConfig {
            header: header.or_default()?,
            cookie: cookie.or_default()?,
        })
    }

    fn identity_cookie(&mut self, value: &'t Node<'t>) -> Option<IdentityCookieConfig> {
        let mut name = Field::Absent;
        let mut max_age = Field::Absent;
        let mut path = Field::Absent;
        let mut secure = Field::Absent;
        let mut http_only = Field::Absent;
        let mut same_site = Field::Absent;
        if !self.fields(value, COOKIE_FIELDS, |d, key, v| {
            match key {
                "name" => name.set(d.string(v)),
                "maxAge" => max_age.set(d.nullable(v, Self::unsigned)),
                "path" => path.set(d.nullable(v, Self::string)),
                "secure" => secure.set(d.nullable(v, Self::boolean)),
                "httpOnly" => http_only.set(d.nullable(v, Self::boolean)),
                "sameSite" => same_site.set(d.nullable(v, Self::same_site)),
                _ => return false,
            }
            true
        }) {
            return None;
        }
        let name = self.required(name, "name");
        Some(IdentityCookieConfig {
            name: name?,
            max_age: max_age.or_default()?,
            path: path.or_default()?,
            secure: secure.or_default()?,
            http_only: http_only.or_default()?,
            same_site: same_site.or_default()?,
        })
    }

    fn same_site(&mut self, value: &Node<'_>) -> Option<SameSite> {
        let Node::String(s) = value else {
            self.invalid_type(value, SAME_SITE);
            return None;
        };
        match s.as_ref() {
            "Strict" => Some(SameSite::Strict),
            "Lax" => Some(SameSite::Lax),
            "None" => Some(SameSite::None),
            other => {
                self.error(format!("unknown variant `{other}`, expected {SAME_SITE}"));
                None
            }
        }
    }
}

/// A JSON number without a fraction or exponent.
fn is_integer(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// What a value is, for an error message.
fn unexpected(value: &Node<'_>) -> String {
    match value {
        Node::Null => "null".to_owned(),
        Node::Bool(b) => format!("boolean `{b}`"),
        Node::Number(n) if is_integer(n) => format!("integer `{n}`"),
        Node::Number(n) => format!("floating point `{n}`"),
        Node::String(s) => format!("string {s:?}"),
        Node::Array(_) => "sequence".to_owned(),
        Node::Object(_) => "map".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(result: Result<PluginConfig, ConfigErrors>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn decoded(document: &str) -> Vec<String> {
        errors(decode_json(document.as_bytes()))
    }

    /// `parse` reads the bytes with [`json::parse_document`], `from_value` converts a serde_json `Value`
    /// (the controller's way, after YAML): both must accept and reject the same documents with
    /// the same errors, and decode the same configuration. (A number in an error message is
    /// written as the document has it, and serde_json writes `1e3` as `1000.0`.)
    #[cfg(feature = "serde")]
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
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":100.0}],
                "stickiness":{"cookie":{"name":"c","maxAge":1000.5}}}]}"#,
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":100}],
                "stickiness":{"cookie":{"name":"c","maxAge":-3,"sameSite":"lax","secure":1}}}]}"#,
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":100}],
                "stickiness":{"cookie":{"name":"c","maxAge":18446744073709551615}}}]}"#,
            r#"{"routes":[{"name":"r","match":null,"variants":[{"name":"a","weight":100}],
                "targeting":[{"name":"t","header":"x","in":["a","b"],"prefix":null,"variant":"a"}],
                "stickiness":{"keys":[{"cookie":"s"}],"salt":"\u00e9t\u00e9"}}]}"#,
            r#"{"decisionHeader":7,"debugHeader":true,"routes":[{"variants":[{}],"targeting":[[]]},
                {"name":"b","match":{"hosts":"x","paths":[]},"variants":null}]}"#,
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":33.3335},
                {"name":"b","weight":66.6665}]}]}"#,
        ];
        for document in documents {
            let value: serde_json::Value = serde_json::from_str(document).unwrap();
            assert_eq!(
                decode_json(document.as_bytes()),
                decode(value.clone()),
                "{document}"
            );
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
        for document in [
            "{",
            r#"{"routes":[}"#,
            "{} x",
            "{\"a\":1,\"a\":2}",
            "\"\\ud800\"",
        ] {
            let errors = parse(document.as_bytes()).unwrap_err().to_string();
            assert!(
                errors.starts_with("$: invalid JSON: "),
                "{document}: {errors}"
            );
        }
        assert_eq!(
            decoded("{\n  \"routes\": [}"),
            ["$: invalid JSON: expected a value at line 2 column 14"]
        );
    }

    #[test]
    fn a_decoded_configuration_has_every_field() {
        let config = decode_json(
            br#"{"decisionHeader":"x-v","debugHeader":true,
            "seal":"0123456789abcdef0123456789abcdef","routes":[{"name":"r",
            "match":{"hosts":["a"],"pathPrefixes":["/p"]},
            "variants":[{"name":"a","weight":99.5},{"name":"b","weight":0.5}],
            "targeting":[{"name":"t","cookie":"c","present":false,"variant":"b"},
                         {"name":"u","header":"h","in":["x"],"variant":"a"},
                         {"name":"v","header":"h","prefix":"p","variant":"a"},
                         {"name":"w","header":"h","matches":"m.*","variant":"a"},
                         {"name":"x","header":"h","equals":"e","variant":"a"}],
            "stickiness":{"keys":[{"header":"k"}],"salt":"s","cookie":{"name":"id",
                "maxAge":18446744073709551615,"path":"/x","secure":true,"httpOnly":false,
                "sameSite":"Strict"}}}]}"#,
        )
        .unwrap();
        let rule = |name: &str| TargetingRuleConfig {
            name: name.to_owned(),
            header: Some("h".to_owned()),
            variant: "a".to_owned(),
            ..TargetingRuleConfig::default()
        };
        let expected = PluginConfig {
            decision_header: "x-v".to_owned(),
            debug_header: true,
            seal: Some("0123456789abcdef0123456789abcdef".to_owned()),
            routes: vec![RouteConfig {
                name: "r".to_owned(),
                matcher: Some(MatchConfig {
                    hosts: Some(vec!["a".to_owned()]),
                    path_prefixes: Some(vec!["/p".to_owned()]),
                }),
                variants: vec![
                    VariantConfig {
                        name: "a".to_owned(),
                        weight: 99.5,
                    },
                    VariantConfig {
                        name: "b".to_owned(),
                        weight: 0.5,
                    },
                ],
                targeting: vec![
                    TargetingRuleConfig {
                        name: "t".to_owned(),
                        cookie: Some("c".to_owned()),
                        present: Some(false),
                        variant: "b".to_owned(),
                        ..TargetingRuleConfig::default()
                    },
                    TargetingRuleConfig {
                        one_of: Some(vec!["x".to_owned()]),
                        ..rule("u")
                    },
                    TargetingRuleConfig {
                        prefix: Some("p".to_owned()),
                        ..rule("v")
                    },
                    TargetingRuleConfig {
                        matches: Some("m.*".to_owned()),
                        ..rule("w")
                    },
                    TargetingRuleConfig {
                        equals: Some("e".to_owned()),
                        ..rule("x")
                    },
                ],
                stickiness: Some(StickinessConfig {
                    keys: vec![KeyConfig {
                        header: Some("k".to_owned()),
                        cookie: None,
                    }],
                    cookie: Some(IdentityCookieConfig {
                        name: "id".to_owned(),
                        max_age: Some(u64::MAX),
                        path: Some("/x".to_owned()),
                        secure: Some(true),
                        http_only: Some(false),
                        same_site: Some(SameSite::Strict),
                    }),
                    salt: Some("s".to_owned()),
                }),
            }],
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn defaults_and_nulls_mean_absent() {
        let config = decode_json(
            br#"{"routes":[{"name":"r","match":null,"stickiness":null,
                "variants":[{"name":"a","weight":100}]}]}"#,
        )
        .unwrap();
        assert_eq!(config.decision_header, DEFAULT_DECISION_HEADER);
        assert!(!config.debug_header);
        let route = &config.routes[0];
        assert_eq!(
            (&route.matcher, &route.targeting, &route.stickiness),
            (&None, &Vec::new(), &None)
        );
        assert_eq!(
            decoded(r#"{"decisionHeader":null,"routes":[]}"#),
            ["decisionHeader: invalid type: null, expected a string"],
            "null is not a default for a field that is not optional"
        );
    }

    #[test]
    fn every_decoding_error_is_reported_at_its_path() {
        let found = decoded(
            r#"{"debugHeader":"yes","routes":[
                {"name":1,"variants":[{"name":"a","weight":"x"},{"weight":true,"subset":"v1"}],
                 "targeting":[{"name":"t","in":[1],"present":"no","variant":"a"}]},
                7,
                {"name":"b","match":{"hosts":{}},"stickiness":{"keys":[{"header":[]}],
                 "cookie":{"maxAge":1.5,"sameSite":"lax","secure":null}}}
            ],"extra":null}"#,
        );
        assert_eq!(
            found,
            [
                "debugHeader: invalid type: string \"yes\", expected a boolean",
                "routes[0].name: invalid type: integer `1`, expected a string",
                "routes[0].variants[0].weight: invalid type: string \"x\", expected a number",
                "routes[0].variants[1].weight: invalid type: boolean `true`, expected a number",
                "routes[0].variants[1].subset: unknown field `subset`, expected one of `name`, `weight`",
                "routes[0].variants[1]: missing field `name`",
                "routes[0].targeting[0].in[0]: invalid type: integer `1`, expected a string",
                "routes[0].targeting[0].present: invalid type: string \"no\", expected a boolean",
                "routes[1]: must be an object",
                "routes[2].match.hosts: invalid type: map, expected a sequence",
                "routes[2].stickiness.keys[0].header: invalid type: sequence, expected a string",
                "routes[2].stickiness.cookie.maxAge: invalid type: floating point `1.5`, expected a non-negative integer",
                "routes[2].stickiness.cookie.sameSite: unknown variant `lax`, expected one of `Strict`, `Lax`, `None`",
                "routes[2].stickiness.cookie: missing field `name`",
                "routes[2]: missing field `variants`",
                "extra: unknown field `extra`, expected one of `decisionHeader`, `debugHeader`, `seal`, `routes`",
            ]
        );
        assert_eq!(decoded("{}"), ["$: missing field `routes`"]);
        assert_eq!(decoded("[]"), ["$: must be a JSON object"]);
        assert_eq!(decoded(" \n "), ["$: configuration is empty"]);
    }

    #[test]
    fn numbers_decode_exactly_or_not_at_all() {
        let cookie = |max_age: &str| {
            decode_json(
                format!(
                    r#"{{"routes":[{{"name":"r","variants":[{{"name":"a","weight":100}}],
                    "stickiness":{{"cookie":{{"name":"c","maxAge":{max_age}}}}}}}]}}"#
                )
                .as_bytes(),
            )
            .map(|c| {
                c.routes[0]
                    .stickiness
                    .as_ref()
                    .unwrap()
                    .cookie
                    .as_ref()
                    .unwrap()
                    .max_age
            })
            .map_err(|e| e.to_string())
        };
        assert_eq!(cookie("18446744073709551615"), Ok(Some(u64::MAX)));
        assert_eq!(cookie("9007199254740993"), Ok(Some(9_007_199_254_740_993)));
        assert_eq!(cookie("-0"), Ok(Some(0)));
        assert_eq!(
            cookie("18446744073709551616"),
            Err(
                "routes[0].stickiness.cookie.maxAge: invalid value: integer \
                 `18446744073709551616`, expected at most 18446744073709551615"
                    .to_owned()
            )
        );
        assert_eq!(
            cookie("-5"),
            Err(
                "routes[0].stickiness.cookie.maxAge: invalid value: integer `-5`, \
                 expected a non-negative integer"
                    .to_owned()
            )
        );
        assert_eq!(
            cookie("1e3"),
            Err(
                "routes[0].stickiness.cookie.maxAge: invalid type: floating point `1e3`, \
                 expected a non-negative integer"
                    .to_owned()
            )
        );

        let weight = |w: &str| {
            decode_json(
                format!(
                    r#"{{"routes":[{{"name":"r","variants":[{{"name":"a","weight":{w}}}]}}]}}"#
                )
                .as_bytes(),
            )
            .map(|c| c.routes[0].variants[0].weight)
            .map_err(|e| e.to_string())
        };
        assert_eq!(weight("1E2"), Ok(100.0));
        assert_eq!(weight("0.001"), Ok(0.001));
        assert_eq!(weight("-0"), Ok(0.0));
        assert_eq!(
            weight("1e400"),
            Err("routes[0].variants[0].weight: number `1e400` is out of range".to_owned())
        );
    }
}
