//! Replacing a file only if nobody changed it since it was read: the new content goes to a
//! temporary file in the same directory (so the rename cannot cross file systems), is synced,
//! the file is read once more, and only if it still holds what was read is the temporary file
//! renamed over it. Envoy's `watched_directory` reacts to exactly that rename. The directory is
//! synced after the rename so that the change survives a crash.
//!
//! Between the last read and the rename another writer could still slip in; that window is
//! microseconds, against the seconds between a read and a write that the check guards.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` over `path` unless `path` no longer holds `expected` (`None`: does not
/// exist). False when it did not write. A new file takes the old one's permissions.
pub fn replace_if_unchanged(
    path: &Path,
    expected: Option<&[u8]>,
    bytes: &[u8],
) -> io::Result<bool> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.canaryctl-{}.tmp", std::process::id()));
    let result = write_then_rename(path, &temp, expected, bytes);
    if !matches!(result, Ok(true)) {
        let _ = fs::remove_file(&temp);
    }
    if matches!(result, Ok(true)) {
        // Not every platform can open a directory to sync it, which is fine.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    result
}

fn write_then_rename(
    path: &Path,
    temp: &Path,
    expected: Option<&[u8]>,
    bytes: &[u8],
) -> io::Result<bool> {
    let mut out = fs::File::create(temp)?;
    out.write_all(bytes)?;
    if let Ok(metadata) = fs::metadata(path) {
        out.set_permissions(metadata.permissions())?;
    }
    out.sync_all()?;
    if read_optional(path)?.as_deref() != expected {
        return Ok(false);
    }
    fs::rename(temp, path)?;
    Ok(true)
}

/// The file's bytes, or None when it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_concurrent_change_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        fs::write(&path, b"theirs").unwrap();
        assert!(!replace_if_unchanged(&path, Some(b"ours"), b"new").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"theirs");
        assert!(replace_if_unchanged(&path, Some(b"theirs"), b"new").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn a_missing_file_is_created_only_if_still_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        assert!(!replace_if_unchanged(&path, Some(b"old"), b"new").unwrap());
        assert!(!path.exists());
        assert!(replace_if_unchanged(&path, None, b"new").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!replace_if_unchanged(&path, None, b"newer").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }
}
