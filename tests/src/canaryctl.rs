//! canaryctl for the tests: the binary, for the tests and the demo that run it as its own
//! process, and [`run`], its library entry point as the binary calls it.

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

/// Runs canaryctl through its library entry point (`commands::run` on parsed arguments,
/// exactly what `main` does) on a blocking thread, as the binary would; the error it would
/// print, if it fails.
pub async fn run(command: canaryctl::args::Command) -> Result<(), String> {
    let args = canaryctl::args::Args { command };
    tokio::task::spawn_blocking(move || canaryctl::commands::run(args))
        .await
        .expect("canaryctl thread")
        .map_err(|e| format!("{e:#}"))
        .and_then(|code| {
            (code == std::process::ExitCode::SUCCESS)
                .then_some(())
                .ok_or_else(|| format!("exit {code:?}"))
        })
}
