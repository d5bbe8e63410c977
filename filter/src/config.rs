//! The plugin configuration as the operator writes it (the WasmPlugin `pluginConfig`).
//!
//! These types mirror the JSON one to one, with camelCase names. They carry no validation
//! beyond JSON types; [`crate::table::RoutingTable`] is built from them by [`parse`] /
//! [`from_value`], which check everything else and report every error with its JSON path.
//!
//! The JSON is read by [`crate::json`]'s reader and decoded here by hand, straight into these
//! types: unknown fields are rejected, and every type error and missing field is reported at
//! its path, not just the first. With the `serde` feature (the controller's), the types also
//! serialize, and [`from_value`] / [`decode`] take a `serde_json::Value` through the same
//! decoder.

use crate::error::{ConfigError, ConfigErrors};
use std::borrow::Cow;

use crate::json::{self, Kind, Reader};
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
    RoutingTable::try_from(&config)
}

/// Reads the plugin configuration bytes and decodes the JSON types only: the types are built
/// straight from the bytes, with no document tree in between.
pub fn decode_json(bytes: &[u8]) -> Result<PluginConfig, ConfigErrors> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new("$", "configuration is empty").into());
    }
    let invalid =
        |e: json::Error| ConfigErrors::from(ConfigError::new("$", format!("invalid JSON: {e}")));
    let mut reader = Reader::new(bytes).map_err(invalid)?;
    let mut decoder = Decoder::default();
    let config = decoder
        .document(&mut reader)
        .and_then(|config| reader.finish().map(|()| config))
        .map_err(|e| invalid(*e))?;
    match config {
        Some(config) if decoder.errors.is_empty() => Ok(config),
        _ if decoder.errors.is_empty() => {
            Err(ConfigError::new("$", "invalid configuration").into())
        }
        _ => Err(ConfigErrors(decoder.errors)),
    }
}

/// Decodes and compiles a configuration already read as JSON (or converted from YAML).
#[cfg(feature = "serde")]
pub fn from_value(value: serde_json::Value) -> Result<RoutingTable, ConfigErrors> {
    let config = decode(value)?;
    RoutingTable::try_from(&config)
}

/// Decodes the JSON types only, with the same decoder and errors as [`parse`]: the value is
/// written out as JSON and read back.
#[cfg(feature = "serde")]
pub fn decode(value: serde_json::Value) -> Result<PluginConfig, ConfigErrors> {
    let text = serde_json::to_vec(&value)
        .map_err(|e| ConfigErrors::from(ConfigError::new("$", e.to_string())))?;
    decode_json(&text)
}

const PLUGIN_FIELDS: &[&str] = &["decisionHeader", "debugHeader", "routes"];
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

/// One step of a JSON path: a field or an array index.
enum Step {
    Key(&'static str),
    Index(usize),
}

/// Decodes the configuration types from a [`Reader`], recording every error at its path. The
/// path is a stack of steps, written out only when an error is recorded. A syntax error ends
/// decoding (the `Err` of each method); a decoding error is recorded, its value skipped, and
/// the method returns `Ok(None)`.
#[derive(Default)]
struct Decoder {
    path: Vec<Step>,
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

type Decoded<T> = json::Parsed<Option<T>>;

impl Decoder {
    /// The current path, `routes[3].variants[0].weight`; `$` at the root.
    fn path(&self, last: Option<&str>) -> String {
        let mut path = String::new();
        let keys = self.path.iter().map(|step| match step {
            Step::Key(key) => Ok(*key),
            Step::Index(i) => Err(*i),
        });
        for step in keys.chain(last.map(Ok)) {
            match step {
                Ok(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Err(i) => {
                    path.push('[');
                    path.push_str(&i.to_string());
                    path.push(']');
                }
            }
        }
        if path.is_empty() {
            path.push('$');
        }
        path
    }

    fn error(&mut self, reason: String) {
        let path = self.path(None);
        self.errors.push(ConfigError::new(path, reason));
    }

    /// Records that the next value is not what was `expected`, and skips it.
    fn invalid_type<T>(&mut self, reader: &mut Reader<'_>, expected: &str) -> Decoded<T> {
        let found = unexpected(reader)?;
        self.error(format!("invalid type: {found}, expected {expected}"));
        Ok(None)
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

    /// Hands each member of the object that comes next to `field`, by its name in `names`.
    /// Unknown members are recorded and skipped. Returns `false` if the value is not an object
    /// (recorded, with `not_object` as the reason when given).
    fn fields<'a>(
        &mut self,
        reader: &mut Reader<'a>,
        names: &'static [&'static str],
        not_object: Option<&str>,
        mut field: impl FnMut(&mut Self, &mut Reader<'a>, &'static str) -> json::Parsed<()>,
    ) -> json::Parsed<bool> {
        if reader.kind()? != Kind::Object {
            match not_object {
                Some(reason) => {
                    reader.skip()?;
                    self.error(reason.to_owned());
                }
                None => {
                    self.invalid_type::<()>(reader, "an object")?;
                }
            }
            return Ok(false);
        }
        reader.begin_object()?;
        // The known fields seen, one bit each; the unknown keys, kept only if there are any.
        let mut seen = 0u32;
        let mut unknown: Vec<Cow<'a, str>> = Vec::new();
        let mut next = reader.next_key(true)?;
        while let Some((key, at)) = next {
            match names.iter().position(|name| *name == key) {
                Some(i) => {
                    let bit = 1u32.checked_shl(i as u32).unwrap_or(0);
                    if seen & bit != 0 {
                        return Err(reader.error_at(at, format!("duplicate key {key:?}")));
                    }
                    seen |= bit;
                    let name = names.get(i).copied().unwrap_or_default();
                    self.path.push(Step::Key(name));
                    field(self, reader, name)?;
                    self.path.pop();
                }
                None => {
                    if unknown.contains(&key) {
                        return Err(reader.error_at(at, format!("duplicate key {key:?}")));
                    }
                    let expected = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>();
                    let path = self.path(Some(&key));
                    self.errors.push(ConfigError::new(
                        path,
                        format!(
                            "unknown field `{key}`, expected one of {}",
                            expected.join(", ")
                        ),
                    ));
                    reader.skip()?;
                    unknown.push(key);
                }
            }
            next = reader.next_key(false)?;
        }
        Ok(true)
    }

    /// The array that comes next, each item decoded by `item`; `None` if any item is invalid.
    fn list<'a, T>(
        &mut self,
        reader: &mut Reader<'a>,
        mut item: impl FnMut(&mut Self, &mut Reader<'a>) -> Decoded<T>,
    ) -> Decoded<Vec<T>> {
        if reader.kind()? != Kind::Array {
            return self.invalid_type(reader, "a sequence");
        }
        reader.begin_array()?;
        let mut decoded = Vec::new();
        let mut valid = true;
        let mut index = 0;
        let mut more = reader.next_item(true)?;
        while more {
            self.path.push(Step::Index(index));
            index += 1;
            match item(self, reader)? {
                Some(v) => decoded.push(v),
                None => valid = false,
            }
            self.path.pop();
            more = reader.next_item(false)?;
        }
        Ok(valid.then_some(decoded))
    }

    /// An optional field's value: `null` is the same as leaving the field out.
    fn nullable<'a, T>(
        &mut self,
        reader: &mut Reader<'a>,
        decode: impl FnOnce(&mut Self, &mut Reader<'a>) -> Decoded<T>,
    ) -> Decoded<Option<T>> {
        if reader.kind()? == Kind::Null {
            reader.null()?;
            return Ok(Some(None));
        }
        Ok(decode(self, reader)?.map(Some))
    }

    fn string(&mut self, reader: &mut Reader<'_>) -> Decoded<String> {
        if reader.kind()? != Kind::String {
            return self.invalid_type(reader, "a string");
        }
        Ok(Some(reader.string()?.into_owned()))
    }

    fn strings(&mut self, reader: &mut Reader<'_>) -> Decoded<Vec<String>> {
        self.list(reader, Self::string)
    }

    fn boolean(&mut self, reader: &mut Reader<'_>) -> Decoded<bool> {
        if reader.kind()? != Kind::Bool {
            return self.invalid_type(reader, "a boolean");
        }
        Ok(Some(reader.boolean()?))
    }

    fn number(&mut self, reader: &mut Reader<'_>) -> Decoded<f64> {
        if reader.kind()? != Kind::Number {
            return self.invalid_type(reader, "a number");
        }
        let text = reader.number()?;
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Some(n)),
            _ => {
                self.error(format!("number `{text}` is out of range"));
                Ok(None)
            }
        }
    }

    fn unsigned(&mut self, reader: &mut Reader<'_>) -> Decoded<u64> {
        const EXPECTED: &str = "a non-negative integer";
        if reader.kind()? != Kind::Number {
            return self.invalid_type(reader, EXPECTED);
        }
        let text = reader.number()?;
        if !is_integer(text) {
            self.error(format!(
                "invalid type: floating point `{text}`, expected {EXPECTED}"
            ));
            return Ok(None);
        }
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Some(n));
        }
        match text.strip_prefix('-') {
            Some(digits) if digits.bytes().all(|b| b == b'0') => Ok(Some(0)),
            Some(_) => {
                self.error(format!(
                    "invalid value: integer `{text}`, expected {EXPECTED}"
                ));
                Ok(None)
            }
            None => {
                self.error(format!(
                    "invalid value: integer `{text}`, expected at most {}",
                    u64::MAX
                ));
                Ok(None)
            }
        }
    }

    /// The whole document: a JSON object holding the plugin configuration.
    fn document(&mut self, reader: &mut Reader<'_>) -> Decoded<PluginConfig> {
        let mut decision_header = Field::Absent;
        let mut debug_header = Field::Absent;
        let mut routes = Field::Absent;
        let object = self.fields(
            reader,
            PLUGIN_FIELDS,
            Some("must be a JSON object"),
            |d, r, key| {
                match key {
                    "decisionHeader" => decision_header.set(d.string(r)?),
                    "debugHeader" => debug_header.set(d.boolean(r)?),
                    _ => routes.set(d.list(r, Self::route)?),
                }
                Ok(())
            },
        )?;
        if !object {
            return Ok(None);
        }
        let routes = self.required(routes, "routes");
        Ok((|| {
            Some(PluginConfig {
                decision_header: decision_header.or_else(|| DEFAULT_DECISION_HEADER.to_owned())?,
                debug_header: debug_header.or_default()?,
                routes: routes?,
            })
        })())
    }

    fn route(&mut self, reader: &mut Reader<'_>) -> Decoded<RouteConfig> {
        let mut name = Field::Absent;
        let mut matcher = Field::Absent;
        let mut variants = Field::Absent;
        let mut targeting = Field::Absent;
        let mut stickiness = Field::Absent;
        let object = self.fields(
            reader,
            ROUTE_FIELDS,
            Some("must be an object"),
            |d, r, key| {
                match key {
                    "name" => name.set(d.string(r)?),
                    "match" => matcher.set(d.nullable(r, Self::matcher)?),
                    "variants" => variants.set(d.list(r, Self::variant)?),
                    "targeting" => targeting.set(d.list(r, Self::rule)?),
                    _ => stickiness.set(d.nullable(r, Self::stickiness)?),
                }
                Ok(())
            },
        )?;
        if !object {
            return Ok(None);
        }
        let name = self.required(name, "name");
        let variants = self.required(variants, "variants");
        Ok((|| {
            Some(RouteConfig {
                name: name?,
                matcher: matcher.or_default()?,
                variants: variants?,
                targeting: targeting.or_default()?,
                stickiness: stickiness.or_default()?,
            })
        })())
    }

    fn matcher(&mut self, reader: &mut Reader<'_>) -> Decoded<MatchConfig> {
        let mut hosts = Field::Absent;
        let mut path_prefixes = Field::Absent;
        let object = self.fields(reader, MATCH_FIELDS, None, |d, r, key| {
            match key {
                "hosts" => hosts.set(d.nullable(r, Self::strings)?),
                _ => path_prefixes.set(d.nullable(r, Self::strings)?),
            }
            Ok(())
        })?;
        Ok((|| {
            object.then_some(())?;
            Some(MatchConfig {
                hosts: hosts.or_default()?,
                path_prefixes: path_prefixes.or_default()?,
            })
        })())
    }

    fn variant(&mut self, reader: &mut Reader<'_>) -> Decoded<VariantConfig> {
        let mut name = Field::Absent;
        let mut weight = Field::Absent;
        let object = self.fields(reader, VARIANT_FIELDS, None, |d, r, key| {
            match key {
                "name" => name.set(d.string(r)?),
                _ => weight.set(d.number(r)?),
            }
            Ok(())
        })?;
        if !object {
            return Ok(None);
        }
        let name = self.required(name, "name");
        let weight = self.required(weight, "weight");
        Ok((|| {
            Some(VariantConfig {
                name: name?,
                weight: weight?,
            })
        })())
    }

    fn rule(&mut self, reader: &mut Reader<'_>) -> Decoded<TargetingRuleConfig> {
        let mut name = Field::Absent;
        let mut header = Field::Absent;
        let mut cookie = Field::Absent;
        let mut equals = Field::Absent;
        let mut one_of = Field::Absent;
        let mut prefix = Field::Absent;
        let mut matches = Field::Absent;
        let mut present = Field::Absent;
        let mut variant = Field::Absent;
        let object = self.fields(reader, RULE_FIELDS, None, |d, r, key| {
            match key {
                "name" => name.set(d.string(r)?),
                "header" => header.set(d.nullable(r, Self::string)?),
                "cookie" => cookie.set(d.nullable(r, Self::string)?),
                "equals" => equals.set(d.nullable(r, Self::string)?),
                "in" => one_of.set(d.nullable(r, Self::strings)?),
                "prefix" => prefix.set(d.nullable(r, Self::string)?),
                "matches" => matches.set(d.nullable(r, Self::string)?),
                "present" => present.set(d.nullable(r, Self::boolean)?),
                _ => variant.set(d.string(r)?),
            }
            Ok(())
        })?;
        if !object {
            return Ok(None);
        }
        let name = self.required(name, "name");
        let variant = self.required(variant, "variant");
        Ok((|| {
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
        })())
    }

    fn stickiness(&mut self, reader: &mut Reader<'_>) -> Decoded<StickinessConfig> {
        let mut keys = Field::Absent;
        let mut cookie = Field::Absent;
        let mut salt = Field::Absent;
        let object = self.fields(reader, STICKINESS_FIELDS, None, |d, r, key| {
            match key {
                "keys" => keys.set(d.list(r, Self::key)?),
                "cookie" => cookie.set(d.nullable(r, Self::identity_cookie)?),
                _ => salt.set(d.nullable(r, Self::string)?),
            }
            Ok(())
        })?;
        Ok((|| {
            object.then_some(())?;
            Some(StickinessConfig {
                keys: keys.or_default()?,
                cookie: cookie.or_default()?,
                salt: salt.or_default()?,
            })
        })())
    }

    fn key(&mut self, reader: &mut Reader<'_>) -> Decoded<KeyConfig> {
        let mut header = Field::Absent;
        let mut cookie = Field::Absent;
        let object = self.fields(reader, KEY_FIELDS, None, |d, r, key| {
            match key {
                "header" => header.set(d.nullable(r, Self::string)?),
                _ => cookie.set(d.nullable(r, Self::string)?),
            }
            Ok(())
        })?;
        Ok((|| {
            object.then_some(())?;
            Some(KeyConfig {
                header: header.or_default()?,
                cookie: cookie.or_default()?,
            })
        })())
    }

    fn identity_cookie(&mut self, reader: &mut Reader<'_>) -> Decoded<IdentityCookieConfig> {
        let mut name = Field::Absent;
        let mut max_age = Field::Absent;
        let mut path = Field::Absent;
        let mut secure = Field::Absent;
        let mut http_only = Field::Absent;
        let mut same_site = Field::Absent;
        let object = self.fields(reader, COOKIE_FIELDS, None, |d, r, key| {
            match key {
                "name" => name.set(d.string(r)?),
                "maxAge" => max_age.set(d.nullable(r, Self::unsigned)?),
                "path" => path.set(d.nullable(r, Self::string)?),
                "secure" => secure.set(d.nullable(r, Self::boolean)?),
                "httpOnly" => http_only.set(d.nullable(r, Self::boolean)?),
                _ => same_site.set(d.nullable(r, Self::same_site)?),
            }
            Ok(())
        })?;
        if !object {
            return Ok(None);
        }
        let name = self.required(name, "name");
        Ok((|| {
            Some(IdentityCookieConfig {
                name: name?,
                max_age: max_age.or_default()?,
                path: path.or_default()?,
                secure: secure.or_default()?,
                http_only: http_only.or_default()?,
                same_site: same_site.or_default()?,
            })
        })())
    }

    fn same_site(&mut self, reader: &mut Reader<'_>) -> Decoded<SameSite> {
        if reader.kind()? != Kind::String {
            return self.invalid_type(reader, SAME_SITE);
        }
        match reader.string()?.as_ref() {
            "Strict" => Ok(Some(SameSite::Strict)),
            "Lax" => Ok(Some(SameSite::Lax)),
            "None" => Ok(Some(SameSite::None)),
            other => {
                self.error(format!("unknown variant `{other}`, expected {SAME_SITE}"));
                Ok(None)
            }
        }
    }
}

/// A JSON number without a fraction or exponent.
fn is_integer(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// What the next value is, for an error message; the value is read past.
fn unexpected(reader: &mut Reader<'_>) -> json::Parsed<String> {
    Ok(match reader.kind()? {
        Kind::Null => {
            reader.null()?;
            "null".to_owned()
        }
        Kind::Bool => format!("boolean `{}`", reader.boolean()?),
        Kind::Number => {
            let n = reader.number()?;
            if is_integer(n) {
                format!("integer `{n}`")
            } else {
                format!("floating point `{n}`")
            }
        }
        Kind::String => format!("string {:?}", reader.string()?),
        Kind::Array => {
            reader.skip()?;
            "sequence".to_owned()
        }
        Kind::Object => {
            reader.skip()?;
            "map".to_owned()
        }
    })
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

    /// `parse` reads the bytes with [`json::parse`], `from_value` converts a serde_json `Value`
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
            br#"{"decisionHeader":"x-v","debugHeader":true,"routes":[{"name":"r",
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
                "extra: unknown field `extra`, expected one of `decisionHeader`, `debugHeader`, `routes`",
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
