//! `canaryctl validate`: accepts every example, and rejects each malformed configuration in
//! `tests/invalid/` with exit code 1 and the errors its `# expect: PATH: reason` lines name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn canaryctl(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_canaryctl"))
        .args(args)
        .output()
        .expect("run canaryctl");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn validate(path: &Path) -> Run {
    canaryctl(&["validate", path.to_str().expect("utf-8 path")])
}

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn accepts_every_example() {
    let examples = files("../examples");
    assert!(examples.len() >= 3, "examples: {examples:?}");
    for path in examples {
        let run = validate(&path);
        assert_eq!(run.code, Some(0), "{}: {}", path.display(), run.stderr);
        assert!(
            run.stdout.contains(": valid "),
            "{}: {}",
            path.display(),
            run.stdout
        );
        assert!(run.stderr.is_empty(), "{}: {}", path.display(), run.stderr);
    }
}

#[test]
fn rejects_each_malformed_configuration_with_its_path_and_reason() {
    let cases = files("tests/invalid");
    let mut expectations = BTreeSet::new();
    for path in &cases {
        let text = std::fs::read_to_string(path).expect("read fixture");
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{}: no `# expect:` line",
            path.display()
        );
        let run = validate(path);
        assert_eq!(
            run.code,
            Some(1),
            "{}: exit code\n{}",
            path.display(),
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{}: {}", path.display(), run.stdout);
        let lines: Vec<&str> = run.stderr.lines().collect();
        for want in &expected {
            let (want_path, want_reason) = want.split_once(": ").expect("PATH: reason");
            let found = lines.iter().any(|line| {
                line.split_once(": ")
                    .is_some_and(|(p, reason)| p == want_path && reason.starts_with(want_reason))
            });
            assert!(
                found,
                "{}: want `{want}` in:\n{}",
                path.display(),
                run.stderr
            );
            expectations.insert(want.to_string());
        }
        assert!(
            lines.iter().all(|line| line.contains(": ")),
            "{}: every error line is `PATH: reason`:\n{}",
            path.display(),
            run.stderr
        );
    }
    assert!(
        cases.len() >= 20,
        "{} malformed configurations",
        cases.len()
    );
    assert!(
        expectations.len() >= cases.len(),
        "each fixture tests a distinct error"
    );
}

#[test]
fn reads_json_by_its_extension_and_reports_syntax_errors_at_the_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"routes": [}"#).expect("write");
    let run = validate(&path);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.starts_with("$: invalid JSON: "),
        "{}",
        run.stderr
    );

    std::fs::write(
        &path,
        r#"{"routes": [{"name": "a", "variants": [{"name": "s", "weight": 100.5}]}]}"#,
    )
    .expect("write");
    let run = validate(&path);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        "routes[0].variants[0].weight: must be between 0 and 100, not 100.5\n"
    );
}

#[test]
fn usage_errors_exit_2_and_unreadable_files_exit_1() {
    let run = canaryctl(&["validate"]);
    assert_eq!(run.code, Some(2), "missing FILE: {}", run.stderr);
    let run = canaryctl(&["validate", "/nonexistent/canary.yaml"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot read /nonexistent/canary.yaml"),
        "{}",
        run.stderr
    );
}
