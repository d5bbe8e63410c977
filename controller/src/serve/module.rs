//! The filter module served at `/filter.wasm`, with its sha256 for a WasmPlugin's `sha256` or
//! an ECDS `remote` code source.

use std::path::Path;

use axum::body::Bytes;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Module {
    pub bytes: Bytes,
    /// Lowercase hex.
    pub sha256: String,
}

impl Module {
    pub fn read(path: &Path) -> std::io::Result<Module> {
        let bytes = std::fs::read(path)?;
        if !bytes.starts_with(b"\0asm") {
            return Err(std::io::Error::other(format!(
                "{} is not a WebAssembly module",
                path.display()
            )));
        }
        Ok(Module::new(bytes))
    }

    pub fn new(bytes: Vec<u8>) -> Module {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Module {
            bytes: bytes.into(),
            sha256,
        }
    }
}
