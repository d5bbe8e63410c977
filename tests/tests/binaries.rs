//! Every binary of the workspace answers `--help`, and a usage error or a failed run ends with
//! an `error:` line and a non-zero exit, never a panic or a backtrace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use canary_e2e::canaryctl::canaryctl_bin;

fn run(binary: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        // A panic would print its backtrace: the checks below would see it.
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()))
}

fn binaries() -> [(&'static str, PathBuf); 3] {
    [
        ("bench", PathBuf::from(env!("CARGO_BIN_EXE_bench"))),
        (
            "canary-demo",
            PathBuf::from(env!("CARGO_BIN_EXE_canary-demo")),
        ),
        ("canaryctl", canaryctl_bin()),
    ]
}

/// `output` failed with `code` and one `error:` line first, and nothing of a panic.
fn assert_clean_failure(label: &str, output: &Output, code: i32) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{label}: {stderr}");
    assert!(stderr.starts_with("error: "), "{label}: {stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{label}: {stderr}"
    );
    for sign in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(sign), "{label}: {sign} in {stderr}");
    }
}

#[test]
fn every_binary_answers_help() {
    for (name, binary) in binaries() {
        let output = run(&binary, &["--help"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{name} --help: {output:?}");
        assert!(stdout.contains("Usage:"), "{name} --help: {stdout}");
    }
    let help = run(&binaries()[0].1, &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--out",
        "--duration",
        "--rounds",
        "--module <LABEL=PATH>",
        "--no-pin",
    ] {
        assert!(help.contains(option), "bench --help lacks {option}: {help}");
    }
}

#[test]
fn a_usage_error_is_one_error_line() {
    for (name, binary) in binaries() {
        let output = run(&binary, &["--no-such-option"]);
        assert_clean_failure(&format!("{name} --no-such-option"), &output, 2);
    }
    let bench = &binaries()[0].1;
    for args in [&["--duration", "soon"][..], &["--module", "no-equals-sign"]] {
        assert_clean_failure(&format!("bench {args:?}"), &run(bench, args), 2);
    }
}

#[test]
fn a_failed_run_is_one_error_line() {
    let missing = tempfile::tempdir().expect("temporary directory");
    let missing = missing.path().join("absent.yaml");
    let output = run(
        &canaryctl_bin(),
        &["validate", &missing.display().to_string()],
    );
    assert_clean_failure("canaryctl validate on a missing file", &output, 1);
}
