//! The filter's modules import each other in one direction only: configuration → compiled
//! table → decision → HTTP glue, with no module reaching back up. This test reads each module's
//! own code (not its `#[cfg(test)]` tests) for `crate::MODULE` references and fails, naming the
//! circle, if they form one.
#![allow(clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

/// A module's own code, without its `#[cfg(test)]` tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("a module");
    text.split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Module name → the modules its non-test code refers to as `crate::NAME`. A module written as
/// a directory is one module: the code of all its files, whose imports of each other are its
/// own business.
fn imports() -> BTreeMap<String, Vec<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src/") {
        let path = entry.expect("an entry").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(&path)
                .expect("a module directory")
                .map(|e| e.expect("an entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .collect();
            files.sort();
            assert!(
                files.iter().any(|f| f.ends_with("mod.rs")),
                "{} has no mod.rs",
                path.display()
            );
            let code: String = files.iter().map(|f| code(f)).collect();
            modules.insert(name.to_owned(), code);
        // The crate root re-exports what the crate offers; it is not a layer.
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            modules.insert(name.to_owned(), code(&path));
        }
    }
    let names: Vec<String> = modules.keys().cloned().collect();
    modules
        .into_iter()
        .map(|(name, code)| {
            let used = names
                .iter()
                .filter(|other| **other != name)
                .filter(|other| {
                    code.match_indices(&format!("crate::{other}"))
                        .any(|(at, found)| {
                            let next = code[at + found.len()..].chars().next();
                            !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        })
                })
                .cloned()
                .collect();
            (name, used)
        })
        .collect()
}

/// A circle of imports, if there is one: the modules along it, the first repeated at the end.
fn circle(graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.iter().any(|n| n == node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.push(node.to_owned());
        None
    }
    let mut done = Vec::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_import_each_other_in_one_direction() {
    let graph = imports();
    assert!(graph.contains_key("table") && graph.contains_key("config"));
    assert!(
        graph["table"].contains(&"router".to_owned()),
        "the scan reads a module's directory: {graph:?}"
    );
    assert!(
        graph["table"].contains(&"config".to_owned()),
        "the scan sees imports: {graph:?}"
    );
    if let Some(found) = circle(&graph) {
        panic!(
            "modules import each other in a circle: {}",
            found.join(" → ")
        );
    }
}

#[test]
fn a_circle_is_found() {
    let graph: BTreeMap<String, Vec<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let mut broken = graph;
    broken.insert("c".into(), vec!["d".into()]);
    assert_eq!(circle(&broken), None);
}
