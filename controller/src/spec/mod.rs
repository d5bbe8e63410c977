//! The canary spec: the plugin configuration wrapped with what rendering the Istio resources
//! needs (names, the module, where the filter attaches, and each route's service and subsets).
//!
//! ```yaml
//! name: reviews-canary            # names the extension resource; VirtualService and
//! namespace: bookinfo             # DestinationRule are named <name>-<route>
//! module:
//!   url: oci://registry.example.com/canary-router:0.1.0   # oci://, https://, http://, file://
//!   sha256: <64 lowercase hex digits>
//! attachment:                     # exactly one of:
//!   selector: { matchLabels: { app: productpage } }
//!   # targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: web }]
//! gateways: [mesh]                # VirtualService gateways; default [mesh]
//! seal:                           # the secret of the decision values (`canaryctl seal`)
//!   current: <seal>               # written by the filter (as pluginConfig.seal)
//!   accept: [<seal>]              # also matched by the routes, during a rotation
//! lanes: true                     # the decision header reaches the applications, for them to
//!                                 # propagate; default: whether a route has trustIncoming
//! services:                       # one entry per route of pluginConfig, by route name
//!   reviews:
//!     host: reviews.bookinfo.svc.cluster.local
//!     port: 9080
//!     hosts: [reviews]            # VirtualService hosts; default [host]
//!     subsets:                    # one entry per variant: the pod labels of its subset
//!       v1: { version: v1 }
//! pluginConfig: { ... }           # the filter's configuration, as the filter reads it
//! ```
//!
//! Every error names its JSON path; errors in the plugin configuration are the filter's own,
//! under `pluginConfig`.

use std::collections::BTreeMap;

mod check;
mod errors;

use canary_filter::config::{self, PluginConfig};
use canary_filter::{ConfigError, ConfigErrors, RoutingTable};
use serde::Deserialize;
use serde_json::{Map, Value};

use check::{
    check_attachment, check_dns_label, check_gateways, check_module, check_routes, check_seal,
    check_services,
};
pub(crate) use check::{is_dns_label, is_dns_subdomain};
use errors::Errors;

/// The top-level fields of a canary spec.
pub const FIELDS: &[&str] = &[
    "name",
    "namespace",
    "module",
    "attachment",
    "gateways",
    "seal",
    "lanes",
    "services",
    "pluginConfig",
];

/// The VirtualService gateway name that stands for every sidecar in the mesh.
pub const MESH: &str = "mesh";

/// A validated canary spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub namespace: String,
    pub module: Module,
    pub attachment: Attachment,
    /// The VirtualService gateways, defaulted to `[mesh]`.
    pub gateways: Vec<String>,
    pub seal: Seal,
    /// Mesh lanes: the rendered routes let a sealed decision header through to the
    /// application, which propagates it to its own outbound calls. `lanes` in the spec, by
    /// default whether a route of the plugin configuration trusts incoming decisions.
    pub lanes: bool,
    /// By route name.
    pub services: BTreeMap<String, Service>,
    /// The plugin configuration as written, with `seal` set to the spec's current seal.
    pub plugin_config: Value,
    /// The plugin configuration as the filter decodes it (its seal is the current one).
    pub config: PluginConfig,
}

/// The seals of the decision values: the filter writes `current`; the rendered routes match
/// `current` and each of `accept`, so that a rotation never leaves a decided request without
/// its route.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seal {
    pub current: String,
    #[serde(default)]
    pub accept: Vec<String>,
}

impl Seal {
    /// Most seals accepted besides the current one.
    pub const MAX_ACCEPT: usize = 4;

    /// Every seal the routes match: the current one first.
    pub fn matched(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.as_str()).chain(self.accept.iter().map(String::as_str))
    }
}

/// Shows how many seals there are, never a seal.
impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("accept", &self.accept.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Module {
    pub url: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attachment {
    #[serde(default)]
    pub selector: Option<Selector>,
    #[serde(default)]
    pub target_refs: Option<Vec<TargetRef>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    #[serde(default)]
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// The destination service host.
    pub host: String,
    pub port: u64,
    /// The VirtualService hosts; `[host]` when absent.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// Pod labels by variant name.
    pub subsets: BTreeMap<String, BTreeMap<String, String>>,
}

impl Service {
    pub fn virtual_hosts(&self) -> Vec<String> {
        self.hosts
            .clone()
            .unwrap_or_else(|| vec![self.host.clone()])
    }
}

impl Spec {
    /// The decision header as the filter writes it (lowercase).
    pub fn decision_header(&self) -> String {
        self.config.decision_header.to_ascii_lowercase()
    }

    /// Name of the VirtualService and DestinationRule of `route`.
    pub fn resource_name(&self, route: &str) -> String {
        format!("{}-{route}", self.name)
    }

    /// Decodes and validates a canary spec, reporting every error with its JSON path.
    pub fn from_value(value: Value) -> Result<Spec, ConfigErrors> {
        let Value::Object(mut map) = value else {
            return Err(ConfigError::new("$", "a canary spec must be a mapping").into());
        };
        let mut errors = Errors::default();
        for key in map.keys() {
            if !FIELDS.contains(&key.as_str()) {
                errors.push(
                    key,
                    format!("unknown field; expected one of {}", FIELDS.join(", ")),
                );
            }
        }
        let name: Option<String> = errors.take(&mut map, "name");
        let namespace: Option<String> = errors.take(&mut map, "namespace");
        let module: Option<Module> = errors.take(&mut map, "module");
        let attachment: Option<Attachment> = errors.take(&mut map, "attachment");
        let gateways: Option<Vec<String>> = match map.remove("gateways") {
            Some(v) => errors.decode("gateways", v),
            None => Some(vec![MESH.to_owned()]),
        };
        let seal: Option<Seal> = errors.take(&mut map, "seal");
        let lanes: Option<bool> = map.remove("lanes").and_then(|v| errors.decode("lanes", v));
        // Written into the plugin configuration only when valid, so that an invalid current
        // seal is reported once, at `seal.current`.
        let current = seal.as_ref().and_then(|seal| {
            let valid = canary_filter::table::check_seal(&seal.current).is_ok();
            check_seal(&mut errors, seal);
            valid.then(|| seal.current.clone())
        });
        let raw_services = errors.take::<Map<String, Value>>(&mut map, "services");
        let declared: Vec<String> = raw_services
            .iter()
            .flat_map(|raw| raw.keys().cloned())
            .collect();
        let services = raw_services.map(|raw| {
            raw.into_iter()
                .filter_map(|(route, v)| {
                    let service = errors.decode(&format!("services.{route}"), v)?;
                    Some((route, service))
                })
                .collect::<BTreeMap<String, Service>>()
        });
        let mut plugin_config = map.remove("pluginConfig");
        if let Some(Value::Object(raw)) = &mut plugin_config {
            if raw.contains_key("seal") {
                errors.push(
                    "pluginConfig.seal",
                    "is written from the spec's seal.current; leave it out",
                );
            }
            if let Some(current) = current {
                raw.insert("seal".to_owned(), Value::String(current));
            }
        }
        let config = match &plugin_config {
            None => {
                errors.push("pluginConfig", "is required");
                None
            }
            Some(raw) => plugin(&mut errors, raw.clone()),
        };

        if let Some(name) = &name {
            check_dns_label(&mut errors, "name", name);
        }
        if let Some(namespace) = &namespace {
            check_dns_label(&mut errors, "namespace", namespace);
        }
        if let Some(module) = &module {
            check_module(&mut errors, module);
        }
        if let Some(attachment) = &attachment {
            check_attachment(&mut errors, attachment);
        }
        if let Some(gateways) = &gateways {
            check_gateways(&mut errors, gateways);
        }
        if let Some(services) = &services {
            check_services(&mut errors, services, name.as_deref());
            if let Some(config) = &config {
                check_routes(&mut errors, services, &declared, config);
            }
        }
        errors.into_result()?;
        match (
            name,
            namespace,
            module,
            attachment,
            gateways,
            seal,
            services,
            plugin_config,
            config,
        ) {
            (
                Some(name),
                Some(namespace),
                Some(module),
                Some(attachment),
                Some(gateways),
                Some(seal),
                Some(services),
                Some(plugin_config),
                Some(config),
            ) => Ok(Spec {
                lanes: lanes.unwrap_or_else(|| config.routes.iter().any(|r| r.trust_incoming)),
                name,
                namespace,
                module,
                attachment,
                gateways,
                seal,
                services,
                plugin_config,
                config,
            }),
            // Every missing part has pushed an error above.
            _ => Err(ConfigError::new("$", "incomplete canary spec").into()),
        }
    }
}

/// Decodes and compiles the plugin configuration with the filter's own parser, its errors put
/// under `pluginConfig`. Returns the decoded form when the types decode, even if compiling
/// finds errors, so the cross-checks can still run.
fn plugin(errors: &mut Errors, raw: Value) -> Option<PluginConfig> {
    match config::decode(raw.to_string().as_bytes()) {
        Ok(decoded) => {
            if let Err(e) = RoutingTable::try_from(&decoded) {
                errors.extend_under("pluginConfig", e);
            }
            Some(decoded)
        }
        Err(e) => {
            errors.extend_under("pluginConfig", e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "name": "reviews-canary",
            "namespace": "bookinfo",
            "module": { "url": "oci://example.com/canary:1", "sha256": "a".repeat(64) },
            "attachment": { "selector": { "matchLabels": { "app": "productpage" } } },
            "seal": { "current": "Cq2zq1Rj0m4sZpV9yXb3wT", "accept": ["0123456789abcdef0123456789abcdef"] },
            "services": {
                "reviews": {
                    "host": "reviews.bookinfo.svc.cluster.local",
                    "port": 9080,
                    "subsets": { "v1": { "version": "v1" }, "v2": { "version": "v2" } }
                }
            },
            "pluginConfig": {
                "routes": [{
                    "name": "reviews",
                    "variants": [ { "name": "v1", "weight": 90 }, { "name": "v2", "weight": 10 } ]
                }]
            }
        })
    }

    fn errors(value: Value) -> Vec<String> {
        match Spec::from_value(value) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn accepts_a_valid_spec_and_defaults_gateways_to_mesh() {
        let spec = Spec::from_value(valid()).map_err(|e| e.to_string());
        let spec = spec
            .as_ref()
            .map(|s| (s.gateways.clone(), s.decision_header()));
        assert_eq!(
            spec,
            Ok((vec!["mesh".to_owned()], "x-canary-variant".to_owned()))
        );
    }

    #[test]
    fn plugin_errors_are_prefixed() {
        let mut v = valid();
        v["pluginConfig"]["routes"][0]["variants"][1]["weight"] = json!(120);
        let errs = errors(v);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("pluginConfig.routes[0].variants[1].weight: ")),
            "{errs:?}"
        );
    }

    #[test]
    fn collects_errors_from_every_part() {
        let mut v = valid();
        v["name"] = json!("Bad_Name");
        v["module"]["sha256"] = json!("abc");
        v["services"]["reviews"]["port"] = json!(0);
        v["extra"] = json!(1);
        let errs = errors(v);
        for want in [
            "extra: ",
            "name: ",
            "module.sha256: ",
            "services.reviews.port: ",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "{want} in {errs:?}"
            );
        }
    }

    #[test]
    fn lanes_follow_the_routes_unless_the_spec_says() {
        let lanes = |edit: &dyn Fn(&mut Value)| {
            let mut v = valid();
            edit(&mut v);
            Spec::from_value(v)
                .map(|s| s.lanes)
                .map_err(|e| e.to_string())
        };
        let trusting =
            |v: &mut Value| v["pluginConfig"]["routes"][0]["trustIncoming"] = json!(true);
        assert_eq!(
            lanes(&|_| {}),
            Ok(false),
            "no route trusts incoming decisions"
        );
        assert_eq!(
            lanes(&trusting),
            Ok(true),
            "a route trusts incoming decisions"
        );
        assert_eq!(
            lanes(&|v| v["lanes"] = json!(true)),
            Ok(true),
            "the first hop of a lane"
        );
        let last_hop = |v: &mut Value| {
            trusting(v);
            v["lanes"] = json!(false);
        };
        assert_eq!(lanes(&last_hop), Ok(false), "the last hop of a lane");
        assert_eq!(
            lanes(&|v| v["lanes"] = json!("yes")),
            Err("lanes: invalid type: string \"yes\", expected a boolean".to_owned())
        );
    }

    #[test]
    fn the_seal_is_required_checked_and_written_into_the_plugin_configuration() {
        let spec = Spec::from_value(valid()).map_err(|e| e.to_string());
        let spec = spec.as_ref().expect("valid");
        assert_eq!(spec.plugin_config["seal"], "Cq2zq1Rj0m4sZpV9yXb3wT");
        assert_eq!(spec.config.seal.as_deref(), Some("Cq2zq1Rj0m4sZpV9yXb3wT"));
        assert_eq!(
            spec.seal.matched().collect::<Vec<_>>(),
            ["Cq2zq1Rj0m4sZpV9yXb3wT", "0123456789abcdef0123456789abcdef"]
        );
        assert!(!format!("{:?}", spec.seal).contains("Cq2zq1Rj0m4sZpV9yXb3wT"));

        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Edit, Vec<&str>)> =
            vec![
            (
                "no seal",
                Box::new(|v| {
                    v.as_object_mut().map(|m| m.remove("seal"));
                }),
                vec!["seal: is required"],
            ),
            (
                "short current",
                Box::new(|v| v["seal"]["current"] = json!("abc")),
                vec!["seal.current: is too short: 3 hexadecimal digits carry fewer than 128 bits; \
                      at least 32 are needed (`canaryctl seal` makes one)"],
            ),
            (
                "bad accepted, duplicate, current accepted",
                Box::new(|v| {
                    v["seal"]["accept"] = json!([
                        "x.y",
                        "0123456789abcdef0123456789abcdef",
                        "0123456789abcdef0123456789abcdef",
                        "Cq2zq1Rj0m4sZpV9yXb3wT"
                    ])
                }),
                vec![
                    "seal.accept[0]: must be 22 to 128 characters of A-Z, a-z, 0-9, '-' and '_' \
                     (the seal is not shown)",
                    "seal.accept[2]: duplicate of seal.accept[1]",
                    "seal.accept[3]: is the current seal",
                ],
            ),
            (
                "seal in the plugin configuration",
                Box::new(|v| v["pluginConfig"]["seal"] = json!("Cq2zq1Rj0m4sZpV9yXb3wT")),
                vec!["pluginConfig.seal: is written from the spec's seal.current; leave it out"],
            ),
            (
                "unknown seal field",
                Box::new(|v| v["seal"]["next"] = json!("x")),
                vec!["seal.next: unknown field `next`, expected `current` or `accept`"],
            ),
        ];
        for (label, edit, want) in cases {
            let mut v = valid();
            edit(&mut v);
            assert_eq!(errors(v), want, "{label}");
        }
    }
}
