//! canaryctl and the filter give every plugin configuration the same verdict.
//!
//! Documents start from the valid examples and are mutated (keys dropped, duplicated and
//! renamed, values changed in type, weights and names changed), then written as JSON and as
//! YAML. For each, `canaryctl validate` (its library entry, and the binary on a sample) must
//! accept exactly what `canary_filter::parse` accepts on the JSON bytes, with the same errors
//! for JSON, and an accepted document must compile to the same table either way.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use canary_filter::fuzzing::table_form;
use canary_filter::ConfigErrors;
use canaryctl::commands::validate;
use canaryctl::document::{self, DocumentError};
use proptest::prelude::*;
use serde_json::{Number, Value};

/// A JSON document that can hold a duplicate key, which `serde_json::Value` cannot.
#[derive(Debug, Clone)]
enum Doc {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

impl Doc {
    fn from_value(value: &Value) -> Doc {
        match value {
            Value::Null => Doc::Null,
            Value::Bool(b) => Doc::Bool(*b),
            Value::Number(n) => Doc::Number(n.clone()),
            Value::String(s) => Doc::String(s.clone()),
            Value::Array(items) => Doc::Array(items.iter().map(Doc::from_value).collect()),
            Value::Object(map) => Doc::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Doc::from_value(v)))
                    .collect(),
            ),
        }
    }

    fn json(&self, out: &mut String) {
        match self {
            Doc::Null => out.push_str("null"),
            Doc::Bool(b) => out.push_str(&b.to_string()),
            Doc::Number(n) => out.push_str(&n.to_string()),
            Doc::String(s) => out.push_str(&quoted(s)),
            Doc::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.json(out);
                }
                out.push(']');
            }
            Doc::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&quoted(key));
                    out.push(':');
                    value.json(out);
                }
                out.push('}');
            }
        }
    }

    /// Block-style YAML; scalars, keys and empty collections as their JSON text, which YAML
    /// reads the same.
    fn yaml(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Doc::Array(items) if !items.is_empty() => {
                for item in items {
                    out.push_str(&pad);
                    out.push('-');
                    item.yaml_after(indent, out);
                }
            }
            Doc::Object(members) if !members.is_empty() => {
                for (key, value) in members {
                    out.push_str(&pad);
                    out.push_str(&quoted(key));
                    out.push(':');
                    value.yaml_after(indent, out);
                }
            }
            scalar => {
                out.push_str(&pad);
                scalar.json(out);
                out.push('\n');
            }
        }
    }

    /// The value after a `-` or `key:`: on the same line if it is a scalar, else below.
    fn yaml_after(&self, indent: usize, out: &mut String) {
        match self {
            Doc::Array(items) if !items.is_empty() => {
                out.push('\n');
                self.yaml(indent + 2, out);
            }
            Doc::Object(members) if !members.is_empty() => {
                out.push('\n');
                self.yaml(indent + 2, out);
            }
            scalar => {
                out.push(' ');
                scalar.json(out);
                out.push('\n');
            }
        }
    }

    /// Every value in the document, depth first, as child index paths.
    fn paths(&self, at: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        out.push(at.clone());
        let children: Vec<&Doc> = match self {
            Doc::Array(items) => items.iter().collect(),
            Doc::Object(members) => members.iter().map(|(_, v)| v).collect(),
            _ => Vec::new(),
        };
        for (i, child) in children.into_iter().enumerate() {
            at.push(i);
            child.paths(at, out);
            at.pop();
        }
    }

    fn at_mut(&mut self, path: &[usize]) -> Option<&mut Doc> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        let child = match self {
            Doc::Array(items) => items.get_mut(*first)?,
            Doc::Object(members) => &mut members.get_mut(*first)?.1,
            _ => return None,
        };
        child.at_mut(rest)
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// One change to a document, applied at the `target`-th value (modulo their number).
#[derive(Debug, Clone)]
enum Mutation {
    DropKey(usize),
    DuplicateKey(usize, Doc),
    RenameKey(usize, String),
    Replace(Doc),
    Weight(f64),
    Name(String),
}

const KEYS: &[&str] = &[
    "name",
    "weight",
    "variants",
    "routes",
    "match",
    "hosts",
    "pathPrefixes",
    "targeting",
    "header",
    "cookie",
    "query",
    "equals",
    "in",
    "prefix",
    "matches",
    "present",
    "variant",
    "stickiness",
    "keys",
    "salt",
    "maxAge",
    "sameSite",
    "secure",
    "decisionHeader",
    "debugHeader",
    "seal",
    "secret",
    "previousSecrets",
    "Name",
    "extra",
];

const NAMES: &[&str] = &[
    "stable",
    "canary",
    "a",
    "",
    "Reviews",
    "x-canary-variant",
    "with space",
    "é",
    "0123456789abcdef0123456789abcdef",
    "aZ3_kQ9-aB7cD1eF2gH4iJ",
    "*.example.com",
    "/api/",
    "(a",
    "Lax",
    "None",
];

fn scalar() -> impl Strategy<Value = Doc> {
    prop_oneof![
        Just(Doc::Null),
        any::<bool>().prop_map(Doc::Bool),
        prop_oneof![Just(-1i64), Just(0), Just(1), Just(100), Just(2_592_000)]
            .prop_map(|n| Doc::Number(n.into())),
        prop_oneof![Just(0.5f64), Just(33.3335), Just(1e3), Just(-0.0)]
            .prop_map(|f| Doc::Number(Number::from_f64(f).expect("finite"))),
        proptest::sample::select(NAMES).prop_map(|s| Doc::String(s.to_owned())),
    ]
}

fn doc() -> impl Strategy<Value = Doc> {
    scalar().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Doc::Array),
            proptest::collection::vec(
                (
                    proptest::sample::select(KEYS).prop_map(str::to_owned),
                    inner
                ),
                0..3
            )
            .prop_map(Doc::Object),
        ]
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => any::<usize>().prop_map(Mutation::DropKey),
        2 => (any::<usize>(), doc()).prop_map(|(i, d)| Mutation::DuplicateKey(i, d)),
        1 => (any::<usize>(), proptest::sample::select(KEYS))
            .prop_map(|(i, k)| Mutation::RenameKey(i, k.to_owned())),
        2 => doc().prop_map(Mutation::Replace),
        2 => prop_oneof![
            Just(0.0f64), Just(10.0), Just(90.0), Just(100.0), Just(150.0), Just(-5.0),
            Just(89.999), Just(10.001), Just(33.3335),
        ]
        .prop_map(Mutation::Weight),
        2 => proptest::sample::select(NAMES).prop_map(|s| Mutation::Name(s.to_owned())),
    ]
}

fn apply(doc: &mut Doc, target: usize, mutation: Mutation) {
    let mut paths = Vec::new();
    doc.paths(&mut Vec::new(), &mut paths);
    // Each change goes where it can apply: a key change to an object, a new weight or name to
    // an object that has one.
    let fits = |node: &Doc| match (&mutation, node) {
        (Mutation::Replace(_), _) => true,
        (Mutation::Weight(_), Doc::Object(m)) => m.iter().any(|(k, _)| k == "weight"),
        (Mutation::Name(_), Doc::Object(m)) => m.iter().any(|(k, _)| k == "name"),
        (Mutation::Weight(_) | Mutation::Name(_), _) => false,
        (_, Doc::Object(m)) => !m.is_empty(),
        _ => false,
    };
    let candidates: Vec<&Vec<usize>> = paths
        .iter()
        .filter(|path| doc.clone().at_mut(path).is_some_and(|node| fits(node)))
        .collect();
    let Some(path) = candidates.get(target % candidates.len().max(1)) else {
        return;
    };
    let Some(node) = doc.at_mut(path) else {
        return;
    };
    match (mutation, node) {
        (Mutation::DropKey(i), Doc::Object(members)) => {
            members.remove(i % members.len());
        }
        (Mutation::DuplicateKey(i, value), Doc::Object(members)) => {
            let key = members[i % members.len()].0.clone();
            members.push((key, value));
        }
        (Mutation::RenameKey(i, key), Doc::Object(members)) => {
            let n = members.len();
            members[i % n].0 = key;
        }
        (Mutation::Replace(value), node) => *node = value,
        (Mutation::Weight(w), node) => set_member(
            node,
            "weight",
            Doc::Number(Number::from_f64(w).expect("finite")),
        ),
        (Mutation::Name(name), node) => set_member(node, "name", Doc::String(name)),
        _ => {}
    }
}

/// Sets `key` in an object that has it; anything else is left alone.
fn set_member(node: &mut Doc, key: &str, value: Doc) {
    if let Doc::Object(members) = node {
        for (k, v) in members.iter_mut() {
            if k == key {
                *v = value;
                return;
            }
        }
    }
}

fn base_documents() -> Vec<Value> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let json = std::fs::read_to_string(examples.join("plugin-config.json")).expect("example");
    let mut documents = vec![serde_json::from_str(&json).expect("example is JSON")];
    for spec in ["bookinfo-reviews.yaml", "web-gateway.yaml"] {
        let text = std::fs::read_to_string(examples.join(spec)).expect("example");
        let spec: Value = serde_yaml::from_str(&text).expect("example is YAML");
        documents.push(spec["pluginConfig"].clone());
    }
    documents.push(serde_json::json!({
        "seal": "0123456789abcdef0123456789abcdef",
        "routes": [
            { "name": "a", "variants": [{ "name": "x", "weight": 50 }, { "name": "y", "weight": 50 }],
              "targeting": [{ "name": "t", "header": "h", "matches": "v[0-9]+", "variant": "y" }] },
            { "name": "b", "match": { "pathPrefixes": ["/b/"] },
              "variants": [{ "name": "x", "weight": 100 }],
              "stickiness": { "cookie": { "name": "id", "maxAge": 60, "sameSite": "Strict" } } }
        ]
    }));
    documents.push(serde_json::json!({
        "routes": [
            { "name": "q", "variants": [{ "name": "x", "weight": 50 }, { "name": "y", "weight": 50 }],
              "targeting": [{ "name": "t", "query": "canary", "equals": "always", "variant": "y" }],
              "stickiness": { "cookie": { "name": "id", "secret": "aZ3_kQ9-aB7cD1eF2gH4iJ",
                  "previousSecrets": ["0123456789abcdef0123456789abcdef"] } } }
        ]
    }));
    documents
}

/// The errors of canaryctl's verdict on a JSON file, as the filter would list them.
fn errors_of(verdict: &Result<Result<String, ConfigErrors>, DocumentError>) -> Option<String> {
    match verdict {
        Ok(Ok(_)) => None,
        Ok(Err(errors)) | Err(DocumentError::Refused(errors)) => Some(errors.to_string()),
        Err(other) => Some(other.to_string()),
    }
}

static CASES: AtomicUsize = AtomicUsize::new(0);

fn check(json: &str, yaml: &str) -> Result<(), TestCaseError> {
    let filter = canary_filter::parse(json.as_bytes());
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in [("config.json", json), ("config.yaml", yaml)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let verdict = validate::check(&path);
        let accepted = matches!(verdict, Ok(Ok(_)));
        prop_assert_eq!(
            accepted,
            filter.is_ok(),
            "{}: canaryctl {:?}, filter {:?}\n{}",
            name,
            verdict,
            filter.as_ref().err(),
            text
        );
        if name.ends_with(".json") {
            let ours = errors_of(&verdict);
            let theirs = filter.as_ref().err().map(ToString::to_string);
            // A document taken for a canary spec is refused with the spec's errors.
            let as_spec = document::load(&path)
                .is_ok_and(|v| document::kind(&v) == document::Kind::CanarySpec);
            if !as_spec {
                prop_assert_eq!(ours, theirs, "{}", text);
            }
        }
        if let Ok(table) = &filter {
            let value = document::load(&path).expect("accepted, so readable");
            let ours = document::compile(&value).expect("accepted");
            prop_assert_eq!(table_form(&ours), table_form(table), "{}", name);
        }
        // The binary itself, on a sample.
        if CASES.fetch_add(1, Ordering::Relaxed).is_multiple_of(16) {
            let status = Command::new(env!("CARGO_BIN_EXE_canaryctl"))
                .arg("validate")
                .arg(&path)
                .output()
                .expect("run canaryctl")
                .status;
            prop_assert_eq!(status.success(), filter.is_ok(), "binary on {}", name);
        }
    }
    Ok(())
}

fn render(doc: &Doc) -> (String, String) {
    let mut json = String::new();
    doc.json(&mut json);
    let mut yaml = String::new();
    doc.yaml(0, &mut yaml);
    (json, yaml)
}

#[test]
fn the_examples_are_accepted_by_both() {
    for value in base_documents() {
        let (json, yaml) = render(&Doc::from_value(&value));
        assert!(canary_filter::parse(json.as_bytes()).is_ok(), "{json}");
        check(&json, &yaml).unwrap_or_else(|e| panic!("{e}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn canaryctl_and_the_filter_agree_on_mutated_documents(
        base in 0usize..4,
        mutations in proptest::collection::vec((any::<usize>(), mutation()), 1..4),
    ) {
        let mut doc = Doc::from_value(&base_documents()[base]);
        for (target, mutation) in mutations {
            apply(&mut doc, target, mutation);
        }
        let (json, yaml) = render(&doc);
        check(&json, &yaml)?;
    }

    #[test]
    fn canaryctl_and_the_filter_agree_on_arbitrary_documents(doc in doc()) {
        let (json, yaml) = render(&doc);
        check(&json, &yaml)?;
    }
}

/// Every document of the configuration fuzz target's corpus gets the same verdict and table from
/// canaryctl's readers, as JSON and written as YAML, as from the filter: the check the
/// `validate` fuzz target runs on the documents it makes.
#[test]
fn the_fuzz_corpus_is_judged_alike() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../filter/fuzz/corpus/config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("the configuration fuzz corpus") {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path).expect("a corpus document");
        if let Err(disagreement) =
            document::agrees_with_filter(&data, |a, b| table_form(a) == table_form(b))
        {
            panic!("{}: {disagreement}", path.display());
        }
        checked += 1;
    }
    assert!(
        checked >= 100,
        "only {checked} documents in {}",
        dir.display()
    );
}
