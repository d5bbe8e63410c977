//! Errors collected while reading a canary spec, each with its JSON path.

use canary_filter::{ConfigError, ConfigErrors};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Errors collected in document order.
#[derive(Default)]
pub(super) struct Errors(Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(path, reason));
    }

    /// The filter's errors, their paths put under `prefix`.
    pub(super) fn extend_under(&mut self, prefix: &str, errors: ConfigErrors) {
        for e in errors.0 {
            let path = if e.path == "$" {
                prefix.to_owned()
            } else {
                format!("{prefix}.{}", e.path)
            };
            self.push(path, e.reason);
        }
    }

    /// Removes `key` from `map` and decodes it; a missing key is an error.
    pub(super) fn take<T: DeserializeOwned>(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
    ) -> Option<T> {
        match map.remove(key) {
            Some(value) => self.decode(key, value),
            None => {
                self.push(key, "is required");
                None
            }
        }
    }

    pub(super) fn decode<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let full = if inner == "." {
                    path.to_owned()
                } else {
                    format!("{path}.{inner}")
                };
                self.push(full, e.inner().to_string());
                None
            }
        }
    }

    pub(super) fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.0))
        }
    }
}
