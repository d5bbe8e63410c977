//! `file:PATH`: an ECDS file a standalone Envoy watches — `resources:` holding one
//! `TypedExtensionConfig` carrying an `envoy.extensions.filters.http.wasm.v3.Wasm` whose
//! `configuration` is a `google.protobuf.StringValue` with the plugin configuration as JSON (or
//! a `DynamicModuleFilter`, with it as `filter_config`); or an RDS file, one
//! `RouteConfiguration` with one route whose cluster the dynamic module picks, the plugin
//! configuration being the `routing` of its `specifier_config` ([`crate::ecds`]).
//!
//! The file is read as JSON or YAML and written back in the same format (Envoy picks the
//! parser by the extension: `.yaml`/`.yml` YAML, anything else JSON). Only the plugin
//! configuration string changes; the resource name and every other field are kept. The new
//! file replaces the old by an atomic rename in the same directory, which is what Envoy's
//! `watched_directory` reacts to; just before the rename the file is read again, and if
//! someone else changed it meanwhile the whole change is redone on the new content
//! ([`atomic`], [`read_edit_write`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use canary_filter::PluginConfig;
use tracing::debug;

use super::{atomic, edited, read_edit_write, Edit, Error, Slot, Update};
use crate::ecds::{EcdsError, EcdsFile, Format};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
    #[error("{path} is not valid {format}: {reason}")]
    Syntax {
        path: PathBuf,
        format: Format,
        reason: String,
    },
    #[error("{path} is not an ECDS file as Envoy reads it: {reason}")]
    Shape { path: PathBuf, reason: String },
    #[error("{path} kept changing while it was being updated: gave up after {attempts} attempts")]
    Contended { path: PathBuf, attempts: u32 },
}

pub fn read(path: &Path) -> Result<PluginConfig, FileError> {
    Ok(load(path)?.config)
}

pub async fn update(path: &Path, edit: &Edit<'_>) -> Result<Update, Error> {
    let slot = ConfigSlot(path);
    let (config, written) = read_edit_write(&slot, |live| edited(live, edit).map(Some)).await?;
    Ok(Update { config, written })
}

/// The plugin configuration in the ECDS file.
struct ConfigSlot<'a>(&'a Path);

impl Slot for ConfigSlot<'_> {
    type Version = EcdsFile;
    type Value = PluginConfig;

    async fn load(&self) -> Result<(EcdsFile, PluginConfig), Error> {
        let file = load(self.0)?;
        let config = file.config.clone();
        Ok((file, config))
    }

    async fn compare_and_swap(&self, file: EcdsFile, config: &PluginConfig) -> Result<bool, Error> {
        let path = self.0;
        let write_error = |error| FileError::Write {
            path: path.to_owned(),
            error,
        };
        let bytes = file
            .render(config)
            .map_err(|reason| write_error(io::Error::other(reason)))?;
        Ok(atomic::replace_if_unchanged(path, Some(&file.bytes), &bytes).map_err(write_error)?)
    }

    fn contended(&self, attempts: u32) -> Error {
        FileError::Contended {
            path: self.0.to_owned(),
            attempts,
        }
        .into()
    }

    fn describe(&self) -> String {
        format!("the plugin configuration in {}", self.0.display())
    }
}

fn load(path: &Path) -> Result<EcdsFile, FileError> {
    let bytes = fs::read(path).map_err(|error| FileError::Read {
        path: path.to_owned(),
        error,
    })?;
    let format = Format::of(path);
    let file = EcdsFile::parse(bytes, format).map_err(|error| match error {
        EcdsError::Syntax { format, reason } => FileError::Syntax {
            path: path.to_owned(),
            format,
            reason,
        },
        EcdsError::Shape(reason) => FileError::Shape {
            path: path.to_owned(),
            reason,
        },
        EcdsError::PluginConfig(errors) => FileError::Shape {
            path: path.to_owned(),
            reason: format!("the plugin configuration: {errors}"),
        },
    })?;
    debug!(path = %path.display(), %format, "read ECDS file");
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecds::{document, ModuleSource};
    use serde_json::{json, Value};

    fn plugin_config() -> String {
        json!({"routes": [{"name": "reviews", "variants": [
            {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}]})
        .to_string()
    }

    fn set_canary(
        weight: u32,
    ) -> impl Fn(&mut PluginConfig) -> Result<(), crate::weights::WeightError> + Send + Sync {
        move |config: &mut PluginConfig| {
            crate::weights::Change::Set(vec![(
                "canary".to_owned(),
                canary_filter::Weight(weight * 1000),
            )])
            .apply(config, "reviews")
        }
    }

    #[tokio::test]
    async fn update_keeps_json_shape_and_every_other_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecds.json");
        let mut doc = document(
            "canary",
            &ModuleSource::Local("/m.wasm".into()),
            &plugin_config(),
        );
        doc["version_info"] = json!("7");
        fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

        let update = update(&path, &set_canary(30)).await.unwrap();
        assert!(update.written);
        let after: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let mut want = doc.clone();
        want["resources"][0]["typed_config"]["config"]["configuration"]["value"] = json!(
            r#"{"routes":[{"name":"reviews","variants":[{"name":"stable","weight":70},{"name":"canary","weight":30}]}]}"#
        );
        assert_eq!(after, want);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[tokio::test]
    async fn update_writes_yaml_back_as_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecds.yaml");
        let doc = document(
            "canary",
            &ModuleSource::Local("/m.wasm".into()),
            &plugin_config(),
        );
        fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();

        update(&path, &set_canary(25)).await.unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("resources:"), "still YAML: {text}");
        let config = read(&path).unwrap();
        assert_eq!(config.routes[0].variants[1].weight, 25.0);
    }

    #[tokio::test]
    async fn a_refused_change_leaves_the_file_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecds.json");
        let doc = document(
            "canary",
            &ModuleSource::Local("/m.wasm".into()),
            &plugin_config(),
        );
        let before = serde_json::to_vec_pretty(&doc).unwrap();
        fs::write(&path, &before).unwrap();

        let error = update(&path, &set_canary(101)).await.unwrap_err();
        assert!(error.to_string().contains("below 0"), "{error}");
        let invalid_weight = |config: &mut PluginConfig| {
            config.routes[0].variants[1].weight = 10.0001;
            Ok(())
        };
        let error = update(&path, &invalid_weight).await.unwrap_err();
        assert!(matches!(error, Error::Invalid(_)), "{error}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[tokio::test]
    async fn an_unchanged_configuration_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecds.json");
        let doc = document(
            "canary",
            &ModuleSource::Local("/m.wasm".into()),
            &plugin_config(),
        );
        let before = serde_json::to_vec(&doc).unwrap();
        fs::write(&path, &before).unwrap();
        let update = update(&path, &set_canary(10)).await.unwrap();
        assert!(!update.written);
        assert_eq!(fs::read(&path).unwrap(), before);
    }
}
