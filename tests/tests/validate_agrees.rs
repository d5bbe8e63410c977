//! `canaryctl validate` and the filter running in a real Envoy give every document of a corpus
//! the same verdict: Envoy accepts over ECDS exactly the plugin configurations `canaryctl
//! validate` accepts, duplicate keys, trailing commas, unknown fields and broken weights
//! included, for both builds of the filter.
//!
//! The corpus is the example configuration, hand-made mutations of it, and the configuration
//! fuzz target's corpus (`filter/fuzz/corpus/config`, the documents that are UTF-8, which an
//! ECDS `StringValue` must be).

use std::path::Path;
use std::process::Command;

use canary_e2e::canaryctl::canaryctl_bin;
use canary_e2e::{for_each_build, workspace_root, Build, Envoy, Upstream};

/// Documents from the fuzz corpus sent through each Envoy, in file-name order.
const FUZZ_DOCUMENTS: usize = 150;

/// The example, and mutations of it that each break one rule (or none).
fn mutations(example: &str) -> Vec<(String, String)> {
    let replace = |from: &str, to: &str| {
        assert!(example.contains(from), "the example has no {from:?}");
        example.replacen(from, to, 1)
    };
    vec![
        ("the example".into(), example.to_owned()),
        (
            "a duplicate top-level key".into(),
            replace(
                "\"debugHeader\": false,",
                "\"debugHeader\": false, \"debugHeader\": true,",
            ),
        ),
        (
            "a duplicate key in a variant".into(),
            replace(
                "{ \"name\": \"canary\", \"weight\": 10 }",
                "{ \"name\": \"canary\", \"weight\": 10, \"weight\": 10 }",
            ),
        ),
        (
            "a trailing comma".into(),
            replace("\"weight\": 10 }", "\"weight\": 10, }"),
        ),
        (
            "an unknown field".into(),
            replace(
                "\"debugHeader\": false,",
                "\"debugHeader\": false, \"debug\": true,",
            ),
        ),
        (
            "weights that sum to 110".into(),
            replace("\"weight\": 90", "\"weight\": 100"),
        ),
        (
            "a weight with 4 decimals".into(),
            replace("\"weight\": 90", "\"weight\": 89.9995"),
        ),
        (
            "weights in thousandths".into(),
            replace("\"weight\": 90", "\"weight\": 89.999").replacen(
                "\"weight\": 10",
                "\"weight\": 10.001",
                1,
            ),
        ),
        (
            "a weight as a string".into(),
            replace("\"weight\": 90", "\"weight\": \"90\""),
        ),
        (
            "response metrics on".into(),
            replace(
                "\"debugHeader\": false,",
                "\"debugHeader\": false, \"metrics\": { \"responses\": true },",
            ),
        ),
        (
            "response metrics as a string".into(),
            replace(
                "\"debugHeader\": false,",
                "\"debugHeader\": false, \"metrics\": { \"responses\": \"yes\" },",
            ),
        ),
        (
            "a targeting rule naming no variant of the route".into(),
            replace(
                "\"equals\": \"never\",  \"variant\": \"stable\"",
                "\"equals\": \"never\",  \"variant\": \"v3\"",
            ),
        ),
        (
            "a rule reading the decision header".into(),
            replace(
                "\"header\": \"x-canary\",",
                "\"header\": \"x-canary-variant\",",
            ),
        ),
        (
            "SameSite None without secure".into(),
            replace("\"secure\": true", "\"secure\": false").replacen(
                "\"sameSite\": \"Lax\"",
                "\"sameSite\": \"None\"",
                1,
            ),
        ),
        (
            "an uppercase route name".into(),
            replace("\"name\": \"reviews\"", "\"name\": \"Reviews\""),
        ),
        (
            "a short seal".into(),
            replace(
                "\"debugHeader\": false,",
                "\"debugHeader\": false, \"seal\": \"short\",",
            ),
        ),
        (
            "a seal of 32 hexadecimal digits".into(),
            replace(
                "\"debugHeader\": false,",
                "\"debugHeader\": false, \"seal\": \"0123456789abcdef0123456789abcdef\",",
            ),
        ),
        (
            "a pin rule and an unpin rule".into(),
            replace(
                "\"equals\": \"always\", \"variant\": \"canary\" }",
                "\"equals\": \"always\", \"variant\": \"canary\", \"pin\": true }",
            )
            .replacen(
                "\"equals\": \"never\",  \"variant\": \"stable\" }",
                "\"equals\": \"never\",  \"variant\": \"stable\", \"unpin\": true }",
                1,
            ),
        ),
        (
            "a rule that both pins and unpins".into(),
            replace(
                "\"equals\": \"always\", \"variant\": \"canary\" }",
                "\"equals\": \"always\", \"variant\": \"canary\", \"pin\": true, \"unpin\": true }",
            ),
        ),
        (
            "session stickiness with a signing secret".into(),
            replace(
                "\"salt\": \"reviews-2026-11\"",
                "\"salt\": \"reviews-2026-11\", \"mode\": \"session\"",
            )
            .replacen(
                "\"sameSite\": \"Lax\"",
                "\"sameSite\": \"Lax\", \"secret\": \"a-signing-secret-of-32-characters\"",
                1,
            ),
        ),
        (
            "session stickiness without a secret".into(),
            replace(
                "\"salt\": \"reviews-2026-11\"",
                "\"salt\": \"reviews-2026-11\", \"mode\": \"session\"",
            ),
        ),
        (
            "an unknown stickiness mode".into(),
            replace(
                "\"salt\": \"reviews-2026-11\"",
                "\"salt\": \"reviews-2026-11\", \"mode\": \"sticky\"",
            ),
        ),
        (
            "a route trusting incoming decisions, with a seal".into(),
            replace(
                "\"debugHeader\": false,",
                "\"debugHeader\": false, \"seal\": \"0123456789abcdef0123456789abcdef\",",
            )
            .replacen(
                "\"name\": \"reviews\",",
                "\"name\": \"reviews\", \"trustIncoming\": true,",
                1,
            ),
        ),
        (
            "a route trusting incoming decisions, without a seal".into(),
            replace(
                "\"name\": \"reviews\",",
                "\"name\": \"reviews\", \"trustIncoming\": true,",
            ),
        ),
        (
            "a ramp".into(),
            replace(
                "\"name\": \"reviews\",",
                "\"name\": \"reviews\", \"ramp\": { \"variant\": \"canary\", \"from\": 10, \"to\": 50, \"start\": \"2026-12-07T12:00:00Z\", \"duration\": \"2h\" },",
            ),
        ),
        (
            "a ramp of the baseline".into(),
            replace(
                "\"name\": \"reviews\",",
                "\"name\": \"reviews\", \"ramp\": { \"variant\": \"stable\", \"from\": 90, \"to\": 50, \"start\": \"2026-12-07T12:00:00Z\", \"duration\": \"2h\" },",
            ),
        ),
        ("an empty document".into(), String::new()),
        ("an empty object".into(), "{}".into()),
        ("a list".into(), "[]".into()),
        ("null".into(), "null".into()),
        (
            "128 levels of nesting".into(),
            format!("{{\"routes\": {}{}}}", "[".repeat(127), "]".repeat(127)),
        ),
        (
            "a document followed by another".into(),
            format!("{example} {{}}"),
        ),
        (
            "a lone surrogate escape in a name".into(),
            replace("\"name\": \"qa\"", "\"name\": \"q\\ud800\""),
        ),
    ]
}

/// The fuzz corpus's documents that are UTF-8, in file-name order, at most `limit`.
fn fuzz_documents(limit: usize) -> Vec<(String, String)> {
    let dir = workspace_root().join("filter/fuzz/corpus/config");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|path| {
            let text = String::from_utf8(std::fs::read(&path).ok()?).ok()?;
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((format!("fuzz corpus {name}"), text))
        })
        .take(limit)
        .collect()
}

/// The corpus, each document once (Envoy would see a repeated document as no change).
fn corpus() -> Vec<(String, String)> {
    let example = std::fs::read_to_string(workspace_root().join("examples/plugin-config.json"))
        .expect("read the example configuration");
    let mut seen = std::collections::HashSet::new();
    mutations(&example)
        .into_iter()
        .chain(fuzz_documents(FUZZ_DOCUMENTS))
        .filter(|(_, document)| seen.insert(document.clone()))
        .collect()
}

/// Whether `canaryctl validate` accepts `document`, written to a `.json` file in `dir`.
fn canaryctl_accepts(dir: &Path, index: usize, document: &str) -> bool {
    let file = dir.join(format!("document-{index}.json"));
    std::fs::write(&file, document).expect("write the document");
    let output = Command::new(canaryctl_bin())
        .arg("validate")
        .arg(&file)
        .output()
        .expect("run canaryctl validate");
    match output.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!(
            "canaryctl validate {}: exit {other:?}\n{}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// A configuration both accept, in force before the corpus.
const MINIMAL: &str =
    r#"{"routes": [{"name": "r", "variants": [{"name": "stable", "weight": 100}]}]}"#;

async fn validate_and_envoy_agree_on_every_document(build: Build) {
    let corpus = corpus();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let by_canaryctl: Vec<bool> = corpus
        .iter()
        .enumerate()
        .map(|(index, (_, document))| canaryctl_accepts(dir.path(), index, document))
        .collect();
    // A corpus that Envoy and canaryctl could agree on by accepting or rejecting everything
    // would prove nothing.
    let accepted = by_canaryctl.iter().filter(|&&accepted| accepted).count();
    assert!(
        accepted >= 5 && accepted + 10 <= corpus.len(),
        "{accepted} of {} documents accepted: the corpus needs both kinds",
        corpus.len()
    );

    eprintln!(
        "{} documents, {accepted} of them accepted by canaryctl validate",
        corpus.len()
    );

    let upstream = Upstream::start("stable").await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &upstream)
        .plugin_config(MINIMAL)
        .start()
        .await;
    let mut last = envoy.push_config(&format!("{MINIMAL} ")).await;
    let mut disagreements = Vec::new();
    for ((label, document), &by_canaryctl) in corpus.iter().zip(&by_canaryctl) {
        let update = envoy.push_config(document).await;
        let by_envoy = match (
            update.success - last.success,
            update.rejected - last.rejected,
        ) {
            (1, 0) => true,
            (0, 1) => false,
            counted => panic!("{label}: Envoy counted {counted:?} (success, rejected)"),
        };
        last = update;
        if by_envoy != by_canaryctl {
            disagreements.push(format!(
                "{label}: Envoy {}, canaryctl validate {}",
                verdict(by_envoy),
                verdict(by_canaryctl)
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} documents judged differently:\n{}",
        disagreements.len(),
        corpus.len(),
        disagreements.join("\n")
    );
}

fn verdict(accepted: bool) -> &'static str {
    if accepted {
        "accepts"
    } else {
        "rejects"
    }
}

for_each_build!(validate_and_envoy_agree_on_every_document);
