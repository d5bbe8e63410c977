//! The plugin configuration as the operator writes it (the WasmPlugin `pluginConfig`), and
//! [`decode`], the first half of [`crate::parse`], the one way from its bytes to a compiled
//! [`crate::RoutingTable`].
//!
//! These types mirror the JSON one to one, with camelCase names; each field is declared here
//! once, and serde derives both directions from it. They carry no validation beyond JSON types:
//! [`crate::RoutingTable`]'s `try_from` checks everything else. Every error is reported with its JSON
//! path, and every error of a document is reported, not just the first (see
//! [`crate::de`]): unknown fields and duplicate keys are refused.
//!
//! The filter calls [`crate::parse`] in `on_configure`; canaryctl calls it too, on the JSON form of
//! whatever it read (YAML included), so that the two cannot disagree about a document.

use serde::{Deserialize, Serialize};

pub use crate::cookie::SameSite;
use crate::de;
use crate::error::{ConfigError, ConfigErrors};

/// Header the decision is written to when the configuration names none.
pub const DEFAULT_DECISION_HEADER: &str = "x-canary-variant";

/// `Debug` shows whether a seal is set, never the seal.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(
        default = "default_decision_header",
        skip_serializing_if = "is_default_decision_header"
    )]
    pub decision_header: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub debug_header: bool,
    /// The secret appended to every decision value, `<variant>.<seal>`; `None` writes the bare
    /// variant name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
    #[serde(default, skip_serializing_if = "MetricsConfig::is_default")]
    pub metrics: MetricsConfig,
    pub routes: Vec<RouteConfig>,
}

/// Which of the filter's own metrics are kept. The decision counters always are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsConfig {
    /// Response counters per status class and the `upstream_time` histogram, per variant.
    /// Off by default: Envoy's cluster stats and Istio's standard metrics already count
    /// responses and latency per variant where each variant has its own cluster or subset,
    /// and these cost host calls on every response.
    #[serde(default, skip_serializing_if = "is_false")]
    pub responses: bool,
}

impl MetricsConfig {
    fn is_default(&self) -> bool {
        *self == MetricsConfig::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<MatchConfig>,
    pub variants: Vec<VariantConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targeting: Vec<TargetingRuleConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<StickinessConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampConfig>,
    /// Keeps the decision an upstream hop made, when the request's decision header carries it
    /// sealed with this configuration's seal (a mesh lane); needs `seal`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub trust_incoming: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefixes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VariantConfig {
    pub name: String,
    /// Percentage of traffic, at most three decimals.
    #[serde(serialize_with = "serialize_percent")]
    pub weight: f64,
}

/// A time ramp: `variant`'s weight goes linearly from `from` (its configured weight) to `to`
/// between `start` and `start + duration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RampConfig {
    pub variant: String,
    /// Percentages, written like the variants' weights.
    #[serde(serialize_with = "serialize_percent")]
    pub from: f64,
    #[serde(serialize_with = "serialize_percent")]
    pub to: f64,
    /// An RFC 3339 time.
    pub start: String,
    /// `30s`, `15m`, `2h`, as canaryctl's durations.
    pub duration: String,
}

/// One targeting rule: exactly one source (`header`, `cookie` or `query`) and exactly one
/// predicate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetingRuleConfig {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// A query parameter of `:path`, by its decoded name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    pub variant: String,
    /// When the rule decides, the response also pins the client to its variant with the pin
    /// cookie (see [`PinConfig`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pin: bool,
    /// When the rule decides, the response also clears the pin cookie.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unpin: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StickinessConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<IdentityCookieConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// `hash` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<StickinessMode>,
    /// The pin cookie's name and attributes; pins work with the defaults without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<PinConfig>,
}

/// How an identity keeps its variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StickinessMode {
    /// The variant is the hash of the identity at the weights in force: a weight change moves
    /// the fewest identities it can.
    #[default]
    Hash,
    /// The variant first served to an identity cookie is carried in it, signed, and kept for
    /// the cookie's life while the variant is configured with a weight above 0.
    Session,
}

/// The pin cookie, set by rules with `pin: true`. Its attributes are those of the identity
/// cookie, with their own defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PinConfig {
    /// The cookie's name; `canary_pin_<route>` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
}

/// Where an identity is read from: exactly one of `header` or `cookie`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityCookieConfig {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    /// The key that signs the identity cookies the filter issues, `<identity>.<mac>`; a cookie
    /// whose signature does not verify is treated as absent. `None`: cookies are not signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Keys that cookies signed before a rotation may still carry: accepted when verifying,
    /// never used to sign.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_secrets: Vec<String>,
}

/// Shows everything but the secrets, which are only said to be there.
impl std::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginConfig")
            .field("decision_header", &self.decision_header)
            .field("debug_header", &self.debug_header)
            .field("seal", &self.seal.as_ref().map(|_| "<hidden>"))
            .field("metrics", &self.metrics)
            .field("routes", &self.routes)
            .finish()
    }
}

impl std::fmt::Debug for IdentityCookieConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCookieConfig")
            .field("name", &self.name)
            .field("max_age", &self.max_age)
            .field("path", &self.path)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("same_site", &self.same_site)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("previous_secrets", &self.previous_secrets.len())
            .finish()
    }
}

fn default_decision_header() -> String {
    DEFAULT_DECISION_HEADER.to_owned()
}

fn is_default_decision_header(header: &str) -> bool {
    header == DEFAULT_DECISION_HEADER
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A percentage as operators write it: a whole one as an integer (`30`, not `30.0`).
fn serialize_percent<S: serde::Serializer>(
    percent: &f64,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if percent.fract() == 0.0 && (0.0..=100.0).contains(percent) {
        // Whole and within 0..=100, so the cast is exact.
        serializer.serialize_u8(*percent as u8)
    } else {
        serializer.serialize_f64(*percent)
    }
}

/// Reads the plugin configuration bytes and decodes the JSON types only: the first half of
/// [`crate::parse`], for callers that need the configuration as written (canaryctl's canary spec).
pub fn decode(bytes: &[u8]) -> Result<PluginConfig, ConfigErrors> {
    de::decode(&tree(bytes)?)
}

/// Reads JSON bytes into a tree as [`parse`] does: strict JSON, a duplicate key refused at its
/// path, an empty document refused.
pub fn read(bytes: &[u8]) -> Result<serde_json::Value, ConfigErrors> {
    Ok(tree(bytes)?.into_value())
}

fn tree(bytes: &[u8]) -> Result<de::Node<'_>, ConfigErrors> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new("$", "configuration is empty").into());
    }
    Ok(de::read(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, RoutingTable};

    fn errors(result: Result<PluginConfig, ConfigErrors>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn debug_output_shows_no_seal_and_no_cookie_secret() {
        let seal = "Fz9_sealed-debug-config0";
        let secret = "Qm3_cookie-secret-debug0";
        let config = decode(
            format!(
                r#"{{"seal":"{seal}","routes":[{{"name":"r","variants":[{{"name":"a","weight":100}}],
                "stickiness":{{"cookie":{{"name":"id","secret":"{secret}"}}}}}}]}}"#
            )
            .as_bytes(),
        )
        .expect("a valid configuration");
        let shown = format!("{config:?} {config:#?}");
        assert!(shown.contains("seal: Some(\"<hidden>\")"), "{shown}");
        assert!(!shown.contains(seal) && !shown.contains(secret), "{shown}");
    }

    fn decoded(document: &str) -> Vec<String> {
        errors(decode(document.as_bytes()))
    }

    /// What canaryctl does to a document, read it into a tree and write that tree out again,
    /// changes nothing about the verdict: the same errors, or the same configuration. (A
    /// number in a message is written as serde_json has it, so `1e2` reads as `100.0` both
    /// times.)
    #[test]
    fn a_document_written_back_from_its_tree_parses_the_same() {
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
            let written = read(document.as_bytes()).unwrap().to_string();
            assert_eq!(
                decode(document.as_bytes()),
                decode(written.as_bytes()),
                "{document}"
            );
            let errors = |r: Result<RoutingTable, ConfigErrors>| r.err().map(|e| e.to_string());
            assert_eq!(
                errors(parse(document.as_bytes())),
                errors(parse(written.as_bytes())),
                "{document}"
            );
        }
    }

    #[test]
    fn malformed_json_is_reported_as_such() {
        for document in ["{", r#"{"routes":[}"#, "{} x", "\"\\ud800\""] {
            let errors = parse(document.as_bytes()).unwrap_err().to_string();
            assert!(
                errors.starts_with("$: invalid JSON: "),
                "{document}: {errors}"
            );
        }
        assert_eq!(
            decoded("{\n  \"routes\": [}"),
            ["$: invalid JSON: expected value at line 2 column 14"]
        );
    }

    #[test]
    fn a_decoded_configuration_has_every_field() {
        let config = decode(
            br#"{"decisionHeader":"x-v","debugHeader":true,
            "seal":"0123456789abcdef0123456789abcdef","metrics":{"responses":true},
            "routes":[{"name":"r",
            "match":{"hosts":["a"],"pathPrefixes":["/p"]},
            "variants":[{"name":"a","weight":99.5},{"name":"b","weight":0.5}],
            "targeting":[{"name":"t","cookie":"c","present":false,"variant":"b"},
                         {"name":"u","header":"h","in":["x"],"variant":"a"},
                         {"name":"v","header":"h","prefix":"p","variant":"a"},
                         {"name":"w","header":"h","matches":"m.*","variant":"a"},
                         {"name":"x","header":"h","equals":"e","variant":"a"}],
            "stickiness":{"keys":[{"header":"k"}],"salt":"s","cookie":{"name":"id",
                "maxAge":18446744073709551615,"path":"/x","secure":true,"httpOnly":false,
                "sameSite":"Strict"}},"trustIncoming":true}]}"#,
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
            metrics: MetricsConfig { responses: true },
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
                        secret: None,
                        previous_secrets: Vec::new(),
                    }),
                    salt: Some("s".to_owned()),
                    mode: None,
                    pin: None,
                }),
                ramp: None,
                trust_incoming: true,
            }],
        };
        assert_eq!(config, expected);
    }

    /// canaryctl writes back what it edits: what is written reads back as the same
    /// configuration, with defaults left out and whole weights as integers, as people write them.
    #[test]
    fn a_configuration_is_written_as_it_is_written_by_hand() {
        let by_hand = [
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":87.5},{"name":"b","weight":12.5}]}]}"#,
            r#"{"decisionHeader":"x-v","debugHeader":true,"routes":[{"name":"r","match":{"hosts":["a"]},"variants":[{"name":"a","weight":100},{"name":"b","weight":0}],"targeting":[{"name":"t","header":"h","in":["x"],"variant":"b"}],"stickiness":{"keys":[{"cookie":"s"}],"cookie":{"name":"id","maxAge":60,"sameSite":"Lax"},"salt":"s"}}]}"#,
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":66.667},{"name":"b","weight":33.333}]}]}"#,
        ];
        for document in by_hand {
            let config = decode(document.as_bytes()).unwrap();
            let written = serde_json::to_string(&config).unwrap();
            assert_eq!(written, document);
            assert_eq!(decode(written.as_bytes()).unwrap(), config, "{written}");
        }
        let defaults_spelled_out = r#"{"decisionHeader":"x-canary-variant","debugHeader":false,
            "routes":[{"name":"r","variants":[{"name":"a","weight":100.0}],"targeting":[]}]}"#;
        let config = decode(defaults_spelled_out.as_bytes()).unwrap();
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            r#"{"routes":[{"name":"r","variants":[{"name":"a","weight":100}]}]}"#
        );
    }

    #[test]
    fn defaults_and_nulls_mean_absent() {
        let config = decode(
            br#"{"routes":[{"name":"r","match":null,"stickiness":null,
                "variants":[{"name":"a","weight":100}]}]}"#,
        )
        .unwrap();
        assert_eq!(config.decision_header, DEFAULT_DECISION_HEADER);
        assert!(!config.debug_header);
        assert!(
            !config.metrics.responses,
            "response metrics are off by default"
        );
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
            r#"{"debugHeader":"yes","metrics":{"responses":1,"latency":true},"routes":[
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
                "metrics.responses: invalid type: integer `1`, expected a boolean",
                "metrics.latency: unknown field `latency`, expected one of `responses`",
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
                "extra: unknown field `extra`, expected one of `decisionHeader`, `debugHeader`, `seal`, `metrics`, `routes`",
            ]
        );
        assert_eq!(decoded("{}"), ["$: missing field `routes`"]);
        assert_eq!(decoded("[]"), ["$: must be a JSON object"]);
        assert_eq!(decoded(" \n "), ["$: configuration is empty"]);
    }

    #[test]
    fn every_missing_field_is_reported_where_it_is_missing() {
        assert_eq!(
            decoded(
                r#"{"routes":[{"variants":[{},{"name":"b"},{"weight":1}],
                    "targeting":[{"header":"h"}],"stickiness":{"cookie":{}}},
                    {"name":"ok","variants":[{"weight":100}]}, 3]}"#
            ),
            [
                "routes[0].variants[0]: missing field `name`",
                "routes[0].variants[0]: missing field `weight`",
                "routes[0].variants[1]: missing field `weight`",
                "routes[0].variants[2]: missing field `name`",
                "routes[0].targeting[0]: missing field `name`",
                "routes[0].targeting[0]: missing field `variant`",
                "routes[0].stickiness.cookie: missing field `name`",
                "routes[0]: missing field `name`",
                "routes[1].variants[0]: missing field `name`",
                "routes[2]: must be an object",
            ]
        );
    }

    #[test]
    fn a_duplicate_key_is_refused_anywhere() {
        // Past 16 members, keys are checked with a hash set.
        let many: Vec<String> = (0..20).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let large = format!(r#"{{"extra":{{{},"k3":0}}}}"#, many.join(","));
        for (document, path) in [
            (large.as_str(), "extra.k3"),
            (r#"{"routes":[],"routes":[]}"#, "routes"),
            (r#"{"routes":[{"x":1,"x":1}]}"#, "routes[0].x"),
            (r#"{"extra":{"a":[{"b":1,"b":2}]}}"#, "extra.a[0].b"),
        ] {
            let errors = decoded(document);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with(&format!("{path}: duplicate key `")),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn numbers_decode_exactly_or_not_at_all() {
        let cookie = |max_age: &str| {
            decode(
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
        // serde_json reads an integer beyond u64, and `-0`, as floating point.
        assert_eq!(
            cookie("-0"),
            Err(
                "routes[0].stickiness.cookie.maxAge: invalid type: floating point `-0.0`, \
                 expected a non-negative integer"
                    .to_owned()
            )
        );
        assert_eq!(
            cookie("18446744073709551616"),
            Err(
                "routes[0].stickiness.cookie.maxAge: invalid type: floating point \
                 `18446744073709552000.0`, expected a non-negative integer"
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
                "routes[0].stickiness.cookie.maxAge: invalid type: floating point `1000.0`, \
                 expected a non-negative integer"
                    .to_owned()
            )
        );

        let weight = |w: &str| {
            decode(
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
            Err("$: invalid JSON: number out of range at line 1 column 61".to_owned())
        );
    }
}
