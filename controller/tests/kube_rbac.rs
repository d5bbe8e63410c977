//! Least privilege, against a stand-in API server that checks bearer tokens and RBAC:
//! `canaryctl` runs as its controller's ServiceAccount, bound to nothing but the Role and
//! RoleBinding `canaryctl render --rbac` renders for the spec.
//!
//! - That Role is enough: `set-weight`, `promote`, `abort` and `status` succeed on the rendered
//!   EnvoyFilter and on the rendered WasmPlugin, with the kind in the target or without it
//!   (then the reads of the kinds not granted are refused, and do not count as a match).
//! - Each part of it is needed: without `patch` a change is refused and nothing is written,
//!   without `get` nothing can be read, and a Role for another name or a wrong token is
//!   refused, each with the API server's own status in the error.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::kube_api::KubeApi;
use support::{canaryctl, envoy_filter_config, Run};

/// The ServiceAccount of the controller, as `--rbac` takes it and as the API server names it.
const ACCOUNT: &str = "canary-system/canaryctl";
const USER: &str = "system:serviceaccount:canary-system:canaryctl";
const TOKEN: &str = "canaryctl-service-account-token";

const KINDLESS: &str = "kube://bookinfo/reviews-canary";

/// What `canaryctl render examples/bookinfo-reviews.yaml --api API --rbac canary-system/canaryctl`
/// prints, by kind.
struct Rendered {
    filter: Value,
    role: Value,
    binding: Value,
}

fn render(api: &str) -> Rendered {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo-reviews.yaml");
    let spec = spec.to_str().expect("UTF-8 path");
    let run = canaryctl(&["render", spec, "--api", api, "--rbac", ACCOUNT], None);
    assert!(run.succeeded(), "{run:?}");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&run.stdout)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML"))
        .collect();
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|doc| doc["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("a rendered {kind}"))
    };
    let filter = docs.first().cloned().expect("the filter resource first");
    Rendered {
        filter,
        role: of_kind("Role"),
        binding: of_kind("RoleBinding"),
    }
}

/// The stand-in serving one filter resource, and `canaryctl` run as the controller's
/// ServiceAccount, bound to `role` by `binding`.
struct Cluster {
    api: KubeApi,
    plural: &'static str,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new(filter: Value, role: &Value, binding: &Value) -> Self {
        let plural = match filter["kind"].as_str() {
            Some("EnvoyFilter") => "envoyfilters",
            Some("WasmPlugin") => "wasmplugins",
            other => panic!("no test for {other:?}"),
        };
        let api = KubeApi::start();
        api.create(filter);
        api.token(TOKEN, USER);
        let yaml: Vec<String> = [role, binding]
            .into_iter()
            .map(|object| serde_yaml::to_string(object).expect("YAML"))
            .collect();
        api.apply_rbac(&yaml.join("---\n"));
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = api.kubeconfig_at(&dir.path().join("kubeconfig"), TOKEN);
        Cluster {
            api,
            plural,
            kubeconfig,
            _dir: dir,
        }
    }

    /// As rendered: the Role and RoleBinding `--rbac` gives for the filter resource of `api`.
    fn rendered(api: &str) -> Self {
        let rendered = render(api);
        Cluster::new(rendered.filter, &rendered.role, &rendered.binding)
    }

    fn run(&self, args: &[&str]) -> Run {
        canaryctl(args, Some(&self.kubeconfig))
    }

    fn object(&self) -> Value {
        self.api
            .get(self.plural, "bookinfo", "reviews-canary")
            .expect("the filter resource exists")
    }

    fn weights(&self) -> Vec<Value> {
        let object = self.object();
        let config = match self.plural {
            "envoyfilters" => envoy_filter_config(&object),
            _ => object["spec"]["pluginConfig"].clone(),
        };
        config["routes"][0]["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .map(|v| v["weight"].clone())
            .collect()
    }

    /// `(method, path, status)` of every request refused with 401 or 403.
    fn refused(&self) -> Vec<(String, String, u16)> {
        self.api
            .served()
            .into_iter()
            .filter(|s| s.status == 401 || s.status == 403)
            .map(|s| {
                let path = s.uri.split('?').next().unwrap_or_default().to_owned();
                (s.method, path, s.status)
            })
            .collect()
    }
}

/// `status`, `set-weight`, `promote` and `abort` on `target` all succeed and do what they say.
fn every_command_succeeds(cluster: &Cluster, target: &str) {
    let run = cluster.run(&["status", "--target", target, "--output", "json"]);
    assert!(run.succeeded(), "status: {run:?}");
    let status: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(status["routes"][0]["name"], "reviews", "{status}");

    let run = cluster.run(&[
        "set-weight",
        "--target",
        target,
        "--route",
        "reviews",
        "v2=30",
    ]);
    assert!(run.succeeded(), "set-weight: {run:?}");
    assert_eq!(cluster.weights(), [json!(60), json!(30), json!(10)]);

    let run = cluster.run(&["promote", "--target", target, "--route", "reviews", "v3"]);
    assert!(run.succeeded(), "promote: {run:?}");
    assert_eq!(cluster.weights(), [json!(0), json!(0), json!(100)]);

    let run = cluster.run(&["abort", "--target", target, "--route", "reviews"]);
    assert!(run.succeeded(), "abort: {run:?}");
    assert_eq!(cluster.weights(), [json!(100), json!(0), json!(0)]);

    let run = cluster.run(&["status", "--target", target]);
    assert!(run.succeeded(), "status: {run:?}");
    assert!(run.stdout.contains("100 %"), "{run:?}");
}

/// Only reads of the kinds the Role does not grant were refused.
fn only_other_kinds_were_refused(cluster: &Cluster, granted: &str) {
    let paths = [
        "/apis/extensions.istio.io/v1alpha1/namespaces/bookinfo/wasmplugins/reviews-canary",
        "/apis/extensions.istio.io/v1alpha1/namespaces/bookinfo/trafficextensions/reviews-canary",
        "/apis/networking.istio.io/v1alpha3/namespaces/bookinfo/envoyfilters/reviews-canary",
    ];
    let refused = cluster.refused();
    assert!(!refused.is_empty(), "the other kinds were looked up");
    for (method, path, status) in refused {
        assert_eq!((method.as_str(), status), ("GET", 403), "{path}");
        assert!(
            paths.contains(&path.as_str()) && !path.contains(granted),
            "{path}"
        );
    }
}

#[test]
fn the_rendered_role_is_enough_for_every_command_on_an_envoy_filter() {
    let cluster = Cluster::rendered("envoyfilter");
    every_command_succeeds(&cluster, "kube://bookinfo/envoyfilter/reviews-canary");
    assert_eq!(cluster.refused(), [], "nothing was refused");
}

#[test]
fn the_rendered_role_is_enough_for_every_command_on_a_wasm_plugin() {
    let cluster = Cluster::rendered("wasmplugin");
    every_command_succeeds(&cluster, "kube://bookinfo/wasmplugin/reviews-canary");
    assert_eq!(cluster.refused(), [], "nothing was refused");
}

/// Without the kind, canaryctl also reads the name as the kinds the Role does not grant; the
/// API server refuses those reads, and the one kind that is found is the target.
#[test]
fn the_rendered_role_is_enough_for_an_envoy_filter_target_without_its_kind() {
    let cluster = Cluster::rendered("envoyfilter");
    every_command_succeeds(&cluster, KINDLESS);
    only_other_kinds_were_refused(&cluster, "/envoyfilters/");
}

#[test]
fn the_rendered_role_is_enough_for_a_wasm_plugin_target_without_its_kind() {
    let cluster = Cluster::rendered("wasmplugin");
    every_command_succeeds(&cluster, KINDLESS);
    only_other_kinds_were_refused(&cluster, "/wasmplugins/");
}

/// The rendered Role with `verb` taken out of its rule.
fn without_verb(role: &Value, verb: &str) -> Value {
    let mut role = role.clone();
    let verbs = role["rules"][0]["verbs"]
        .as_array_mut()
        .expect("the rule's verbs");
    verbs.retain(|v| v != verb);
    role
}

const FORBIDDEN: &str = "envoyfilters.networking.istio.io \"reviews-canary\" is forbidden: \
    User \"system:serviceaccount:canary-system:canaryctl\" cannot";
const IN_BOOKINFO: &str =
    "resource \"envoyfilters\" in API group \"networking.istio.io\" in the namespace \"bookinfo\"";

#[test]
fn without_patch_a_change_is_refused_and_nothing_is_written() {
    let rendered = render("envoyfilter");
    let role = without_verb(&rendered.role, "patch");
    let cluster = Cluster::new(rendered.filter, &role, &rendered.binding);
    let before = cluster.object();

    let target = "kube://bookinfo/envoyfilter/reviews-canary";
    let run = cluster.run(&["status", "--target", target]);
    assert!(run.succeeded(), "reading needs get only: {run:?}");
    let run = cluster.run(&[
        "set-weight",
        "--target",
        target,
        "--route",
        "reviews",
        "v2=30",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(cluster.object(), before, "nothing was written");
    let message = format!("{FORBIDDEN} patch {IN_BOOKINFO} (Forbidden, 403)");
    assert!(run.stderr.contains(&message), "{message}: {run:?}");
    // What the role lacks, named for whoever reads the error.
    for lacking in ["verb \"patch\"", "\"envoyfilters\""] {
        assert!(run.stderr.contains(lacking), "{lacking}: {run:?}");
    }
    assert_eq!(
        cluster.refused(),
        [(
            "PATCH".to_owned(),
            "/apis/networking.istio.io/v1alpha3/namespaces/bookinfo/envoyfilters/reviews-canary"
                .to_owned(),
            403
        )]
    );
}

#[test]
fn without_get_nothing_can_be_read() {
    let rendered = render("envoyfilter");
    let role = without_verb(&rendered.role, "get");
    let cluster = Cluster::new(rendered.filter, &role, &rendered.binding);
    let before = cluster.object();

    let target = "kube://bookinfo/envoyfilter/reviews-canary";
    for args in [
        &["status", "--target", target][..],
        &[
            "set-weight",
            "--target",
            target,
            "--route",
            "reviews",
            "v2=30",
        ],
    ] {
        let run = cluster.run(args);
        assert_eq!(run.code, Some(1), "{run:?}");
        let message = format!("{FORBIDDEN} get {IN_BOOKINFO} (Forbidden, 403)");
        assert!(run.stderr.contains(&message), "{message}: {run:?}");
    }
    assert_eq!(cluster.object(), before, "nothing was written");
    assert!(cluster.api.served_with("PATCH").is_empty());
}

#[test]
fn a_role_for_another_name_is_forbidden() {
    let rendered = render("envoyfilter");
    let mut role = rendered.role.clone();
    role["rules"][0]["resourceNames"] = json!(["ratings-canary"]);
    let cluster = Cluster::new(rendered.filter, &role, &rendered.binding);
    let before = cluster.object();

    let target = "kube://bookinfo/envoyfilter/reviews-canary";
    for args in [
        &["status", "--target", target][..],
        &["promote", "--target", target, "--route", "reviews", "v3"],
    ] {
        let run = cluster.run(args);
        assert_eq!(run.code, Some(1), "{run:?}");
        let message = format!("{FORBIDDEN} get {IN_BOOKINFO} (Forbidden, 403)");
        assert!(run.stderr.contains(&message), "{message}: {run:?}");
    }
    assert_eq!(cluster.object(), before, "nothing was written");
}

#[test]
fn a_wrong_token_is_unauthorized() {
    let cluster = Cluster::rendered("envoyfilter");
    let before = cluster.object();
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = cluster
        .api
        .kubeconfig_at(&dir.path().join("kubeconfig"), "not-the-token");

    let target = "kube://bookinfo/envoyfilter/reviews-canary";
    for args in [
        &["status", "--target", target][..],
        &[
            "set-weight",
            "--target",
            target,
            "--route",
            "reviews",
            "v2=30",
        ],
    ] {
        let run = canaryctl(args, Some(&wrong));
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(
            run.stderr.contains("Unauthorized (Unauthorized, 401)"),
            "{run:?}"
        );
    }
    assert_eq!(cluster.object(), before, "nothing was written");
    assert!(cluster
        .refused()
        .iter()
        .all(|(method, _, status)| method == "GET" && *status == 401));

    let run = cluster.run(&["status", "--target", target]);
    assert!(run.succeeded(), "the right token still works: {run:?}");
}
