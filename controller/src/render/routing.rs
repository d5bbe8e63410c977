//! VirtualService and DestinationRule of one route: the sealed decision header picks the subset.

use canary_filter::config::RouteConfig;
use serde_json::{json, Map, Value};

use super::metadata;
use crate::spec::{Service, Spec, MESH};

/// Subsets named after the variants, selecting pods by the spec's labels.
pub fn destination_rule(spec: &Spec, route: &RouteConfig, service: &Service) -> Value {
    let subsets: Vec<Value> = route
        .variants
        .iter()
        .map(|v| {
            json!({
                "name": v.name,
                "labels": service.subsets.get(&v.name).cloned().unwrap_or_default(),
            })
        })
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": metadata(spec, &spec.resource_name(&route.name)),
        "spec": {
            "host": service.host,
            "subsets": subsets,
        },
    })
}

/// One HTTP route per variant matching `<decisionHeader>: <variant>.<seal>` for every seal the
/// spec accepts, only from the sources the filter runs on; then a default route to the baseline
/// for every other request. Each route removes the decision header before the request leaves
/// for the upstream, so that no application sees a seal; with lanes, the variants' routes keep
/// it, so that the application can propagate it, and only the default route removes it.
pub fn virtual_service(spec: &Spec, route: &RouteConfig, service: &Service) -> Value {
    let header = spec.decision_header();
    let destination = |subset: &str| {
        json!([{
            "destination": {
                "host": service.host,
                "subset": subset,
                "port": { "number": service.port },
            },
        }])
    };
    let remove = json!({ "request": { "remove": [header] } });
    let sources = sources(spec);
    let mut http: Vec<Value> = route
        .variants
        .iter()
        .map(|v| {
            let matches: Vec<Value> = spec
                .seal
                .matched()
                .map(|seal| {
                    let value = format!("{}.{seal}", v.name);
                    let mut m = Map::new();
                    m.insert(
                        "headers".into(),
                        json!({ header.as_str(): { "exact": value } }),
                    );
                    m.extend(sources.clone());
                    Value::Object(m)
                })
                .collect();
            let mut http = Map::new();
            http.insert("name".into(), json!(format!("variant-{}", v.name)));
            http.insert("match".into(), Value::Array(matches));
            if !spec.lanes {
                http.insert("headers".into(), remove.clone());
            }
            http.insert("route".into(), destination(&v.name));
            Value::Object(http)
        })
        .collect();
    if let Some(baseline) = route.variants.first() {
        http.push(json!({
            "name": "default",
            "headers": remove,
            "route": destination(&baseline.name),
        }));
    }
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": metadata(spec, &spec.resource_name(&route.name)),
        "spec": {
            "hosts": service.virtual_hosts(),
            "gateways": spec.gateways,
            "http": http,
        },
    })
}

/// The match conditions that confine a header route to the proxies the filter runs on: the
/// workloads of a `selector` (`sourceLabels`), or the gateways of a `targetRefs` attachment
/// (the VirtualService's gateways other than `mesh`).
fn sources(spec: &Spec) -> Map<String, Value> {
    let mut conditions = Map::new();
    if let Some(selector) = &spec.attachment.selector {
        conditions.insert("sourceLabels".into(), json!(selector.match_labels));
    } else if spec.attachment.target_refs.is_some() {
        let gateways: Vec<&String> = spec.gateways.iter().filter(|g| *g != MESH).collect();
        if !gateways.is_empty() {
            conditions.insert("gateways".into(), json!(gateways));
        }
    }
    conditions
}
