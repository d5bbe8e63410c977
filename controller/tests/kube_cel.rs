//! The CEL rules of the Istio CRDs (`x-kubernetes-validations`), as the stand-in Kubernetes API
//! server evaluates them: a write that the real API server refuses with a rule's message is
//! refused here with 422 Invalid and the same message, and a rule that cannot be evaluated
//! refuses rather than passes. Then `canaryctl` against an object stored before a rule it
//! breaks existed: its write is refused, reported, and the object left as it was.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::kube_api::KubeApi;
use support::{canaryctl, rendered_envoy_filter, schema, Run};

/// The filter resource `canaryctl render` makes of `examples/bookinfo-reviews.yaml`, as kept
/// in `envoyfilter/istio/` (`api` is `wasmplugin`, `trafficextension` or `envoyfilter`).
fn rendered(api: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../envoyfilter/istio/bookinfo-reviews.{api}.yaml"));
    let text = std::fs::read_to_string(&path).expect("the rendered resources");
    let found = serde_yaml::Deserializer::from_str(&text)
        .map(|document| <Value as serde::Deserialize>::deserialize(document).expect("YAML"))
        .find(|object| {
            object["kind"]
                .as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case(api))
        });
    found.unwrap_or_else(|| panic!("no {api} in {}", path.display()))
}

fn with(object: &Value, pointer: &str, value: Value) -> Value {
    let mut object = object.clone();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    object
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("the parent is an object")
        .insert(key.to_owned(), value);
    object
}

fn renamed(object: &Value, name: &str) -> Value {
    with(object, "/metadata/name", json!(name))
}

/// Asserts the server refused `body` as Invalid with a cause on `field` whose message ends
/// with `message`, and that the Status message names it too.
fn assert_invalid(code: u16, body: &Value, field: &str, message: &str) {
    assert_eq!(code, 422, "{body:#}");
    assert_eq!(body["reason"], "Invalid", "{body:#}");
    let causes = body["details"]["causes"].as_array().expect("causes");
    assert!(
        causes.iter().any(|c| c["field"] == field
            && c["reason"] == "FieldValueInvalid"
            && c["message"].as_str().is_some_and(|m| m.ends_with(message))),
        "want a cause on {field} ending with {message:?}: {body:#}"
    );
    let summary = body["message"].as_str().expect("message");
    assert!(
        summary.contains(&format!("{field}: Invalid value: ")) && summary.contains(message),
        "{summary}"
    );
}

/// The message of the WasmPlugin and TrafficExtension rule on the module URL.
const URL_MESSAGE: &str = "url must have schema one of [http, https, file, oci]";

fn gateway_ref() -> Value {
    json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web"}])
}

#[test]
fn rendered_resources_pass_every_rule() {
    let api = KubeApi::start();
    for object in [
        rendered("wasmplugin"),
        rendered("trafficextension"),
        rendered("envoyfilter"),
    ] {
        let (code, body) = api.try_create(object);
        assert_eq!(code, 201, "{body:#}");
    }
}

#[test]
fn a_wasm_plugin_with_both_selector_and_target_refs_is_refused() {
    let api = KubeApi::start();
    let plugin = with(&rendered("wasmplugin"), "/spec/targetRefs", gateway_ref());
    let (code, body) = api.try_create(plugin);
    assert_invalid(
        code,
        &body,
        "spec",
        "Invalid value: \"object\": only one of targetRefs or selector can be set",
    );
    assert!(api
        .get("wasmplugins", "bookinfo", "reviews-canary")
        .is_none());

    // Either one alone is fine.
    let mut by_ref = with(&rendered("wasmplugin"), "/spec/targetRefs", gateway_ref());
    by_ref["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("selector");
    let (code, body) = api.try_create(by_ref);
    assert_eq!(code, 201, "{body:#}");
}

#[test]
fn a_wasm_plugin_url_must_have_a_known_scheme() {
    let api = KubeApi::start();
    let plugin = rendered("wasmplugin");
    let (code, body) = api.try_create(with(&plugin, "/spec/url", json!("ftp://x/y.wasm")));
    assert_invalid(code, &body, "spec.url", URL_MESSAGE);
    for (i, url) in [
        "oci://registry.example.com/canary-router:0.1.0",
        "https://example.com/filters/canary.wasm",
        "http://example.com:8080/canary.wasm",
        "file:///opt/filters/canary.wasm",
        "registry/img:tag",
        "registry.example.com/canary-router",
    ]
    .into_iter()
    .enumerate()
    {
        let object = renamed(&with(&plugin, "/spec/url", json!(url)), &format!("ok-{i}"));
        let (code, body) = api.try_create(object);
        assert_eq!(code, 201, "{url}: {body:#}");
    }
    for url in ["ghcr.io:443/img", "mailto:someone@example.com"] {
        let (code, body) = api.try_create(with(&plugin, "/spec/url", json!(url)));
        assert_invalid(code, &body, "spec.url", URL_MESSAGE);
    }
}

#[test]
fn the_other_wasm_plugin_and_traffic_extension_rules() {
    let api = KubeApi::start();
    let plugin = rendered("wasmplugin");
    let cases = [
        (
            with(&plugin, "/spec/selector/matchLabels/app", json!("review*")),
            "spec.selector.matchLabels.app",
            "wildcard not allowed in label value match",
        ),
        (
            with(&plugin, "/spec/selector/matchLabels/ap*", json!("reviews")),
            "spec.selector.matchLabels",
            "wildcard not allowed in label key match",
        ),
        (
            with(
                &plugin,
                "/spec/vmConfig",
                json!({"env": [{"name": "A", "valueFrom": "HOST", "value": "x"}]}),
            ),
            "spec.vmConfig.env[0]",
            "value may only be set when valueFrom is INLINE",
        ),
        (
            with(
                &plugin,
                "/spec/targetRef",
                json!({"kind": "Gateway", "name": "web", "namespace": "other"}),
            ),
            "spec.targetRef.namespace",
            "cross namespace referencing is not currently supported",
        ),
    ];
    for (object, field, message) in cases {
        let (code, body) = api.try_create(object);
        assert_invalid(code, &body, field, message);
    }

    let extension = rendered("trafficextension");
    let (code, body) = api.try_create(with(
        &extension,
        "/spec/lua",
        json!({"inlineCode": "function envoy_on_request(h) end"}),
    ));
    assert_invalid(
        code,
        &body,
        "spec",
        "exactly one of wasm or lua must be set",
    );
    let (code, body) = api.try_create(with(&extension, "/spec/wasm/url", json!("ftp://x/y.wasm")));
    assert_invalid(code, &body, "spec.wasm.url", URL_MESSAGE);
}

#[test]
fn an_envoy_filter_with_both_workload_selector_and_target_refs_is_refused() {
    let api = KubeApi::start();
    let filter = rendered_envoy_filter();
    let (code, body) = api.try_create(with(&filter, "/spec/targetRefs", gateway_ref()));
    assert_invalid(
        code,
        &body,
        "spec",
        "only one of targetRefs or workloadSelector can be set",
    );
    let (code, body) = api.try_create(with(
        &filter,
        "/spec/workloadSelector/labels/app",
        json!("*"),
    ));
    assert_invalid(
        code,
        &body,
        "spec.workloadSelector.labels.app",
        "wildcard is not supported in selector",
    );
    let mut waypoint = filter.clone();
    waypoint["spec"]["configPatches"][0]["match"] =
        json!({"context": "SIDECAR_INBOUND", "waypoint": {"portNumber": 80}});
    let (code, body) = api.try_create(waypoint);
    assert_invalid(
        code,
        &body,
        "spec.configPatches[0].match",
        "only support waypointMatch when context is WAYPOINT",
    );
    let mut port = filter.clone();
    port["spec"]["configPatches"][0]["match"] =
        json!({"context": "WAYPOINT", "waypoint": {"portNumber": 0}});
    let (code, body) = api.try_create(port);
    assert_invalid(
        code,
        &body,
        "spec.configPatches[0].match.waypoint.portNumber",
        "Invalid value: \"integer\": port must be between 1-65535",
    );
    let (code, body) = api.try_create(filter);
    assert_eq!(code, 201, "{body:#}");
}

/// A schema with one string field `value` carrying `rules`.
fn string_with_rules(rules: Value) -> Value {
    json!({"type": "object", "properties": {"value": {
        "type": "string", "x-kubernetes-validations": rules,
    }}})
}

fn causes(schema: &Value, value: &str) -> Vec<(String, String)> {
    schema::validate(schema, &mut json!({"value": value}))
}

#[test]
fn is_url_and_get_scheme_follow_the_kubernetes_url_library() {
    let is_url = string_with_rules(json!([{"rule": "isURL(self)"}]));
    for url in [
        "https://user:pass@example.com:80/path?query=val#fragment",
        "/absolute-path",
        "/a%20b",
        "oci://ghcr.io/org/img:1",
        "file:///x.wasm",
        "localhost:8080",
    ] {
        assert_eq!(causes(&is_url, url), [], "{url}");
    }
    for url in [
        "https://a:b:c/",
        "../relative-path",
        "registry/img:tag",
        "",
        "/a%zz",
        "http://exa mple.com/",
        "https://example.com/\n",
    ] {
        assert_eq!(
            causes(&is_url, url),
            [(
                "value".to_owned(),
                "Invalid value: \"string\": failed rule: isURL(self)".to_owned()
            )],
            "{url:?}"
        );
    }

    let scheme = string_with_rules(json!([{"rule": "url(self).getScheme() == 'oci'"}]));
    assert_eq!(causes(&scheme, "oci://ghcr.io/x"), []);
    assert_eq!(
        causes(&scheme, "OCI://ghcr.io/x"),
        [],
        "schemes are lowercased"
    );
    assert_eq!(causes(&scheme, "https://ghcr.io/x").len(), 1);
    let none = string_with_rules(json!([{"rule": "url(self).getScheme() == ''"}]));
    assert_eq!(causes(&none, "/path"), []);

    // url() of what is not a URL is an error, which refuses the value.
    let found = causes(&scheme, "not a url");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .1
            .contains("URL parse error during conversion from string")
            && found[0]
                .1
                .ends_with("evaluating rule: url(self).getScheme() == 'oci'"),
        "{found:?}"
    );
}

#[test]
fn a_rule_that_cannot_be_evaluated_refuses_the_value() {
    for (rule, error) in [
        ("self.startsWith(", "compilation failed"),
        ("noSuchFunction(self)", "noSuchFunction"),
        ("self + 1 == 2", "evaluating rule"),
        ("self", "must evaluate to a bool"),
    ] {
        let schema = string_with_rules(json!([{"rule": rule, "message": "never shown"}]));
        let found = causes(&schema, "x");
        assert_eq!(found.len(), 1, "{rule}: {found:?}");
        let (field, message) = &found[0];
        assert_eq!(field, "value");
        assert!(
            message.contains(error) && message.contains(rule) && !message.contains("never shown"),
            "{rule}: {message}"
        );
    }
}

#[test]
fn rules_apply_to_each_item_and_map_value_present() {
    let schema = json!({"type": "object", "properties": {
        "list": {"type": "array", "items": {
            "type": "integer",
            "x-kubernetes-validations": [{"rule": "self > 0", "message": "must be positive"}],
        }},
        "map": {"type": "object", "additionalProperties": {
            "type": "string",
            "x-kubernetes-validations": [{"rule": "self.size() < 3"}],
        }},
        "absent": {"type": "string", "x-kubernetes-validations": [{"rule": "false"}]},
        "changed": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]},
    }});
    let mut value = json!({
        "list": [1, 0, 2, -1],
        "map": {"a": "ok", "b": "long"},
        "changed": "new",
    });
    assert_eq!(
        schema::validate(&schema, &mut value),
        [
            (
                "list[1]".to_owned(),
                "Invalid value: \"integer\": must be positive".to_owned()
            ),
            (
                "list[3]".to_owned(),
                "Invalid value: \"integer\": must be positive".to_owned()
            ),
            (
                "map.b".to_owned(),
                "Invalid value: \"string\": failed rule: self.size() < 3".to_owned()
            ),
        ],
        "no rule on what is absent; transition rules are not evaluated"
    );
}

/// `canaryctl` against the stand-in server, with objects inserted as they are.
struct Cluster {
    api: KubeApi,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn with_unchecked(objects: Vec<Value>) -> Self {
        let api = KubeApi::start();
        for object in objects {
            api.insert_unchecked(object);
        }
        Cluster {
            api,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        canaryctl(args, Some(&self.api.kubeconfig(self.dir.path())))
    }
}

#[test]
fn canaryctl_reports_a_write_refused_by_a_rule_and_changes_nothing() {
    let plugin = with(&rendered("wasmplugin"), "/spec/targetRefs", gateway_ref());
    let filter = with(
        &rendered_envoy_filter(),
        "/spec/workloadSelector/labels/app",
        json!("*"),
    );
    let filter = renamed(&filter, "reviews-filter");
    let cluster = Cluster::with_unchecked(vec![plugin, filter]);

    for (kind, plural, name, message) in [
        (
            "WasmPlugin",
            "wasmplugins",
            "reviews-canary",
            "spec: Invalid value: \"object\": only one of targetRefs or selector can be set",
        ),
        (
            "EnvoyFilter",
            "envoyfilters",
            "reviews-filter",
            "spec.workloadSelector.labels.app: Invalid value: \"string\": wildcard is not supported in selector",
        ),
    ] {
        let before = cluster.api.get(plural, "bookinfo", name).expect("stored");
        let target = format!("kube://bookinfo/{name}");
        let run = cluster.run(&[
            "set-weight",
            "--target",
            &target,
            "--route",
            "reviews",
            "v2=30",
        ]);
        assert_eq!(run.code, Some(1), "{kind}: {run:?}");
        assert!(
            run.stderr.contains(message) && run.stderr.contains("(Invalid, 422)"),
            "{kind}: {run:?}"
        );
        assert_eq!(
            cluster.api.get(plural, "bookinfo", name),
            Some(before),
            "{kind}: unchanged"
        );
    }
    let statuses: Vec<u16> = cluster
        .api
        .served()
        .iter()
        .filter(|s| s.method != "GET")
        .map(|s| s.status)
        .collect();
    assert_eq!(statuses, [422, 422], "one refused write each");
}
