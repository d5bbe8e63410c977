//! The checks a canary spec's parts get once decoded: Kubernetes names and labels, the module,
//! the attachment, the gateways, and the cross-checks between services and routes.

use std::collections::{BTreeMap, HashMap};

use canary_filter::config::PluginConfig;

use super::errors::Errors;
use super::{Attachment, Module, Seal, Service, MESH};

pub(super) fn check_module(errors: &mut Errors, module: &Module) {
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

/// Each seal as the filter checks it (never quoted), every one different.
pub(super) fn check_seal(errors: &mut Errors, seal: &Seal) {
    if let Err(reason) = canary_filter::table::check_seal(&seal.current) {
        errors.push("seal.current", reason);
    }
    if seal.accept.len() > Seal::MAX_ACCEPT {
        errors.push(
            "seal.accept",
            format!(
                "lists {} seals; at most {} (finish a rotation before starting the next)",
                seal.accept.len(),
                Seal::MAX_ACCEPT
            ),
        );
    }
    for (i, accepted) in seal.accept.iter().enumerate() {
        let path = format!("seal.accept[{i}]");
        if let Err(reason) = canary_filter::table::check_seal(accepted) {
            errors.push(&path, reason);
        }
        if *accepted == seal.current {
            errors.push(&path, "is the current seal");
        } else if let Some(first) = seal.accept.iter().position(|a| a == accepted) {
            if first < i {
                errors.push(&path, format!("duplicate of seal.accept[{first}]"));
            }
        }
    }
}

pub(super) fn check_attachment(errors: &mut Errors, attachment: &Attachment) {
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

pub(super) fn check_gateways(errors: &mut Errors, gateways: &[String]) {
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

pub(super) fn check_services(
    errors: &mut Errors,
    services: &BTreeMap<String, Service>,
    name: Option<&str>,
) {
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
pub(super) fn check_routes(
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

pub(super) fn check_dns_label(errors: &mut Errors, path: &str, name: &str) {
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

/// A DNS-1123 label, as Kubernetes names a namespace.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain, as Kubernetes names most objects (a ServiceAccount among them).
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
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
