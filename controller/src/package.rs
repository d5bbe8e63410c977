//! `canaryctl package`: the filter module as an OCI image layout, the Wasm OCI artifact Istio
//! pulls for a WasmPlugin `url: oci://…`: a manifest (`application/vnd.oci.image.manifest.v1+json`)
//! with the config `application/vnd.module.wasm.config.v1+json` and exactly one layer, the
//! module itself, `application/vnd.module.wasm.content.layer.v1+wasm`. `oras cp
//! --from-oci-layout DIR:TAG REGISTRY/REPO:TAG` or `crane push DIR REGISTRY/REPO:TAG` pushes it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("{0} is not a WebAssembly module")]
    NotWasm(PathBuf),
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
}

/// A content-addressed blob: its descriptor fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: usize,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The manifest: the image digest a WasmPlugin's `sha256` (or `@sha256:` reference) names.
    pub manifest: Blob,
    /// The module layer: its digest is the module's own sha256.
    pub module: Blob,
}

/// Writes the OCI image layout for `module` under `dir`.
pub fn write(module: &Path, dir: &Path, tag: &str) -> Result<Layout, PackageError> {
    let wasm = fs::read(module).map_err(|error| PackageError::Read {
        path: module.to_owned(),
        error,
    })?;
    if !wasm.starts_with(b"\0asm") {
        return Err(PackageError::NotWasm(module.to_owned()));
    }
    let blobs = dir.join("blobs").join("sha256");
    create_dir(&blobs)?;
    let config = put(&blobs, b"{}")?;
    let layer = put(&blobs, &wasm)?;
    let title = module
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin.wasm".to_owned());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(WASM_CONFIG, &config),
        "layers": [{
            "mediaType": WASM_LAYER,
            "digest": layer.digest,
            "size": layer.size,
            "annotations": { "org.opencontainers.image.title": title },
        }],
    });
    let manifest = put(&blobs, &to_bytes(&manifest))?;
    let mut entry = descriptor(MANIFEST, &manifest);
    entry["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let index = json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": [entry] });
    write_file(&dir.join("index.json"), &to_bytes(&index))?;
    write_file(
        &dir.join("oci-layout"),
        &to_bytes(&json!({ "imageLayoutVersion": "1.0.0" })),
    )?;
    Ok(Layout {
        manifest,
        module: layer,
    })
}

fn descriptor(media_type: &str, blob: &Blob) -> Value {
    json!({ "mediaType": media_type, "digest": blob.digest, "size": blob.size })
}

fn to_bytes(value: &Value) -> Vec<u8> {
    // Serializing a Value cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Stores `bytes` as a blob; its descriptor.
fn put(blobs: &Path, bytes: &[u8]) -> Result<Blob, PackageError> {
    let hex = hex::encode(Sha256::digest(bytes));
    write_file(&blobs.join(&hex), bytes)?;
    Ok(Blob {
        digest: format!("sha256:{hex}"),
        size: bytes.len(),
    })
}

fn create_dir(dir: &Path) -> Result<(), PackageError> {
    fs::create_dir_all(dir).map_err(|error| PackageError::Write {
        path: dir.to_owned(),
        error,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    fs::write(path, bytes).map_err(|error| PackageError::Write {
        path: path.to_owned(),
        error,
    })
}
