//! The rollout record of a route, kept with the target: for `file:PATH` a file next to the
//! ECDS file, `<file name>.rollout.<route>.json`; for `kube://` an annotation on the resource,
//! `rollout.canary-router.io/<route>`.
//!
//! The file target keeps its record beside the ECDS file rather than in it: Envoy parses the
//! ECDS file as a `DiscoveryResponse`, and a field it does not know there (top level or in the
//! resource) makes Envoy 1.40 log `Unknown field … no such field` at every read, and reject the
//! whole file when it runs with `--reject-unknown-dynamic-fields`. The record file is replaced by an atomic rename like the ECDS file; a rename in
//! the watched directory makes Envoy read the ECDS file again, and an unchanged resource is
//! accepted without reconfiguring the filter (`update_attempt` and `update_success` count
//! one more, nothing else happens).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use super::{FileError, MAX_ATTEMPTS};

/// Makes the new record from the current one; None leaves the record as it is.
pub type RecordEdit<'a> = dyn Fn(Option<&str>) -> Option<String> + 'a;

/// The annotation holding a route's rollout record on a WasmPlugin or TrafficExtension.
pub fn annotation(route: &str) -> String {
    format!("rollout.canary-router.io/{route}")
}

/// The file holding a route's rollout record, next to the ECDS file `ecds`.
pub fn file_path(ecds: &Path, route: &str) -> PathBuf {
    let name = ecds
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ecds.with_file_name(format!("{name}.rollout.{route}.json"))
}

pub fn read_file(ecds: &Path, route: &str) -> Result<Option<String>, FileError> {
    let path = file_path(ecds, route);
    read_optional(&path)
}

fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(FileError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Replaces the record with `edit`'s, unless someone else changed it meanwhile, in which case
/// the edit is made again on the fresh record. Returns the record now stored.
pub fn update_file(
    ecds: &Path,
    route: &str,
    edit: &RecordEdit<'_>,
) -> Result<Option<String>, FileError> {
    let path = file_path(ecds, route);
    for attempt in 1..=MAX_ATTEMPTS {
        let current = read_optional(&path)?;
        let Some(new) = edit(current.as_deref()) else {
            return Ok(current);
        };
        if current.as_deref() == Some(new.as_str()) {
            return Ok(current);
        }
        if replace(&path, current.as_deref(), &new)? {
            info!(path = %path.display(), attempt, "rollout record written");
            return Ok(Some(new));
        }
        warn!(path = %path.display(), attempt, "rollout record changed while updating it; retrying");
        std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
    }
    Err(FileError::Contended {
        path,
        attempts: MAX_ATTEMPTS,
    })
}

/// Writes `text` beside `path` and renames it over `path`, unless `path` no longer holds
/// `expected`. False when it did not.
fn replace(path: &Path, expected: Option<&str>, text: &str) -> Result<bool, FileError> {
    let write_error = |error| FileError::Write {
        path: path.to_owned(),
        error,
    };
    let temp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut out = fs::File::create(&temp)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        let now = match fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        if now.as_deref() != expected {
            return Ok(false);
        }
        fs::rename(&temp, path)?;
        Ok(true)
    })();
    if !matches!(result, Ok(true)) {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(annotation("web"), "rollout.canary-router.io/web");
        assert_eq!(
            file_path(Path::new("/etc/envoy/ecds/filter.json"), "web"),
            PathBuf::from("/etc/envoy/ecds/filter.json.rollout.web.json")
        );
    }

    #[test]
    fn a_record_is_written_read_and_left_alone_on_none() {
        let dir = tempfile::tempdir().unwrap();
        let ecds = dir.path().join("filter.yaml");
        assert_eq!(read_file(&ecds, "web").unwrap(), None);
        let written = update_file(&ecds, "web", &|current| {
            assert_eq!(current, None);
            Some("{\"step\":1}".into())
        })
        .unwrap();
        assert_eq!(written.as_deref(), Some("{\"step\":1}"));
        assert_eq!(read_file(&ecds, "web").unwrap(), written);
        let kept = update_file(&ecds, "web", &|_| None).unwrap();
        assert_eq!(kept, written);
        assert_eq!(read_file(&ecds, "other").unwrap(), None);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["filter.yaml.rollout.web.json"],
            "no temporary file left"
        );
    }
}
