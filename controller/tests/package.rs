//! `canaryctl package`: the OCI image layout is what Istio's Wasm image fetcher accepts (the
//! OCI artifact variant: config `application/vnd.module.wasm.config.v1+json`, one layer
//! `application/vnd.module.wasm.content.layer.v1+wasm` holding the module as is), and every
//! descriptor's digest and size match the blob it points at.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A tiny valid module: the header and an empty custom section.
const MODULE: &[u8] = b"\0asm\x01\0\0\0\0\x05\x04test";

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The blob a descriptor points at, after checking its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        hex,
        "digest of {descriptor}"
    );
    assert_eq!(descriptor["size"], bytes.len(), "size of {descriptor}");
    bytes
}

#[test]
fn writes_a_wasm_oci_artifact_layout() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("canary_filter.wasm");
    std::fs::write(&module, MODULE).unwrap();
    let out = dir.path().join("image");
    let output = Command::new(env!("CARGO_BIN_EXE_canaryctl"))
        .args(["package", "--module"])
        .arg(&module)
        .arg("--output")
        .arg(&out)
        .args(["--tag", "v1.2.3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    assert_eq!(
        read_json(&out.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let entry = &manifests[0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "v1.2.3"
    );
    let manifest_digest = entry["digest"].as_str().unwrap();
    assert!(
        stdout.contains(manifest_digest),
        "prints the image digest a WasmPlugin's sha256 names: {stdout}"
    );

    let manifest: Value = serde_json::from_slice(&blob(&out, entry)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&out, &manifest["config"])).unwrap();
    assert!(config.is_object());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "Istio takes exactly one layer");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.module.wasm.content.layer.v1+wasm"
    );
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "canary_filter.wasm"
    );
    assert_eq!(
        blob(&out, &layers[0]),
        MODULE,
        "the layer is the module as is"
    );
    assert_eq!(
        layers[0]["digest"],
        format!("sha256:{}", hex::encode(Sha256::digest(MODULE)))
    );

    let mut files: Vec<String> = std::fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "config, module and manifest: {files:?}");
}

#[test]
fn refuses_a_file_that_is_not_a_module() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("filter.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\n").unwrap();
    let error = canaryctl::package::write(&not_wasm, &dir.path().join("out"), "latest")
        .unwrap_err()
        .to_string();
    assert!(error.contains("is not a WebAssembly module"), "{error}");
    assert!(!dir.path().join("out").exists(), "nothing written");
}
