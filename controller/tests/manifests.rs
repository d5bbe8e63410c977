//! The Kubernetes manifests for `canaryctl serve` (envoyfilter/controller/): every document is
//! a well-formed Kubernetes object (read into the k8s-openapi types, with nothing the types do
//! not know), and the pieces fit together: the selectors pick the pod, the Service reaches the
//! container's ports, the arguments are ones `canaryctl serve` accepts, and the Role grants
//! exactly what `canaryctl render --rbac` grants for the example spec of the target: get and
//! patch on that one object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use canaryctl::args::{Args, Command};
use canaryctl::document::{self, Kind as DocumentKind};
use canaryctl::spec::Spec;
use canaryctl::targets::{Kind, Target};
use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

fn manifest_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../envoyfilter/controller/canaryctl.yaml")
}

/// The documents of the manifest, by kind.
fn documents() -> BTreeMap<String, Vec<Value>> {
    let text = std::fs::read_to_string(manifest_path()).unwrap();
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).unwrap();
        let kind = value["kind"]
            .as_str()
            .expect("every document has a kind")
            .to_owned();
        by_kind.entry(kind).or_default().push(value);
    }
    by_kind
}

/// The one document of `kind`, read into its k8s-openapi type; it must come back the same
/// when written again, so no field is unknown to the type or misspelled.
fn one<T: DeserializeOwned + serde::Serialize>(
    docs: &BTreeMap<String, Vec<Value>>,
    kind: &str,
) -> T {
    let [document] = docs.get(kind).map(Vec::as_slice).unwrap_or_default() else {
        panic!("exactly one {kind}");
    };
    let typed: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{kind} is not a valid {kind}: {e}"));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(&again, document, "{kind} has fields its type does not know");
    typed
}

/// The example spec (`examples/`) of the filter resource `name` in `namespace`.
fn example_of(namespace: &str, name: &str) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let value = document::load(&path).unwrap();
        if document::kind(&value) != DocumentKind::CanarySpec {
            continue;
        }
        let spec = Spec::from_value(value).unwrap();
        if spec.namespace == namespace && spec.name == name {
            found.push(path);
        }
    }
    let [path] = found.as_slice() else {
        panic!("one example spec of {namespace}/{name}, not {found:?}");
    };
    path.clone()
}

/// The Role and RoleBinding `canaryctl render SPEC --api API --rbac ACCOUNT` prints.
fn rendered_rbac(spec: &Path, api: &str, account: &str) -> (Role, RoleBinding) {
    let out = Process::new(env!("CARGO_BIN_EXE_canaryctl"))
        .args(["render", spec.to_str().unwrap(), "--api", api])
        .args(["--rbac", account])
        .output()
        .expect("run canaryctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&stdout)
        .map(|document| Value::deserialize(document).unwrap())
        .collect();
    let of_kind = |kind: &str| {
        let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
        let [document] = found.as_slice() else {
            panic!("one rendered {kind}");
        };
        (*document).clone()
    };
    (
        serde_json::from_value(of_kind("Role")).unwrap(),
        serde_json::from_value(of_kind("RoleBinding")).unwrap(),
    )
}

fn serve_container(deployment: &Deployment) -> Container {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec");
    let [container] = pod.containers.as_slice() else {
        panic!("one container");
    };
    container.clone()
}

#[test]
fn the_controller_manifests_fit_together() {
    let docs = documents();
    assert_eq!(
        docs.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    let account: ServiceAccount = one(&docs, "ServiceAccount");
    let role: Role = one(&docs, "Role");
    let binding: RoleBinding = one(&docs, "RoleBinding");
    let deployment: Deployment = one(&docs, "Deployment");
    let service: Service = one(&docs, "Service");

    // The Deployment's selector picks its own pods, and so does the Service's.
    let spec = deployment.spec.as_ref().unwrap();
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap();
    let selector = spec.selector.match_labels.clone().expect("matchLabels");
    assert!(!selector.is_empty());
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "{selector:?} ⊄ {pod_labels:?}"
    );
    let service_spec = service.spec.as_ref().unwrap();
    let service_selector = service_spec.selector.clone().expect("a Service selector");
    assert!(!service_selector.is_empty());
    assert!(
        service_selector
            .iter()
            .all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the Service selects no pod of the Deployment"
    );
    let namespace = deployment.metadata.namespace.clone().expect("a namespace");
    assert_eq!(service.metadata.namespace.as_ref(), Some(&namespace));

    // The Service's targetPorts are container ports, and the arguments listen on them.
    let container = serve_container(&deployment);
    let ports: BTreeMap<String, i32> = container
        .ports
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.expect("named ports"), p.container_port))
        .collect();
    for port in service_spec.ports.clone().unwrap() {
        let target = port.target_port.clone().expect("a targetPort");
        let number = match target {
            IntOrString::String(name) => *ports
                .get(&name)
                .unwrap_or_else(|| panic!("no container port {name}")),
            IntOrString::Int(n) => n,
        };
        assert!(
            ports.values().any(|p| *p == number),
            "targetPort {number} is no container port"
        );
    }
    for probe in [&container.readiness_probe, &container.liveness_probe] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("an HTTP probe");
        assert!(matches!(&get.port, IntOrString::String(name) if ports.contains_key(name)));
    }
    let mut argv = vec!["canaryctl".to_owned()];
    argv.extend(container.args.clone().unwrap_or_default());
    let Command::Serve(serve) = Args::try_parse_from(&argv)
        .expect("arguments canaryctl accepts")
        .command
    else {
        panic!("the container runs canaryctl serve");
    };
    assert_eq!(i32::from(serve.listen.port()), ports["http"]);
    assert_eq!(i32::from(serve.grpc_listen.port()), ports["grpc-ecds"]);
    let token_file = serve.token_file.expect("the token comes from a file");
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| token_file.starts_with(&m.mount_path) && m.read_only == Some(true)),
        "the token file is on a read-only mount"
    );

    // The pod runs as the ServiceAccount, bound to the Role where the target lives.
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, account.metadata.name);
    assert_eq!(account.metadata.namespace.as_ref(), Some(&namespace));
    let Target::Kube {
        kind,
        namespace: target_namespace,
        name: target_name,
    } = serve.target.target.parse().unwrap()
    else {
        panic!("a kube:// target");
    };
    assert_eq!(role.metadata.namespace.as_ref(), Some(&target_namespace));
    assert_eq!(binding.metadata.namespace.as_ref(), Some(&target_namespace));
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.clone().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace.as_ref(), Some(&namespace));

    // Least privilege: the Role grants what `canaryctl render --rbac` grants for the spec the
    // target was rendered from (get and patch on that one object), and nothing more. The
    // target names its kind, so that canaryctl reads no kind the Role does not grant.
    let kind: Kind = kind.expect("a kube://NAMESPACE/KIND/NAME target");
    let example = example_of(&target_namespace, &target_name);
    let service_account = format!("{namespace}/{}", account.metadata.name.clone().unwrap());
    let (want_role, want_binding) = rendered_rbac(&example, kind.lowercase(), &service_account);
    assert_eq!(
        role.rules,
        want_role.rules,
        "the Role grants what `canaryctl render {} --api {} --rbac {service_account}` grants",
        example.display(),
        kind.lowercase()
    );
    assert_eq!(binding.subjects, want_binding.subjects);
    assert_eq!(want_role.metadata.namespace, role.metadata.namespace);
}

#[test]
fn the_example_envoy_bootstrap_reaches_the_service_ports() {
    let docs = documents();
    let service: Service = one(&docs, "Service");
    let port = |name: &str| {
        service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| i64::from(p.port))
            .unwrap_or_else(|| panic!("no Service port {name}"))
    };
    let path = manifest_path().with_file_name("envoy-ecds-grpc.yaml");
    let bootstrap: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cluster_port = |name: &str| {
        bootstrap["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| {
                c.pointer("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/port_value")
            })
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("no cluster {name}"))
    };
    assert_eq!(cluster_port("canaryctl"), port("grpc-ecds"));
    assert_eq!(cluster_port("canary-module"), port("http"));
}
