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

use std::io;
use std::path::{Path, PathBuf};

use super::{atomic, read_edit_write, Error, FileError, Result, Slot};

/// Makes the new record from the current one; None leaves the record as it is.
pub type RecordEdit<'a> = dyn Fn(Option<&str>) -> Option<String> + Send + Sync + 'a;

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
    read_optional(&file_path(ecds, route))
}

fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    let bytes = atomic::read_optional(path).map_err(|error| FileError::Read {
        path: path.to_owned(),
        error,
    })?;
    bytes
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|error| FileError::Read {
                path: path.to_owned(),
                error: io::Error::new(io::ErrorKind::InvalidData, error),
            })
        })
        .transpose()
}

/// Replaces the record with `edit`'s, unless someone else changed it meanwhile, in which case
/// the edit is made again on the fresh record. Returns the record now stored.
pub async fn update_file(
    ecds: &Path,
    route: &str,
    edit: &RecordEdit<'_>,
) -> Result<Option<String>> {
    let slot = RecordFile(file_path(ecds, route));
    let (record, _) = read_edit_write(&slot, |current: &Option<String>| {
        Ok(edit(current.as_deref()).map(Some))
    })
    .await?;
    Ok(record)
}

/// A route's record file, beside the ECDS file.
struct RecordFile(PathBuf);

impl Slot for RecordFile {
    type Version = Option<String>;
    type Value = Option<String>;

    async fn load(&self) -> Result<(Option<String>, Option<String>)> {
        let current = read_optional(&self.0)?;
        Ok((current.clone(), current))
    }

    async fn compare_and_swap(
        &self,
        read: Option<String>,
        record: &Option<String>,
    ) -> Result<bool> {
        // An edit makes a record or leaves the slot alone: it never removes one.
        let bytes = record.as_deref().unwrap_or_default().as_bytes();
        atomic::replace_if_unchanged(&self.0, read.as_deref().map(str::as_bytes), bytes).map_err(
            |error| {
                FileError::Write {
                    path: self.0.clone(),
                    error,
                }
                .into()
            },
        )
    }

    fn contended(&self, attempts: u32) -> Error {
        FileError::Contended {
            path: self.0.clone(),
            attempts,
        }
        .into()
    }

    fn describe(&self) -> String {
        format!("the rollout record {}", self.0.display())
    }
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

    #[tokio::test]
    async fn a_record_is_written_read_and_left_alone_on_none() {
        use std::fs;

        let dir = tempfile::tempdir().unwrap();
        let ecds = dir.path().join("filter.yaml");
        assert_eq!(read_file(&ecds, "web").unwrap(), None);
        let written = update_file(&ecds, "web", &|current| {
            assert_eq!(current, None);
            Some("{\"step\":1}".into())
        })
        .await
        .unwrap();
        assert_eq!(written.as_deref(), Some("{\"step\":1}"));
        assert_eq!(read_file(&ecds, "web").unwrap(), written);
        let kept = update_file(&ecds, "web", &|_| None).await.unwrap();
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
