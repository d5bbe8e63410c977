//! The repository stands on its own: no tracked file names a path outside it (a folder beside
//! the checkout) or cites a document the repository does not hold. A clone with nothing beside
//! it must build, test and read completely.

use std::path::{Path, PathBuf};
use std::process::Command;

use canary_e2e::workspace_root;
use regex::Regex;

/// What a reference outside the repository looks like, and why it is one.
fn patterns() -> Vec<(Regex, &'static str)> {
    [
        (r"\.\./(\.\./)*shared\b", "a folder beside the checkout"),
        (
            r"\b(PRODUCT|STYLE|DEVELOPERS)\.md\b",
            "a document that is not in the repository",
        ),
        (
            r"\b(PRODUCT|STYLE)\s*§",
            "a section of a document that is not in the repository",
        ),
        (
            r"(^|[\s`'(=])/(work|root|home)/\S",
            "an absolute path on one machine",
        ),
    ]
    .into_iter()
    .map(|(pattern, why)| (Regex::new(pattern).expect("pattern"), why))
    .collect()
}

/// Every reference outside the repository in `text`, as `line N: why: the match`.
fn references_outside(text: &str) -> Vec<String> {
    // A cheap look first: most files (fuzz corpora among them) hold none of these words.
    if !["shared", ".md", "§", "/work/", "/root/", "/home/"]
        .iter()
        .any(|word| text.contains(word))
    {
        return Vec::new();
    }
    let patterns = patterns();
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for (pattern, why) in &patterns {
            if let Some(m) = pattern.find(line) {
                found.push(format!(
                    "line {}: {why}: {:?}",
                    number + 1,
                    m.as_str().trim()
                ));
            }
        }
    }
    found
}

/// The files under `root`: the ones git tracks when `root` is a git checkout, otherwise every
/// file but build outputs and the virtualenv.
fn files(root: &Path) -> Vec<PathBuf> {
    let tracked = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|out| out.status.success() && root.join(".git").exists());
    if let Some(out) = tracked {
        return out
            .stdout
            .split(|b| *b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| root.join(String::from_utf8_lossy(name).as_ref()))
            .collect();
    }
    let mut found = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a directory") {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !matches!(name, ".git" | "target" | ".venv") {
                    dirs.push(path);
                }
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Every reference outside the repository in the files under `root`, this file excepted (its
/// patterns describe what it looks for).
fn scan(root: &Path) -> Vec<String> {
    let this = Path::new(file!()).file_name().expect("file name");
    let mut found = Vec::new();
    for path in files(root) {
        if path.file_name() == Some(this) {
            continue;
        }
        // Binary files (fuzz corpora) are read as text too: a path in them would be as wrong.
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // listed by git but deleted in the work tree
        };
        let shown = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for reference in references_outside(&String::from_utf8_lossy(&bytes)) {
            found.push(format!("{shown}: {reference}"));
        }
    }
    found.sort();
    found
}

#[test]
fn no_tracked_file_names_anything_outside_the_repository() {
    let root = workspace_root();
    let found = scan(&root);
    assert!(
        found.is_empty(),
        "files that reach outside the repository:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_planted_reference_is_found() {
    // Built from pieces so that this file itself holds none of them.
    let sibling = ["..", "/", "shared", "/istio-crds"].concat();
    let deeper = ["../..", "/", "shared"].concat();
    let document = ["see ", "PRODUCT", ".md"].concat();
    let section = ["as ", "PRODUCT", " §1 says"].concat();
    let machine = ["path: ", "/", "work", "/", "main/x"].concat();
    for (text, why) in [
        (sibling.as_str(), "a folder beside the checkout"),
        (deeper.as_str(), "a folder beside the checkout"),
        (
            document.as_str(),
            "a document that is not in the repository",
        ),
        (section.as_str(), "a section of a document"),
        (machine.as_str(), "an absolute path on one machine"),
    ] {
        let found = references_outside(text);
        assert!(
            found.len() == 1 && found[0].contains(why),
            "{text:?}: {found:?}"
        );
    }
    for clean in [
        "tests/fixtures/istio-crds/wasmplugin.crd.yaml",
        "the shared cores of one machine",
        "see README.md and BENCHMARKS.md",
        "ENVOY_BIN=/usr/bin/envoy",
    ] {
        assert_eq!(references_outside(clean), Vec::<String>::new(), "{clean:?}");
    }

    // The whole scan, on a tree with one planted file and one clean one.
    let tree = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(tree.path().join("docs")).expect("mkdir");
    std::fs::write(tree.path().join("docs/clean.md"), "nothing outside\n").expect("write");
    std::fs::write(
        tree.path().join("docs/planted.md"),
        format!("line one\nthe CRDs in {sibling}\n"),
    )
    .expect("write");
    let found = scan(tree.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("docs/planted.md: line 2: a folder beside the checkout"),
        "{found:?}"
    );
}
