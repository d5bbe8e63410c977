//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets'
//! bodies, so that every input the fuzzer kept, crashes it once found included, is checked by
//! `cargo test` on stable.

// Test code: a missing corpus or a failing input is a test failure.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use canary_filter::fuzzing;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{}: only {} inputs; the corpus is missing",
        dir.display(),
        files.len()
    );
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect()
}

fn replay(target: &str, run: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn config_corpus() {
    replay("config", fuzzing::config);
}

#[test]
fn cookies_corpus() {
    replay("cookies", fuzzing::cookies);
}

#[test]
fn stream_corpus() {
    replay("stream", fuzzing::stream);
}
