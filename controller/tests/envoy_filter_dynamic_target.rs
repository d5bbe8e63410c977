//! `kube://NAMESPACE/NAME` and `kube://NAMESPACE/envoyfilter/NAME` on the EnvoyFilter
//! `canaryctl render --api envoyfilter --module-kind dynamic` makes: the plugin configuration is
//! the `filter_config` string of the dynamic module's `DynamicModuleFilter`, edited as the Wasm
//! filter's `configuration` is, against the stand-in Kubernetes API server (the real EnvoyFilter
//! CRD schema, resourceVersion conflicts, JSON merge patch, RBAC); and `canaryctl serve`'s
//! refusal to push that EnvoyFilter's configuration over a plaintext ECDS server not asked for.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::kube_api::KubeApi;
use support::{canaryctl, Run};

const TARGET: &str = "kube://bookinfo/envoyfilter/reviews-canary";
const KINDLESS: &str = "kube://bookinfo/reviews-canary";
/// Where the rendered dynamic-module EnvoyFilter keeps the plugin configuration string.
const CONFIG: &str = "/spec/configPatches/0/patch/value/typed_config/filter_config/value";
const ACCOUNT: &str = "canary-system/canaryctl";
const USER: &str = "system:serviceaccount:canary-system:canaryctl";
const TOKEN: &str = "canaryctl-service-account-token";

/// What `canaryctl render examples/bookinfo-reviews.yaml --api envoyfilter --module-kind
/// dynamic` prints, and more `args`, as objects.
fn render(args: &[&str]) -> Vec<Value> {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo-reviews.yaml");
    let spec = spec.to_str().expect("UTF-8 path");
    let mut all = vec![
        "render",
        spec,
        "--api",
        "envoyfilter",
        "--module-kind",
        "dynamic",
    ];
    all.extend(args);
    let run = canaryctl(&all, None);
    assert!(run.succeeded(), "{run:?}");
    serde_yaml::Deserializer::from_str(&run.stdout)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML"))
        .collect()
}

fn of_kind(objects: &[Value], kind: &str) -> Value {
    let found = objects.iter().find(|object| object["kind"] == kind);
    found
        .cloned()
        .unwrap_or_else(|| panic!("a rendered {kind}"))
}

/// The rendered dynamic-module EnvoyFilter (route `reviews`: v1 80, v2 10, v3 10).
fn rendered() -> Value {
    let envoy_filter = of_kind(&render(&[]), "EnvoyFilter");
    assert_eq!(
        envoy_filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "the dynamic module's filter"
    );
    envoy_filter
}

/// The plugin configuration the dynamic-module EnvoyFilter carries, parsed.
fn config(envoy_filter: &Value) -> Value {
    let text = envoy_filter
        .pointer(CONFIG)
        .and_then(Value::as_str)
        .expect("the plugin configuration string");
    serde_json::from_str(text).expect("the plugin configuration is JSON")
}

struct Cluster {
    api: KubeApi,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn with(objects: Vec<Value>) -> Self {
        let api = KubeApi::start();
        for object in objects {
            api.create(object);
        }
        Cluster {
            api,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        canaryctl(args, Some(&self.api.kubeconfig(self.dir.path())))
    }

    fn envoy_filter(&self) -> Value {
        self.api
            .get("envoyfilters", "bookinfo", "reviews-canary")
            .expect("the EnvoyFilter exists")
    }

    fn weights(&self) -> Vec<Value> {
        config(&self.envoy_filter())["routes"][0]["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .map(|v| v["weight"].clone())
            .collect()
    }
}

#[test]
fn set_weight_rewrites_only_the_dynamic_modules_filter_config() {
    let cluster = Cluster::with(vec![rendered()]);
    let before = cluster.envoy_filter();

    let run = cluster.run(&[
        "set-weight",
        "--target",
        TARGET,
        "--route",
        "reviews",
        "v2=30",
    ]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(
        run.stdout,
        format!("{TARGET} route reviews: v1 60 %, v2 30 %, v3 10 %\n")
    );

    let after = cluster.envoy_filter();
    let mut want_config = config(&before);
    want_config["routes"][0]["variants"] = json!([
        {"name": "v1", "weight": 60}, {"name": "v2", "weight": 30}, {"name": "v3", "weight": 10}]);
    // Written as canaryctl writes a configuration: the filter's field order, defaults left out.
    let decode =
        |config: Value| canary_filter::config::decode(config.to_string().as_bytes()).unwrap();
    assert_eq!(
        decode(config(&after)),
        decode(want_config),
        "only the weights changed"
    );
    assert!(config(&after).get("decisionHeader").is_none());
    let mut want = before.clone();
    *want.pointer_mut(CONFIG).unwrap() = after.pointer(CONFIG).unwrap().clone();
    want["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"].clone();
    want["metadata"]["generation"] = json!(2);
    assert_eq!(
        after, want,
        "only the configuration string (and the server's bookkeeping) changed"
    );

    let patches = cluster.api.served_with("PATCH");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].content_type, "application/merge-patch+json");
    assert_eq!(
        patches[0].body,
        json!({
            "metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
            "spec": {"configPatches": want["spec"]["configPatches"]}
        }),
        "the patch holds the resourceVersion read and the patch list"
    );
    assert!(patches[0].uri.starts_with(
        "/apis/networking.istio.io/v1alpha3/namespaces/bookinfo/envoyfilters/reviews-canary"
    ));
}

#[test]
fn status_promote_and_abort_without_the_kind_and_with_it() {
    let cluster = Cluster::with(vec![rendered()]);
    for target in [KINDLESS, TARGET] {
        let run = cluster.run(&["status", "--target", target, "--output", "json"]);
        assert!(run.succeeded(), "{run:?}");
        let status: Value = serde_json::from_str(&run.stdout).expect("JSON");
        assert_eq!(status["target"], target, "{status}");
        assert_eq!(status["routes"][0]["name"], "reviews", "{status}");
        let weights: Vec<&Value> = status["routes"][0]["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .map(|v| &v["weight"])
            .collect();
        assert_eq!(weights, [&json!(80), &json!(10), &json!(10)], "{status}");
    }

    let run = cluster.run(&["promote", "--target", KINDLESS, "--route", "reviews", "v3"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(cluster.weights(), [json!(0), json!(0), json!(100)]);

    let run = cluster.run(&["abort", "--target", TARGET, "--route", "reviews"]);
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(cluster.weights(), [json!(100), json!(0), json!(0)]);
    assert_eq!(cluster.api.served_with("PATCH").len(), 2);
}

#[test]
fn set_weight_survives_conflicts_and_keeps_the_other_writers_change() {
    let cluster = Cluster::with(vec![rendered()]);
    cluster.api.concurrent_write(Box::new(|object| {
        let mut config = config(object);
        config["routes"][0]["stickiness"]["salt"] = json!("reviews-2026-12");
        *object.pointer_mut(CONFIG).unwrap() = json!(config.to_string());
    }));
    cluster.api.force_conflicts(1);

    let run = cluster.run(&[
        "set-weight",
        "--target",
        TARGET,
        "--route",
        "reviews",
        "v3=0",
    ]);
    assert!(run.succeeded(), "{run:?}");
    let statuses: Vec<u16> = cluster
        .api
        .served_with("PATCH")
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(statuses, [409, 409, 200]);
    assert_eq!(cluster.weights(), [json!(90), json!(10), json!(0)]);
    assert_eq!(
        config(&cluster.envoy_filter())["routes"][0]["stickiness"]["salt"],
        "reviews-2026-12",
        "the other writer's change is kept"
    );
}

#[test]
fn a_rollout_is_promoted_and_recorded_on_the_envoy_filter() {
    let cluster = Cluster::with(vec![rendered()]);
    let metrics = support::stand_in_envoy_admin("reviews", "v1", "v2", 0);
    let run = cluster.run(&support::rollout_args(TARGET, "v2", &metrics));
    assert!(run.succeeded(), "{run:?}");
    assert!(run.stdout.contains("step 2/2 passed"), "{run:?}");
    assert_eq!(cluster.weights(), [json!(0), json!(100), json!(0)]);
    let record = cluster.envoy_filter()["metadata"]["annotations"]
        ["rollout.canary-router.io/reviews"]
        .as_str()
        .map(|text| serde_json::from_str::<Value>(text).expect("JSON"))
        .expect("the rollout record");
    assert_eq!(record["state"], "promoted", "{record}");
}

#[test]
fn an_invalid_configuration_is_never_written() {
    let cluster = Cluster::with(vec![rendered()]);
    let run = cluster.run(&[
        "set-weight",
        "--target",
        TARGET,
        "--route",
        "reviews",
        "v2=95",
    ]);
    assert_eq!(run.code, Some(1), "the baseline would go below 0: {run:?}");
    assert!(cluster.api.served_with("PATCH").is_empty());
    assert_eq!(cluster.weights(), [json!(80), json!(10), json!(10)]);
}

#[test]
fn an_envoy_filter_with_neither_filter_is_not_a_target() {
    let mut neither = rendered();
    // The filter_config is a BytesValue: not the plugin configuration as the module takes it.
    neither["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["filter_config"]
        ["@type"] = json!("type.googleapis.com/google.protobuf.BytesValue");
    let cluster = Cluster::with(vec![neither]);

    let run = cluster.run(&["status", "--target", KINDLESS]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(
            "no WasmPlugin, TrafficExtension or EnvoyFilter named \"reviews-canary\" in namespace \"bookinfo\""
        ),
        "{run:?}"
    );

    let run = cluster.run(&[
        "set-weight",
        "--target",
        TARGET,
        "--route",
        "reviews",
        "v2=30",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    for part in [
        "EnvoyFilter bookinfo/reviews-canary has no spec.configPatches[].patch.value.typed_config",
        "a Wasm filter with the plugin configuration in config.configuration",
        "the dynamic module's DynamicModuleFilter with it in filter_config",
    ] {
        assert!(run.stderr.contains(part), "{part}: {run:?}");
    }
    assert!(cluster.api.served_with("PATCH").is_empty());
}

#[test]
fn an_envoy_filter_with_both_filters_is_refused_naming_both() {
    // The dynamic module's EXTENSION_CONFIG patch and, after it, the Wasm filter's.
    let mut both = rendered();
    let wasm = support::rendered_envoy_filter()["spec"]["configPatches"][0].clone();
    both["spec"]["configPatches"]
        .as_array_mut()
        .unwrap()
        .push(wasm);
    let cluster = Cluster::with(vec![both]);
    let before = cluster.envoy_filter();

    for target in [KINDLESS, TARGET] {
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
            let fields = "spec.configPatches[0].patch.value.typed_config.filter_config.value \
                (the dynamic module's DynamicModuleFilter) and \
                spec.configPatches[2].patch.value.typed_config.config.configuration.value \
                (the Wasm filter)";
            let message = format!(
                "EnvoyFilter bookinfo/reviews-canary carries 2 plugin configurations, in {fields}; \
                 canaryctl changes an object with exactly one"
            );
            assert!(run.stderr.contains(&message), "{message}: {run:?}");
        }
    }
    assert!(cluster.api.served_with("PATCH").is_empty());
    assert_eq!(cluster.envoy_filter(), before, "nothing was written");
}

/// As the controller's ServiceAccount, bound to nothing but the Role and RoleBinding
/// `render --rbac` gives for the dynamic-module EnvoyFilter, every command succeeds, with the
/// kind in the target and without it (then only the reads of the kinds not granted are
/// refused).
#[test]
fn the_rendered_role_is_enough_for_every_command() {
    let objects = render(&["--rbac", ACCOUNT]);
    let (role, binding) = (of_kind(&objects, "Role"), of_kind(&objects, "RoleBinding"));
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["networking.istio.io"], "resources": ["envoyfilters"],
                "resourceNames": ["reviews-canary"], "verbs": ["get", "patch"]}])
    );
    let cluster = Cluster::with(vec![of_kind(&objects, "EnvoyFilter")]);
    cluster.api.token(TOKEN, USER);
    let yaml: Vec<String> = [&role, &binding]
        .into_iter()
        .map(|object| serde_yaml::to_string(object).expect("YAML"))
        .collect();
    cluster.api.apply_rbac(&yaml.join("---\n"));
    let kubeconfig = cluster
        .api
        .kubeconfig_at(&cluster.dir.path().join("service-account"), TOKEN);
    let run = |args: &[&str]| canaryctl(args, Some(&kubeconfig));

    for target in [TARGET, KINDLESS] {
        let run_status = run(&["status", "--target", target]);
        assert!(run_status.succeeded(), "status: {run_status:?}");
        let abort = run(&["abort", "--target", target, "--route", "reviews"]);
        assert!(abort.succeeded(), "abort: {abort:?}");
        assert_eq!(cluster.weights(), [json!(100), json!(0), json!(0)]);
        let set = run(&[
            "set-weight",
            "--target",
            target,
            "--route",
            "reviews",
            "v2=30",
        ]);
        assert!(set.succeeded(), "set-weight: {set:?}");
        assert_eq!(cluster.weights(), [json!(70), json!(30), json!(0)]);
        let promote = run(&["promote", "--target", target, "--route", "reviews", "v3"]);
        assert!(promote.succeeded(), "promote: {promote:?}");
        assert_eq!(cluster.weights(), [json!(0), json!(0), json!(100)]);
    }
    let refused: Vec<(String, String, u16)> = cluster
        .api
        .served()
        .into_iter()
        .filter(|s| s.status == 401 || s.status == 403)
        .map(|s| (s.method, s.uri, s.status))
        .collect();
    assert!(
        !refused.is_empty(),
        "the kindless target looked up the other kinds"
    );
    for (method, uri, status) in refused {
        assert_eq!((method.as_str(), status), ("GET", 403), "{uri}");
        assert!(
            uri.contains("/wasmplugins/") || uri.contains("/trafficextensions/"),
            "only the kinds the Role does not grant: {uri}"
        );
    }
}

/// Without TLS or `--insecure-grpc`, `serve` refuses to push a dynamic-module EnvoyFilter's
/// configuration (it carries the salt and the targeting values) in plaintext; it starts with
/// `--insecure-grpc`, and its API edits the EnvoyFilter.
#[test]
fn serve_refuses_a_plaintext_ecds_server_for_it_unless_asked_for_by_name() {
    let cluster = Cluster::with(vec![rendered()]);
    let token = cluster.dir.path().join("token");
    std::fs::write(&token, "api-token\n").expect("write token");
    let serve = |more: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_canaryctl"));
        command
            .args(["serve", "--target", TARGET])
            .args(["--listen=127.0.0.1:0", "--grpc-listen=127.0.0.1:0"])
            .arg("--token-file")
            .arg(&token)
            .args(more)
            .env("KUBECONFIG", cluster.api.kubeconfig(cluster.dir.path()))
            .env("HOME", cluster.dir.path())
            .env_remove("CANARYCTL_TOKEN")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("start canaryctl serve")
    };

    let output = serve(&[]).wait_with_output().expect("canaryctl serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for part in [
        "kube://bookinfo/envoyfilter/reviews-canary holds an ECDS resource for the ECDS server to push",
        "the ECDS server needs TLS",
        "--insecure-grpc",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }

    // With it, serve starts, and its API changes the weights in the filter_config string.
    let mut child = serve(&["--insecure-grpc"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    let http = line.split_whitespace().nth(2).map(str::to_owned);
    let answer = http.as_deref().map(|addr| {
        put(
            addr,
            "/v1/routes/reviews/weights",
            "api-token",
            r#"{"weights":{"v2":25}}"#,
        )
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("serving: http "), "{line:?}");
    let answer = answer.expect("an HTTP address");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(cluster.weights(), [json!(65), json!(25), json!(10)]);
}

/// One HTTP/1.1 PUT of a JSON body with a bearer token; the whole response.
fn put(addr: &str, path: &str, token: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: canaryctl\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}
