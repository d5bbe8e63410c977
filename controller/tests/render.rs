//! `canaryctl render`: every document validates against the Istio CRDs (the EnvoyExtensionPolicy
//! against Envoy Gateway's) with no unknown field,
//! the routing it sets up sends each decision to the right subset, the filter resource carries
//! the spec's plugin configuration unchanged, and `envoyfilter/istio/` is what render produces.

#[path = "support/schema.rs"]
mod schema;

mod crds;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use canary_filter::{RequestHeaders, RoutingTable};
use canaryctl::args::{Api, ModuleKind};
use canaryctl::render;
use canaryctl::spec::Spec;
use serde_json::{json, Value};

use crds::Crds;

const EXAMPLES: [&str; 2] = ["bookinfo-reviews", "web-gateway"];
const APIS: [(Api, &str); 3] = [
    (Api::Wasmplugin, "wasmplugin"),
    (Api::Trafficextension, "trafficextension"),
    (Api::Envoyfilter, "envoyfilter"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example_value(name: &str) -> Value {
    let path = repo().join(format!("examples/{name}.yaml"));
    canaryctl::document::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn example(name: &str) -> Spec {
    Spec::from_value(example_value(name)).unwrap_or_else(|e| panic!("{name}:\n{e}"))
}

fn rendered(spec: &Spec, api: Api) -> Vec<Value> {
    render::resources(spec, api, None).expect("render")
}

/// The web-gateway example attached by targetRefs, to the gateway and the mesh.
fn by_target_refs() -> Spec {
    let mut by_ref = example_value("web-gateway");
    by_ref["attachment"] = json!({ "targetRefs": [
        { "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web" },
    ] });
    by_ref["gateways"] = json!(["istio-system/web", "mesh"]);
    Spec::from_value(by_ref).expect("valid")
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "one {kind} in {docs:#?}");
    found[0]
}

#[test]
fn every_document_validates_against_the_istio_crds() {
    let crds = Crds::load();
    // Also a Gateway API attachment, bound to the gateway and the mesh.
    let mut by_ref = example_value("web-gateway");
    by_ref["attachment"] = json!({ "targetRefs": [
        { "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web" },
    ] });
    by_ref["gateways"] = json!(["istio-system/web", "mesh"]);
    let by_ref = Spec::from_value(by_ref).expect("valid");
    let specs = EXAMPLES.map(|name| (name, example(name)));
    for (name, spec) in specs.iter().chain([("targetRefs", by_ref.clone())].iter()) {
        for (api, label) in APIS {
            let docs = rendered(spec, api);
            assert_eq!(docs.len(), 3, "{name} --api {label}: extension, DR, VS");
            for doc in &docs {
                let errors = crds.check(doc);
                assert!(
                    errors.is_empty(),
                    "{name} --api {label}, {}:\n{}",
                    doc["kind"],
                    errors.join("\n")
                );
            }
        }
    }
    let ef = one(&rendered(&by_ref, Api::Envoyfilter), "EnvoyFilter").clone();
    let contexts: Vec<&Value> = ef["spec"]["configPatches"]
        .as_array()
        .expect("patches")
        .iter()
        .filter_map(|p| p.pointer("/match/context"))
        .collect();
    assert_eq!(
        contexts,
        [&json!("GATEWAY"), &json!("SIDECAR_OUTBOUND")],
        "both contexts"
    );
    assert_eq!(ef["spec"]["targetRefs"][0]["kind"], "Gateway");
}

/// The CRD check itself must catch what the API server would reject or prune.
#[test]
fn the_crd_check_rejects_unknown_fields_bad_values_and_broken_rules() {
    let crds = Crds::load();
    let spec = example("bookinfo-reviews");
    let docs = rendered(&spec, Api::Wasmplugin);
    let plugin = one(&docs, "WasmPlugin");
    let vs = one(&docs, "VirtualService");
    let te = one(&rendered(&spec, Api::Trafficextension), "TrafficExtension").clone();
    let ef = one(&rendered(&spec, Api::Envoyfilter), "EnvoyFilter").clone();

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown spec field",
            with(plugin, "/spec/failOpen", json!(true)),
            "spec.failOpen: unknown field",
        ),
        (
            "unknown nested field",
            with(vs, "/spec/http/0/route/0/destination/weight", json!(1)),
            "spec.http[0].route[0].destination.weight: unknown field",
        ),
        (
            "bad enum",
            with(plugin, "/spec/phase", json!("ROUTING")),
            "spec.phase: Unsupported value",
        ),
        (
            "bad pattern",
            with(plugin, "/spec/sha256", json!("ABC")),
            "spec.sha256: Invalid value",
        ),
        (
            "wrong type",
            with(vs, "/spec/hosts", json!("reviews")),
            "spec.hosts: Invalid value",
        ),
        (
            "two string matches",
            with(
                vs,
                "/spec/http/0/match/0/headers/x-canary-variant/prefix",
                json!("v"),
            ),
            "spec.http[0].match[0].headers.x-canary-variant: Invalid value",
        ),
        (
            "selector and targetRefs",
            with(
                plugin,
                "/spec/targetRefs",
                json!([{"kind": "Gateway", "name": "gw"}]),
            ),
            "spec: Invalid value: \"object\": only one of targetRefs or selector can be set",
        ),
        (
            "wildcard label",
            with(plugin, "/spec/selector/matchLabels/app", json!("*")),
            "spec.selector.matchLabels.app: Invalid value: \"string\": wildcard not allowed",
        ),
        (
            "bad url scheme",
            with(&te, "/spec/wasm/url", json!("ftp://x/y.wasm")),
            "spec.wasm.url: Invalid value: \"string\": url must have schema",
        ),
        (
            "too short a timeout",
            with(vs, "/spec/http/0/timeout", json!("0s")),
            "spec.http[0].timeout: Invalid value: \"string\": must be a valid duration greater than 1ms",
        ),
        (
            "missing required",
            without(&te, "/spec/wasm/url"),
            "spec.wasm.url: Required value",
        ),
        (
            "unknown apply target",
            with(&ef, "/spec/configPatches/0/applyTo", json!("WASM")),
            "spec.configPatches[0].applyTo: Unsupported value",
        ),
        (
            "unknown kind",
            with(plugin, "/kind", json!("WasmFilter")),
            "<root>: no served CRD version",
        ),
        (
            "unserved version",
            with(plugin, "/apiVersion", json!("extensions.istio.io/v1")),
            "<root>: no served CRD version",
        ),
        (
            "unknown metadata field",
            with(plugin, "/metadata/uid", json!("x")),
            "metadata.uid: unknown field",
        ),
    ];
    for (label, doc, want) in cases {
        let errors = crds.check(&doc);
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "{label}: want {want:?} in {errors:#?}"
        );
    }
    // A rule that cannot be evaluated refuses the resource, naming the rule.
    let errors = crds.check(&with(vs, "/spec/http/0/timeout", json!("soon")));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("spec.http[0].timeout: ")
                && e.ends_with("evaluating rule: duration(self) >= duration('1ms')")),
        "{errors:#?}"
    );
    let errors = crds.check(&with(vs, "/spec/http/0/timeout", json!("1.5s")));
    assert!(errors.is_empty(), "a valid timeout: {errors:#?}");
}

fn with(doc: &Value, pointer: &str, value: Value) -> Value {
    let mut doc = doc.clone();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let target = doc.pointer_mut(parent).expect("parent exists");
    match target {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        other => panic!("{parent} is not an object: {other}"),
    }
    doc
}

fn without(doc: &Value, pointer: &str) -> Value {
    let mut doc = doc.clone();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    doc.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove(key))
        .expect("field exists");
    doc
}

#[test]
fn virtual_service_sends_each_decision_to_its_subset_and_the_rest_to_the_baseline() {
    for name in EXAMPLES {
        let spec = example(name);
        let docs = rendered(&spec, Api::Wasmplugin);
        for route in &spec.config.routes {
            let service = &spec.services[&route.name];
            let vs = of_kind(&docs, "VirtualService")
                .into_iter()
                .find(|d| d["metadata"]["name"] == spec.resource_name(&route.name))
                .unwrap_or_else(|| panic!("{name}: VirtualService of {}", route.name));
            assert_eq!(
                vs["spec"]["gateways"],
                json!(spec.gateways),
                "{name}: gateways"
            );
            assert_eq!(
                vs["spec"]["hosts"],
                json!(service.virtual_hosts()),
                "{name}: hosts"
            );
            let http = vs["spec"]["http"].as_array().expect("http routes");
            assert_eq!(
                http.len(),
                route.variants.len() + 1,
                "{name}: one per variant + default"
            );
            let destination = |subset: &str| {
                json!([{ "destination": {
                    "host": service.host, "subset": subset, "port": { "number": service.port },
                } }])
            };
            let sources = json!(
                spec.attachment
                    .selector
                    .as_ref()
                    .expect("both examples attach by selector")
                    .match_labels
            );
            let remove = json!({ "request": { "remove": ["x-canary-variant"] } });
            for (entry, variant) in http.iter().zip(&route.variants) {
                let sealed = format!("{}.{}", variant.name, spec.seal.current);
                assert_eq!(
                    entry["match"],
                    json!([{
                        "headers": { "x-canary-variant": { "exact": sealed } },
                        "sourceLabels": sources,
                    }]),
                    "{name}: match of {}: the sealed value, from the filter's workloads only",
                    variant.name
                );
                assert_eq!(
                    entry["headers"], remove,
                    "{name}: {} removes the decision header before the upstream",
                    variant.name
                );
                assert_eq!(
                    entry["route"],
                    destination(&variant.name),
                    "{name}: {}",
                    variant.name
                );
            }
            let default = http.last().expect("default route");
            assert!(
                default.get("match").is_none(),
                "{name}: default matches everything"
            );
            assert_eq!(default["headers"], remove, "{name}: default removes it too");
            assert_eq!(
                default["route"],
                destination(&route.variants[0].name),
                "{name}: default"
            );
        }
    }
}

#[test]
fn destination_rule_subsets_carry_the_spec_labels() {
    let cases = [
        (
            "bookinfo-reviews",
            "reviews",
            "v2",
            json!({ "version": "v2" }),
        ),
        (
            "web-gateway",
            "web",
            "canary",
            json!({ "app": "web", "track": "canary" }),
        ),
    ];
    for (name, route, variant, labels) in cases {
        let spec = example(name);
        let docs = rendered(&spec, Api::Wasmplugin);
        let dr = one(&docs, "DestinationRule");
        assert_eq!(
            dr["spec"]["host"], spec.services[route].host,
            "{name}: host"
        );
        let subsets = dr["spec"]["subsets"].as_array().expect("subsets");
        let names: Vec<&str> = subsets.iter().filter_map(|s| s["name"].as_str()).collect();
        let variants: Vec<&str> = spec.config.routes[0]
            .variants
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, variants, "{name}: a subset per variant, in order");
        let subset = subsets
            .iter()
            .find(|s| s["name"] == variant)
            .expect("subset");
        assert_eq!(subset["labels"], labels, "{name}: labels of {variant}");
    }
}

#[test]
fn the_filter_resource_carries_the_plugin_configuration_unchanged() {
    for name in EXAMPLES {
        let spec = example(name);
        let mut written = example_value(name)["pluginConfig"].clone();
        written["seal"] = json!(spec.seal.current);
        let carried = [
            (
                Api::Wasmplugin,
                one(&rendered(&spec, Api::Wasmplugin), "WasmPlugin")["spec"]["pluginConfig"]
                    .clone(),
            ),
            (
                Api::Trafficextension,
                one(&rendered(&spec, Api::Trafficextension), "TrafficExtension")["spec"]["wasm"]
                    ["pluginConfig"]
                    .clone(),
            ),
            (
                Api::Envoyfilter,
                envoy_filter_configuration(one(&rendered(&spec, Api::Envoyfilter), "EnvoyFilter")),
            ),
        ];
        for (api, config) in carried {
            assert_eq!(
                config, written,
                "{name} {api:?}: pluginConfig as written, with the current seal"
            );
            let parsed = canary_filter::parse(config.to_string().as_bytes());
            assert!(
                parsed.is_ok(),
                "{name} {api:?}: the filter's parser: {:?}",
                parsed.err()
            );
        }
    }
}

/// `--module-kind dynamic`: the EnvoyFilter delivers the dynamic module's `DynamicModuleFilter`
/// over ECDS with the plugin configuration as its `filter_config`, and the EnvoyExtensionPolicy
/// runs the module registered as `canary-router` with it; each validates against its CRD.
#[test]
fn the_dynamic_module_resources_validate_and_carry_the_plugin_configuration() {
    let crds = Crds::load();
    for spec in [example("bookinfo-reviews"), by_target_refs()] {
        let docs =
            render::resources(&spec, Api::Envoyfilter, Some(ModuleKind::Dynamic)).expect("render");
        assert_eq!(docs.len(), 3, "extension, DR, VS");
        for doc in &docs {
            let errors = crds.check(doc);
            assert!(errors.is_empty(), "{}:\n{}", doc["kind"], errors.join("\n"));
        }
        let ef = one(&docs, "EnvoyFilter");
        let extension = ef
            .pointer("/spec/configPatches/0/patch/value")
            .expect("the EXTENSION_CONFIG patch");
        assert_eq!(
            extension["typed_config"]["@type"],
            canaryctl::ecds::DYNAMIC_MODULE
        );
        assert_eq!(
            extension["typed_config"]["dynamic_module_config"]["name"],
            "canary_router"
        );
        assert_eq!(extension["typed_config"]["filter_name"], "canary");
        let config = extension["typed_config"]["filter_config"]["value"]
            .as_str()
            .expect("filter_config StringValue");
        let config: Value = serde_json::from_str(config).expect("JSON");
        assert_eq!(config, spec.plugin_config);
        let type_urls =
            &ef["spec"]["configPatches"][1]["patch"]["value"]["config_discovery"]["type_urls"];
        assert_eq!(type_urls, &json!([canaryctl::ecds::DYNAMIC_MODULE]));
    }

    let spec = by_target_refs();
    let docs = rendered(&spec, Api::Envoyextensionpolicy);
    assert_eq!(docs.len(), 1, "the policy alone: {docs:#?}");
    let policy = one(&docs, "EnvoyExtensionPolicy");
    let errors = crds.check(policy);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert_eq!(
        policy["spec"]["dynamicModule"],
        json!([{ "name": "canary-router", "filterName": "canary", "config": spec.plugin_config }])
    );
    assert_eq!(
        policy["spec"]["targetRefs"],
        json!([{ "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web" }])
    );
    let parsed = canary_filter::parse(
        policy["spec"]["dynamicModule"][0]["config"]
            .to_string()
            .as_bytes(),
    );
    assert!(parsed.is_ok(), "{:?}", parsed.err());

    // The CRD check catches what Envoy Gateway's API server would refuse.
    for (label, doc, want) in [
        (
            "a module name Envoy Gateway refuses",
            with(policy, "/spec/dynamicModule/0/name", json!("canary_router")),
            "spec.dynamicModule[0].name: Invalid value",
        ),
        (
            "an unknown field",
            with(policy, "/spec/dynamicModule/0/metricsNamespace", json!("x")),
            "spec.dynamicModule[0].metricsNamespace: unknown field",
        ),
        (
            "a reference without its group",
            without(policy, "/spec/targetRefs/0/group"),
            "spec.targetRefs[0].group: Required value",
        ),
    ] {
        let errors = crds.check(&doc);
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "{label}: want {want:?} in {errors:#?}"
        );
    }
}

#[test]
fn module_kinds_an_api_cannot_run_are_refused() {
    let selector = example("bookinfo-reviews");
    for (spec, api, kind, want) in [
        (
            &selector,
            Api::Wasmplugin,
            Some(ModuleKind::Dynamic),
            "runs wasm only",
        ),
        (
            &selector,
            Api::Trafficextension,
            Some(ModuleKind::Dynamic),
            "runs wasm only",
        ),
        (
            &by_target_refs(),
            Api::Envoyextensionpolicy,
            Some(ModuleKind::Wasm),
            "for the dynamic module only",
        ),
        (&selector, Api::Envoyextensionpolicy, None, "by targetRefs"),
    ] {
        let error = render::resources(spec, api, kind).expect_err("refused");
        assert!(
            error.to_string().contains(want),
            "{api:?} {kind:?}: {error}"
        );
    }
}

/// The plugin configuration inside the EnvoyFilter's ECDS patch, parsed from its StringValue.
fn envoy_filter_configuration(ef: &Value) -> Value {
    let value = ef
        .pointer("/spec/configPatches/0/patch/value/typed_config/config/configuration/value")
        .and_then(Value::as_str)
        .expect("configuration StringValue");
    serde_json::from_str(value).expect("configuration is JSON")
}

#[test]
fn the_filter_runs_client_side_before_routing_and_fails_open() {
    for (name, context) in [
        ("bookinfo-reviews", "SIDECAR_OUTBOUND"),
        ("web-gateway", "GATEWAY"),
    ] {
        let spec = example(name);
        let wp = one(&rendered(&spec, Api::Wasmplugin), "WasmPlugin").clone();
        let te = one(&rendered(&spec, Api::Trafficextension), "TrafficExtension").clone();
        for (doc, fail) in [
            (&wp, "/spec/failStrategy"),
            (&te, "/spec/wasm/failStrategy"),
        ] {
            assert_eq!(doc["spec"]["phase"], "STATS", "{name}: phase");
            assert_eq!(
                doc["spec"]["match"],
                json!([{ "mode": "CLIENT" }]),
                "{name}: mode"
            );
            assert_eq!(
                doc.pointer(fail),
                Some(&json!("FAIL_OPEN")),
                "{name}: fail open"
            );
            assert_eq!(
                doc["spec"]["selector"]["matchLabels"],
                json!(
                    spec.attachment
                        .selector
                        .as_ref()
                        .expect("selector")
                        .match_labels
                ),
                "{name}: selector"
            );
        }
        assert_eq!(wp["spec"]["url"], spec.module.url, "{name}: url");
        assert_eq!(
            te["spec"]["wasm"]["sha256"], spec.module.sha256,
            "{name}: sha256"
        );

        let ef = one(&rendered(&spec, Api::Envoyfilter), "EnvoyFilter").clone();
        let patches = ef["spec"]["configPatches"].as_array().expect("patches");
        assert_eq!(patches.len(), 2, "{name}: extension config + one filter");
        let extension = &patches[0];
        assert_eq!(extension["applyTo"], "EXTENSION_CONFIG", "{name}");
        let filter = &patches[1];
        assert_eq!(filter["applyTo"], "HTTP_FILTER", "{name}");
        assert_eq!(filter["match"]["context"], context, "{name}: context");
        assert_eq!(
            filter["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.router",
            "{name}"
        );
        assert_eq!(filter["patch"]["operation"], "INSERT_BEFORE", "{name}");
        assert_eq!(
            filter["patch"]["value"]["name"], extension["patch"]["value"]["name"],
            "{name}: the filter takes the extension config by name"
        );
        let code =
            &extension["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["remote"];
        assert_eq!(
            code["http_uri"]["uri"], spec.module.url,
            "{name}: module url"
        );
        assert_eq!(code["sha256"], spec.module.sha256, "{name}: module sha256");
        assert_eq!(
            extension["patch"]["value"]["typed_config"]["config"]["failure_policy"], "FAIL_OPEN",
            "{name}: fail open"
        );
    }
}

/// The whole chain without Envoy: the filter's own decision, written into the decision header,
/// matched by the VirtualService as Istio matches (first HTTP route whose match holds), lands
/// on the DestinationRule subset of the variant the filter chose.
#[test]
fn each_filter_decision_reaches_the_pods_of_its_variant() {
    let header = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    type Headers = Vec<(String, String)>;
    let cases: Vec<(&str, Headers, Option<&str>)> = vec![
        (
            "bookinfo-reviews",
            vec![
                header(":authority", "reviews:9080"),
                header("end-user", "jason"),
            ],
            Some("v3"),
        ),
        (
            "bookinfo-reviews",
            vec![
                header(":authority", "reviews:9080"),
                header("x-canary", "v2"),
            ],
            Some("v2"),
        ),
        (
            "web-gateway",
            vec![
                header(":authority", "shop.example.com"),
                header("cookie", "canary=always"),
            ],
            Some("canary"),
        ),
        (
            "web-gateway",
            vec![
                header(":authority", "shop.example.com"),
                header("cookie", "canary=never"),
            ],
            Some("stable"),
        ),
    ];
    let mut hashed = vec![];
    for i in 0..200 {
        hashed.push((
            "bookinfo-reviews",
            vec![
                header(":authority", "reviews:9080"),
                header("end-user", &format!("user-{i}")),
            ],
            None,
        ));
        hashed.push((
            "web-gateway",
            vec![
                header(":authority", "shop.example.com"),
                header("cookie", &format!("canary_id=visitor-{i}")),
            ],
            None,
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (name, headers, want) in cases.into_iter().chain(hashed) {
        let spec = example(name);
        let table = RoutingTable::try_from(&spec.config).expect("compiles");
        let request = RequestHeaders::from_pairs(&headers);
        let decision = table
            .decide(&request, || 0, |_| false)
            .expect("a route matches");
        let variant = &decision.variant.name;
        if let Some(want) = want {
            assert_eq!(variant, want, "{name} {headers:?}: the filter's decision");
        }
        let docs = rendered(&spec, Api::Wasmplugin);
        let mut routed = headers.clone();
        routed.push(header(
            &table.decision_header,
            &decision.variant.decision_value,
        ));
        let source = spec.attachment.selector.as_ref().map(|s| &s.match_labels);
        let subset = route_subset(one(&docs, "VirtualService"), &routed, source);
        assert_eq!(
            subset.as_deref(),
            Some(variant.as_str()),
            "{name} {headers:?}: VirtualService"
        );
        let dr = one(&docs, "DestinationRule");
        let labels = dr["spec"]["subsets"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == *variant))
            .map(|s| s["labels"].clone());
        assert_eq!(
            labels,
            Some(json!(spec.services[&decision.route.name].subsets[variant])),
            "{name}: {variant} pods"
        );
        seen.insert((name, variant.clone()));
    }
    assert_eq!(
        seen.len(),
        5,
        "every variant of both examples reached: {seen:?}"
    );
}

/// A decision header the filter did not write takes the default route: the bare variant name,
/// another case, a seal no longer accepted, another spec's seal, or the right value sent from a
/// workload the filter does not run on. During a rotation both seals reach the variant.
#[test]
fn only_a_sealed_value_from_the_filter_workloads_reaches_a_variant() {
    const OLD: &str = "0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0l";
    const NEW: &str = "New-seal_New-seal_New-seal";
    let with_seal = |seal: Value| {
        let mut v = example_value("bookinfo-reviews");
        v["seal"] = seal;
        Spec::from_value(v).expect("valid")
    };
    let other = example("web-gateway").seal.current;
    let productpage = BTreeMap::from([("app".to_owned(), "productpage".to_owned())]);
    let ratings = BTreeMap::from([("app".to_owned(), "ratings".to_owned())]);
    let subset = |spec: &Spec, value: &str, source: &BTreeMap<String, String>| {
        let docs = rendered(spec, Api::Wasmplugin);
        let headers = [
            (":authority".to_owned(), "reviews".to_owned()),
            ("x-canary-variant".to_owned(), value.to_owned()),
        ];
        route_subset(one(&docs, "VirtualService"), &headers, Some(source))
    };

    let before = with_seal(json!({ "current": OLD }));
    let both = with_seal(json!({ "current": NEW, "accept": [OLD] }));
    let after = with_seal(json!({ "current": NEW }));
    type Labels = BTreeMap<String, String>;
    let cases: Vec<(&str, &Spec, String, &Labels, &str)> = vec![
        ("sealed", &before, format!("v3.{OLD}"), &productpage, "v3"),
        ("bare name", &before, "v3".to_owned(), &productpage, "v1"),
        (
            "upper case",
            &before,
            format!("V3.{OLD}"),
            &productpage,
            "v1",
        ),
        (
            "seal upper-cased",
            &before,
            format!("v3.{}", OLD.to_uppercase()),
            &productpage,
            "v1",
        ),
        (
            "another spec's seal",
            &before,
            format!("v3.{other}"),
            &productpage,
            "v1",
        ),
        (
            "not a filter workload",
            &before,
            format!("v3.{OLD}"),
            &ratings,
            "v1",
        ),
        (
            "rotation: old seal",
            &both,
            format!("v3.{OLD}"),
            &productpage,
            "v3",
        ),
        (
            "rotation: new seal",
            &both,
            format!("v2.{NEW}"),
            &productpage,
            "v2",
        ),
        (
            "rotated: old seal",
            &after,
            format!("v3.{OLD}"),
            &productpage,
            "v1",
        ),
        (
            "rotated: new seal",
            &after,
            format!("v3.{NEW}"),
            &productpage,
            "v3",
        ),
    ];
    for (label, spec, value, source, want) in cases {
        assert_eq!(
            subset(spec, &value, source).as_deref(),
            Some(want),
            "{label}: {value}"
        );
    }
    let both_vs = one(&rendered(&both, Api::Wasmplugin), "VirtualService").clone();
    let values: Vec<&Value> = both_vs["spec"]["http"][0]["match"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| &m["headers"]["x-canary-variant"]["exact"])
        .collect();
    assert_eq!(
        values,
        [&json!(format!("v1.{NEW}")), &json!(format!("v1.{OLD}"))],
        "the current seal first, then each accepted one"
    );
    assert_eq!(
        one(&rendered(&both, Api::Wasmplugin), "WasmPlugin")["spec"]["pluginConfig"]["seal"],
        NEW,
        "the filter writes the current seal"
    );
}

/// With a Gateway API attachment, the header routes apply to the spec's gateways only: a
/// sidecar (`mesh`) does not run the filter.
#[test]
fn a_gateway_attachment_binds_the_header_routes_to_its_gateways() {
    let mut by_ref = example_value("web-gateway");
    by_ref["attachment"] = json!({ "targetRefs": [
        { "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web" },
    ] });
    by_ref["gateways"] = json!(["istio-system/web", "mesh"]);
    let spec = Spec::from_value(by_ref).expect("valid");
    let docs = rendered(&spec, Api::Wasmplugin);
    let vs = one(&docs, "VirtualService");
    let http = vs["spec"]["http"].as_array().expect("http");
    for entry in &http[..http.len() - 1] {
        for m in entry["match"].as_array().expect("match") {
            assert_eq!(m["gateways"], json!(["istio-system/web"]), "{entry}");
            assert!(m.get("sourceLabels").is_none(), "{entry}");
        }
    }
}

/// Bookinfo as one lane: productpage calls reviews and reviews calls ratings, so the filter runs
/// in the sidecars of both callers (labelled `canary-lane: bookinfo`), and ratings' route keeps
/// the decision made for reviews. `lanes`: the spec's own setting, if any.
fn bookinfo_lane(lanes: Option<bool>) -> Spec {
    let mut spec = example_value("bookinfo-reviews");
    spec["attachment"] = json!({ "selector": { "matchLabels": { "canary-lane": "bookinfo" } } });
    let subsets =
        json!({ "v1": { "version": "v1" }, "v2": { "version": "v2" }, "v3": { "version": "v3" } });
    spec["services"]["ratings"] = json!({
        "host": "ratings.bookinfo.svc.cluster.local", "port": 9080, "subsets": subsets,
    });
    let routes = spec["pluginConfig"]["routes"]
        .as_array_mut()
        .expect("routes");
    routes.push(json!({
        "name": "ratings",
        "trustIncoming": true,
        "match": { "hosts": ["ratings", "ratings.bookinfo.svc.cluster.local"] },
        "variants": [
            { "name": "v1", "weight": 80 }, { "name": "v2", "weight": 10 }, { "name": "v3", "weight": 10 },
        ],
        "stickiness": { "keys": [{ "header": "end-user" }] },
    }));
    if let Some(lanes) = lanes {
        spec["lanes"] = json!(lanes);
    }
    Spec::from_value(spec).expect("valid")
}

/// With lanes, a sealed decision header reaches the application of every service of the spec,
/// for it to propagate; a value that matched no sealed route does not, and without lanes none
/// does. The documents still validate.
#[test]
fn with_lanes_the_variant_routes_let_the_sealed_header_through() {
    let crds = Crds::load();
    let remove = json!({ "request": { "remove": ["x-canary-variant"] } });
    for (lanes, kept) in [(None, true), (Some(true), true), (Some(false), false)] {
        let spec = bookinfo_lane(lanes);
        assert_eq!(spec.lanes, kept, "lanes: {lanes:?}");
        let docs = rendered(&spec, Api::Wasmplugin);
        let services = of_kind(&docs, "VirtualService");
        assert_eq!(services.len(), 2, "reviews and ratings");
        for vs in services {
            let errors = crds.check(vs);
            assert!(errors.is_empty(), "{}", errors.join("\n"));
            let name = &vs["metadata"]["name"];
            let http = vs["spec"]["http"].as_array().expect("http routes");
            let (default, variants) = http.split_last().expect("routes");
            assert_eq!(variants.len(), 3, "{name}");
            for entry in variants {
                let header = entry.get("headers");
                assert_eq!(
                    header.is_none(),
                    kept,
                    "lanes {lanes:?}, {name} {}: {header:?}",
                    entry["name"]
                );
            }
            assert_eq!(
                default["headers"], remove,
                "{name}: an unsealed value is removed"
            );
        }
    }
    let plain = example("bookinfo-reviews");
    assert!(!plain.lanes, "without trustIncoming, no lanes by default");

    // A lane counts only from a caller where the filter runs: reviews' sealed value, forwarded
    // to ratings from a workload outside the selector, takes the default route.
    let spec = bookinfo_lane(None);
    let docs = rendered(&spec, Api::Wasmplugin);
    let ratings = of_kind(&docs, "VirtualService")
        .into_iter()
        .find(|d| d["metadata"]["name"] == spec.resource_name("ratings"))
        .expect("ratings' VirtualService");
    let headers = [(
        "x-canary-variant".to_owned(),
        format!("v2.{}", spec.seal.current),
    )];
    let on_lane = BTreeMap::from([("canary-lane".to_owned(), "bookinfo".to_owned())]);
    let elsewhere = BTreeMap::from([("app".to_owned(), "reviews".to_owned())]);
    assert_eq!(
        route_subset(ratings, &headers, Some(&on_lane)),
        Some("v2".to_owned())
    );
    assert_eq!(
        route_subset(ratings, &headers, Some(&elsewhere)),
        Some("v1".to_owned())
    );
}

/// The subset Istio routes a request with `headers` from a workload labelled `source` to: the
/// first HTTP route with no match or with a match whose source labels the workload has and whose
/// every header condition holds (`exact` only, as rendered).
fn route_subset(
    vs: &Value,
    headers: &[(String, String)],
    source: Option<&BTreeMap<String, String>>,
) -> Option<String> {
    let from_source = |m: &Value| {
        m["sourceLabels"].as_object().is_none_or(|wanted| {
            wanted.iter().all(|(k, v)| {
                source.is_some_and(|labels| labels.get(k).map(String::as_str) == v.as_str())
            })
        })
    };
    let holds = |m: &Value| {
        from_source(m)
            && m["headers"].as_object().is_some_and(|conditions| {
                conditions.iter().all(|(name, condition)| {
                    headers
                        .iter()
                        .any(|(n, v)| n == name && condition["exact"].as_str() == Some(v))
                })
            })
    };
    vs["spec"]["http"].as_array()?.iter().find_map(|entry| {
        let matches = entry["match"].as_array();
        let applies = matches.is_none_or(|ms| ms.iter().any(holds));
        applies.then(|| {
            entry["route"][0]["destination"]["subset"]
                .as_str()
                .map(str::to_owned)
        })?
    })
}

/// `envoyfilter/istio/<example>.<api>.yaml` is exactly what `canaryctl render` prints.
#[test]
fn envoyfilter_manifests_are_what_render_prints() {
    let mut stale = Vec::new();
    for name in EXAMPLES {
        let spec = example(name);
        for (api, label) in APIS {
            let want = render::to_yaml(&rendered(&spec, api));
            let path = repo().join(format!("envoyfilter/istio/{name}.{label}.yaml"));
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have != want {
                stale.push(format!(
                    "{}\n{}",
                    path.display(),
                    first_difference(&have, &want)
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale manifests:\n{}\nregenerate with:\n  {REGENERATE}",
        stale.join("\n")
    );
}

const REGENERATE: &str = "cargo build -p canaryctl && for ex in bookinfo-reviews web-gateway; do \
for api in wasmplugin trafficextension envoyfilter; do target/debug/canaryctl render \
examples/$ex.yaml --api $api > envoyfilter/istio/$ex.$api.yaml; done; done";

fn first_difference(have: &str, want: &str) -> String {
    let (mut h, mut w) = (have.lines(), want.lines());
    for n in 1.. {
        match (h.next(), w.next()) {
            (None, None) => break,
            (a, b) if a == b => continue,
            (a, b) => return format!("  line {n}: file {a:?}, render {b:?}"),
        }
    }
    "  (differ only in line endings)".to_owned()
}

#[test]
fn the_command_prints_the_resources_as_yaml_documents() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_canaryctl"))
            .args(args)
            .current_dir(repo())
            .output()
            .expect("run canaryctl")
    };
    let out = run(&["render", "examples/web-gateway.yaml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = render::to_yaml(&rendered(&example("web-gateway"), Api::Wasmplugin));
    assert_eq!(stdout, want, "default --api is wasmplugin");
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&stdout)
        .map(|doc| {
            let v = <Value as serde::Deserialize>::deserialize(doc).expect("a YAML document");
            v["kind"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(kinds, ["WasmPlugin", "DestinationRule", "VirtualService"]);

    let out = run(&["render", "examples/plugin-config.json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a plugin configuration is not a spec"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("$: this is a plugin configuration"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&["render", "examples/web-gateway.yaml", "--api", "gateway"]);
    assert_eq!(out.status.code(), Some(2), "unknown --api is a usage error");
}

/// `--rbac NAMESPACE/NAME` adds, after the resources, a Role in the spec's namespace granting
/// `get` and `patch` on the filter resource alone, and its RoleBinding to that ServiceAccount.
#[test]
fn rbac_grants_get_and_patch_on_the_filter_resource_only() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_canaryctl"))
            .args(args)
            .current_dir(repo())
            .output()
            .expect("run canaryctl")
    };
    for name in EXAMPLES {
        let spec = example(name);
        for (api, label) in APIS {
            let file = format!("examples/{name}.yaml");
            let args = [
                "render",
                &file,
                "--api",
                label,
                "--rbac",
                "canary-system/canaryctl",
            ];
            let out = run(&args);
            assert_eq!(out.status.code(), Some(0), "{args:?}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let without = render::to_yaml(&rendered(&spec, api));
            let rbac = stdout
                .strip_prefix(&without)
                .and_then(|rest| rest.strip_prefix("---\n"))
                .unwrap_or_else(|| panic!("{args:?}: the resources, then:\n{stdout}"));
            let docs: Vec<Value> = serde_yaml::Deserializer::from_str(rbac)
                .map(|doc| <Value as serde::Deserialize>::deserialize(doc).expect("YAML"))
                .collect();
            let filter = &rendered(&spec, api)[0];
            let group = filter["apiVersion"]
                .as_str()
                .and_then(|v| v.split_once('/'))
                .map(|(group, _)| group)
                .expect("a group/version");
            let metadata = json!({
                "name": format!("canaryctl-{}", spec.name),
                "namespace": spec.namespace,
                "labels": {"app.kubernetes.io/managed-by": "canaryctl"},
            });
            assert_eq!(
                docs,
                [
                    json!({
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "Role",
                        "metadata": metadata,
                        "rules": [{
                            "apiGroups": [group],
                            "resources": [format!("{label}s")],
                            "resourceNames": [filter["metadata"]["name"]],
                            "verbs": ["get", "patch"],
                        }],
                    }),
                    json!({
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "RoleBinding",
                        "metadata": metadata,
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "Role",
                            "name": metadata["name"],
                        },
                        "subjects": [{
                            "kind": "ServiceAccount",
                            "name": "canaryctl",
                            "namespace": "canary-system",
                        }],
                    }),
                ],
                "{args:?}"
            );
            // Well-formed RBAC objects: read into the k8s-openapi types, nothing unknown.
            let role: k8s_openapi::api::rbac::v1::Role =
                serde_json::from_value(docs[0].clone()).expect("a Role");
            assert_eq!(serde_json::to_value(role).expect("JSON"), docs[0]);
            let binding: k8s_openapi::api::rbac::v1::RoleBinding =
                serde_json::from_value(docs[1].clone()).expect("a RoleBinding");
            assert_eq!(serde_json::to_value(binding).expect("JSON"), docs[1]);
        }
    }

    let out = run(&[
        "render",
        "examples/bookinfo-reviews.yaml",
        "--api",
        "envoyfilter",
        "--rbac",
        "canary-system/canaryctl",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let role = stdout
        .find("apiVersion: rbac.authorization.k8s.io/v1")
        .map(|at| &stdout[at..]);
    assert_eq!(
        role,
        Some(
            "apiVersion: rbac.authorization.k8s.io/v1\n\
             kind: Role\n\
             metadata:\n  name: canaryctl-reviews-canary\n  namespace: bookinfo\n\
             \x20 labels:\n    app.kubernetes.io/managed-by: canaryctl\n\
             rules:\n\
             - apiGroups:\n  - networking.istio.io\n  resources:\n  - envoyfilters\n\
             \x20 resourceNames:\n  - reviews-canary\n  verbs:\n  - get\n  - patch\n\
             ---\n\
             apiVersion: rbac.authorization.k8s.io/v1\n\
             kind: RoleBinding\n\
             metadata:\n  name: canaryctl-reviews-canary\n  namespace: bookinfo\n\
             \x20 labels:\n    app.kubernetes.io/managed-by: canaryctl\n\
             roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n\
             \x20 name: canaryctl-reviews-canary\n\
             subjects:\n\
             - kind: ServiceAccount\n  name: canaryctl\n  namespace: canary-system\n"
        )
    );

    for bad in ["canaryctl", "canary-system/", "Canary/canaryctl"] {
        let out = run(&["render", "examples/web-gateway.yaml", "--rbac", bad]);
        assert_eq!(out.status.code(), Some(2), "--rbac {bad} is a usage error");
        assert!(out.stdout.is_empty(), "nothing rendered");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid value"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn an_invalid_spec_renders_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: &Path = &dir.path().join("spec.yaml");
    let mut value = example_value("web-gateway");
    value["services"]["web"]["subsets"]
        .as_object_mut()
        .expect("subsets")
        .remove("canary");
    std::fs::write(path, serde_yaml::to_string(&value).expect("yaml")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_canaryctl"))
        .args([
            "render",
            path.to_str().expect("utf-8 path"),
            "--api",
            "envoyfilter",
        ])
        .output()
        .expect("run canaryctl");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing rendered");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "services.web.subsets: missing the labels of variant \"canary\"\n"
    );
}

/// The YAML stream reads back as exactly the rendered resources, label values that YAML 1.1
/// reads as booleans or numbers included.
#[test]
fn the_yaml_reads_back_as_the_resources() {
    let mut tricky = example_value("web-gateway");
    tricky["services"]["web"]["subsets"] =
        json!({ "stable": { "track": "on" }, "canary": { "track": "1.0" } });
    tricky["attachment"]["selector"]["matchLabels"] = json!({ "gateway": "yes" });
    let specs = [
        example("bookinfo-reviews"),
        example("web-gateway"),
        Spec::from_value(tricky).expect("valid"),
    ];
    for spec in &specs {
        for (api, label) in APIS {
            let docs = rendered(spec, api);
            let text = render::to_yaml(&docs);
            let back: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
                .map(|doc| {
                    <Value as serde::Deserialize>::deserialize(doc).expect("a YAML document")
                })
                .collect();
            assert_eq!(back, docs, "{} --api {label}:\n{text}", spec.name);
        }
        let text = render::to_yaml(&rendered(spec, Api::Wasmplugin));
        for plain_boolean in ["track: on", "gateway: yes"] {
            assert!(
                !text.contains(plain_boolean),
                "{} is quoted:\n{text}",
                plain_boolean
            );
        }
    }
}
