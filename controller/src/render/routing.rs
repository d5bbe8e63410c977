//! VirtualService and DestinationRule of one route: the decision header picks the subset.

use canary_filter::config::RouteConfig;
use serde_json::{json, Value};

use super::metadata;
use crate::spec::{Service, Spec};

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

/// One HTTP route per variant matching `<decisionHeader>: <variant>`, then a default route to the
/// baseline for requests the filter did not decide.
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
    let mut http: Vec<Value> = route
        .variants
        .iter()
        .map(|v| {
            json!({
                "name": format!("variant-{}", v.name),
                "match": [{ "headers": { header.as_str(): { "exact": v.name } } }],
                "route": destination(&v.name),
            })
        })
        .collect();
    if let Some(baseline) = route.variants.first() {
        http.push(json!({
            "name": "default",
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
