//! The Istio CRDs of `tests/fixtures/istio-crds/` and Envoy Gateway's of
//! `tests/fixtures/envoy-gateway-crds/`, and a strict check of a resource against them:
//! the API server's validation (`support/schema.rs`: the structural schema and the CEL rules),
//! plus what a closed schema adds: no field the server would prune (schemas are closed except
//! where they say `x-kubernetes-preserve-unknown-fields`), a served `apiVersion`, the CRD's
//! `kind` and a sound `metadata`.

use std::path::PathBuf;

use regex::Regex;
use serde_json::Value;

use crate::schema;

pub struct Crds(Vec<Value>);

impl Crds {
    /// Every `*.yaml` in `tests/fixtures/istio-crds/` and `tests/fixtures/envoy-gateway-crds/`.
    pub fn load() -> Crds {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut crds = Vec::new();
        for (dir, at_least) in [("istio-crds", 5), ("envoy-gateway-crds", 1)] {
            let dir = fixtures.join(dir);
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("the CRDs in {}: {e}", dir.display()));
            let found: Vec<Value> = entries
                .map(|entry| entry.expect("directory entry").path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
                .map(|path| {
                    let text = std::fs::read_to_string(&path).expect("read a CRD");
                    serde_yaml::from_str(&text).expect("parse a CRD")
                })
                .collect();
            assert!(
                found.len() >= at_least,
                "found {} CRDs in {}",
                found.len(),
                dir.display()
            );
            crds.extend(found);
        }
        Crds(crds)
    }

    /// Every problem with `doc`, as `path: message`.
    pub fn check(&self, doc: &Value) -> Vec<String> {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let Some(schema) = self.schema(group, version, kind) else {
            return vec![format!(
                "<root>: no served CRD version for apiVersion {api_version:?} kind {kind:?}"
            )];
        };
        let mut errors = check_metadata(&doc["metadata"]);
        // The API server checks `metadata` as ObjectMeta whatever the CRD's schema says of it
        // (Envoy Gateway's says only `type: object`): `check_metadata` stands in for that.
        let mut body = doc.clone();
        if let Some(fields) = body.as_object_mut() {
            fields.shift_remove("metadata");
        }
        let mut pruned = body.clone();
        for (path, message) in schema::validate(schema, &mut pruned) {
            errors.push(format!("{path}: {message}"));
        }
        unknown_fields(&body, &pruned, "", &mut errors);
        errors
    }

    fn schema(&self, group: &str, version: &str, kind: &str) -> Option<&Value> {
        let crd = self
            .0
            .iter()
            .find(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)?;
        let v = crd["spec"]["versions"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == version && v["served"] == true)?;
        Some(&v["schema"]["openAPIV3Schema"])
    }
}

fn check_metadata(metadata: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(fields) = metadata.as_object() else {
        return vec!["metadata: must be an object".to_owned()];
    };
    for key in fields.keys() {
        if !matches!(
            key.as_str(),
            "name" | "namespace" | "labels" | "annotations"
        ) {
            errors.push(format!("metadata.{key}: unknown field"));
        }
    }
    let dns = Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("regex");
    for key in ["name", "namespace"] {
        match fields.get(key).and_then(Value::as_str) {
            Some(s) if dns.is_match(s) && s.len() <= 253 => {}
            other => errors.push(format!("metadata.{key}: invalid {other:?}")),
        }
    }
    for key in ["labels", "annotations"] {
        if let Some(map) = fields.get(key) {
            let strings = map
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !strings {
                errors.push(format!("metadata.{key}: must map strings to strings"));
            }
        }
    }
    errors
}

/// Fields of `original` that pruning removed: the schema does not know them.
fn unknown_fields(original: &Value, pruned: &Value, path: &str, errors: &mut Vec<String>) {
    match (original, pruned) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let p = join(path, key);
                match b.get(key) {
                    Some(kept) => unknown_fields(value, kept, &p, errors),
                    None => errors.push(format!("{p}: unknown field")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
