//! The canaryctl binary, for the tests and the demo that run it as its own process.

use std::path::PathBuf;

/// `$CANARYCTL_BIN`, or the debug build `make build` makes.
pub fn canaryctl_bin() -> PathBuf {
    let path = std::env::var_os("CANARYCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate::workspace_root().join("target"));
            target.join("debug/canaryctl")
        });
    assert!(
        path.exists(),
        "no canaryctl at {}: `make build` builds it (or set CANARYCTL_BIN)",
        path.display()
    );
    path
}
