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

use std::collections::{BTreeMap, HashMap};

use canary_filter::config::{self, PluginConfig};
use canary_filter::{ConfigError, ConfigErrors, RoutingTable};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The top-level fields of a canary spec.
pub const FIELDS: &[&str] = &[
    "name",
    "namespace",
    "module",
    "attachment",
    "gateways",
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
    /// By route name.
    pub services: BTreeMap<String, Service>,
    /// The plugin configuration exactly as written.
    pub plugin_config: Value,
    /// The plugin configuration as the filter decodes it.
    pub config: PluginConfig,
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
        let plugin_config = map.remove("pluginConfig");
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
                Some(services),
                Some(plugin_config),
                Some(config),
            ) => Ok(Spec {
                name,
                namespace,
                module,
                attachment,
                gateways,
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
    match config::decode(raw) {
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

fn check_module(errors: &mut Errors, module: &Module) {
    const SCHEMES: [&str; 4] = ["oci://", "https://", "http://", "file://"];
    match SCHEMES.iter().find(|s| module.url.starts_with(**s)) {
        Some(scheme) if module.url.len() > scheme.len() => {}
        _ => errors.push(
            "module.url",
            format!(
                "{:?} must be a URL starting with {}",
                module.url,
                SCHEMES.join(", ")
            ),
        ),
    }
    let hex = module
        .sha256
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if module.sha256.len() != 64 || !hex {
        errors.push(
            "module.sha256",
            format!(
                "{:?} must be 64 lowercase hexadecimal digits",
                module.sha256
            ),
        );
    }
}

fn check_attachment(errors: &mut Errors, attachment: &Attachment) {
    match (&attachment.selector, &attachment.target_refs) {
        (None, None) => errors.push("attachment", "needs one of selector, targetRefs"),
        (Some(_), Some(_)) => errors.push(
            "attachment",
            "has both selector and targetRefs; use exactly one",
        ),
        (Some(selector), None) => {
            let path = "attachment.selector.matchLabels";
            if selector.match_labels.is_empty() {
                errors.push(path, "must not be empty");
            }
            check_labels(errors, path, &selector.match_labels);
        }
        (None, Some(refs)) => {
            let path = "attachment.targetRefs";
            if refs.is_empty() || refs.len() > 16 {
                errors.push(path, "must list 1 to 16 references");
            }
            for (i, r) in refs.iter().enumerate() {
                if let Some(group) = &r.group {
                    if !group.is_empty() && !is_dns_subdomain(group) {
                        errors.push(
                            format!("{path}[{i}].group"),
                            format!("{group:?} is not an API group"),
                        );
                    }
                }
                let kind_ok = r.kind.len() <= 63
                    && r.kind.starts_with(|c: char| c.is_ascii_alphabetic())
                    && r.kind
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !kind_ok {
                    errors.push(
                        format!("{path}[{i}].kind"),
                        format!("{:?} is not a resource kind", r.kind),
                    );
                }
                if !is_dns_subdomain(&r.name) {
                    errors.push(
                        format!("{path}[{i}].name"),
                        format!("{:?} is not a Kubernetes resource name", r.name),
                    );
                }
            }
        }
    }
}

fn check_gateways(errors: &mut Errors, gateways: &[String]) {
    if gateways.is_empty() {
        errors.push(
            "gateways",
            "must not be empty (leave it out for [mesh], the sidecars)",
        );
    }
    let mut seen = HashMap::new();
    for (i, gateway) in gateways.iter().enumerate() {
        let path = format!("gateways[{i}]");
        let (namespace, name) = gateway.split_once('/').unwrap_or(("", gateway));
        let valid = gateway == MESH
            || (is_dns_subdomain(name) && (namespace.is_empty() || is_dns_label(namespace)));
        if !valid {
            errors.push(
                &path,
                format!("{gateway:?} must be \"mesh\" or a Gateway as NAME or NAMESPACE/NAME"),
            );
        }
        if let Some(first) = seen.insert(gateway.as_str(), i) {
            errors.push(path, format!("duplicate of gateways[{first}]"));
        }
    }
}

fn check_services(errors: &mut Errors, services: &BTreeMap<String, Service>, name: Option<&str>) {
    let mut hosts: HashMap<&str, &str> = HashMap::new();
    for (route, service) in services {
        let path = format!("services.{route}");
        if !is_host(&service.host) || service.host.contains('*') {
            errors.push(
                format!("{path}.host"),
                format!(
                    "{:?} is not a service host name (no scheme, port or wildcard)",
                    service.host
                ),
            );
        }
        if let Some(other) = hosts.insert(&service.host, route) {
            errors.push(
                format!("{path}.host"),
                format!(
                    "{:?} is also the host of services.{other}; a host has one DestinationRule",
                    service.host
                ),
            );
        }
        if !(1..=65535).contains(&service.port) {
            errors.push(
                format!("{path}.port"),
                format!("must be between 1 and 65535, not {}", service.port),
            );
        }
        if let Some(virtual_hosts) = &service.hosts {
            if virtual_hosts.is_empty() {
                errors.push(
                    format!("{path}.hosts"),
                    "must not be empty (leave it out for [host])",
                );
            }
            for (i, host) in virtual_hosts.iter().enumerate() {
                if !is_host(host) {
                    errors.push(
                        format!("{path}.hosts[{i}]"),
                        format!("{host:?} is not a host name"),
                    );
                }
            }
        }
        for (variant, labels) in &service.subsets {
            let p = format!("{path}.subsets.{variant}");
            if labels.is_empty() {
                errors.push(&p, "must list the pod labels of the subset");
            }
            check_labels(errors, &p, labels);
        }
        if let Some(name) = name {
            let resource = format!("{name}-{route}");
            if !is_dns_subdomain(&resource) {
                errors.push(
                    &path,
                    format!("the resource name {resource:?} is not a valid Kubernetes name"),
                );
            }
        }
    }
}

/// Every service entry names a route and labels each of its variants; every route has an entry
/// (`declared`: the entries present, even those that did not decode).
fn check_routes(
    errors: &mut Errors,
    services: &BTreeMap<String, Service>,
    declared: &[String],
    config: &PluginConfig,
) {
    let routes: HashMap<&str, _> = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), (i, r)))
        .collect();
    for (route, service) in services {
        let Some((_, r)) = routes.get(route.as_str()) else {
            errors.push(
                format!("services.{route}"),
                format!("no route named {route:?} in pluginConfig.routes"),
            );
            continue;
        };
        for variant in service.subsets.keys() {
            if !r.variants.iter().any(|v| &v.name == variant) {
                errors.push(
                    format!("services.{route}.subsets.{variant}"),
                    format!("route {route:?} has no variant {variant:?}"),
                );
            }
        }
        for variant in &r.variants {
            if !service.subsets.contains_key(&variant.name) {
                errors.push(
                    format!("services.{route}.subsets"),
                    format!("missing the labels of variant {:?}", variant.name),
                );
            }
        }
    }
    for (i, r) in config.routes.iter().enumerate() {
        if !declared.contains(&r.name) {
            errors.push(
                "services",
                format!(
                    "missing an entry for route {:?} (pluginConfig.routes[{i}])",
                    r.name
                ),
            );
        }
    }
}

/// Kubernetes label keys (`[prefix/]name`) and values.
fn check_labels(errors: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        let (prefix, name) = key.split_once('/').unwrap_or(("", key));
        if !(prefix.is_empty() || is_dns_subdomain(prefix))
            || !is_label_value(name)
            || name.is_empty()
        {
            errors.push(
                format!("{path}.{key}"),
                format!("{key:?} is not a label key"),
            );
        }
        if !is_label_value(value) {
            errors.push(
                format!("{path}.{key}"),
                format!(
                    "{value:?} is not a label value: at most 63 of a-z, A-Z, 0-9, '-', '_', '.', \
                     starting and ending alphanumeric"
                ),
            );
        }
    }
}

fn check_dns_label(errors: &mut Errors, path: &str, name: &str) {
    if !is_dns_label(name) {
        errors.push(
            path,
            format!(
                "{name:?} must be a DNS label: at most 63 of a-z, 0-9 and '-', starting and \
                 ending alphanumeric"
            ),
        );
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// A host name as Istio takes it in `hosts`: a name, `*.suffix` or `*`, without scheme or port.
fn is_host(s: &str) -> bool {
    let name = s.strip_prefix("*.").unwrap_or(s);
    s == "*"
        || (!name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
}

/// Errors collected in document order.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(path, reason));
    }

    /// The filter's errors, their paths put under `prefix`.
    fn extend_under(&mut self, prefix: &str, errors: ConfigErrors) {
        for e in errors.0 {
            let path = if e.path == "$" {
                prefix.to_owned()
            } else {
                format!("{prefix}.{}", e.path)
            };
            self.push(path, e.reason);
        }
    }

    /// Removes `key` from `map` and decodes it; a missing key is an error.
    fn take<T: DeserializeOwned>(&mut self, map: &mut Map<String, Value>, key: &str) -> Option<T> {
        match map.remove(key) {
            Some(value) => self.decode(key, value),
            None => {
                self.push(key, "is required");
                None
            }
        }
    }

    fn decode<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let full = if inner == "." {
                    path.to_owned()
                } else {
                    format!("{path}.{inner}")
                };
                self.push(full, e.inner().to_string());
                None
            }
        }
    }

    fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.0))
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
}
