//! Where the live plugin configuration is: an ECDS file a standalone Envoy watches
//! (`file:PATH`), or a WasmPlugin / TrafficExtension in Kubernetes (`kube://NAMESPACE/NAME`).
//!
//! Every change is read → edit → validate → write: the configuration is read from the target
//! (the only source of truth), edited in place, checked with the filter's own parser, and
//! written back only if the filter would accept it. Both targets detect a concurrent writer
//! and redo the whole cycle on the fresh configuration.

mod file;
mod kube;
pub mod record;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use canary_filter::ConfigErrors;
use serde_json::Value;

pub use self::file::FileError;
pub use self::kube::KubeError;
pub use self::record::RecordEdit;
use crate::weights::WeightError;

/// How many times a change is tried when someone else writes the target at the same time.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid target {0:?}: expected file:PATH or kube://NAMESPACE/NAME")]
    Syntax(String),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Edit(#[from] WeightError),
    #[error(
        "the changed configuration would be rejected by the filter, so nothing was written:\n{0}"
    )]
    Invalid(ConfigErrors),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An ECDS file: `resources:` holding one `TypedExtensionConfig`.
    File(PathBuf),
    /// A WasmPlugin or TrafficExtension, looked up in that order.
    Kube { namespace: String, name: String },
}

/// The result of an update.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The plugin configuration now live.
    pub config: Value,
    /// False when the change left the configuration as it was, and nothing was written.
    pub written: bool,
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let syntax = || Error::Syntax(text.to_owned());
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(syntax());
            }
            return Ok(Target::File(PathBuf::from(path)));
        }
        let rest = text.strip_prefix("kube://").ok_or_else(syntax)?;
        let (namespace, name) = rest.split_once('/').ok_or_else(syntax)?;
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(syntax());
        }
        Ok(Target::Kube {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::File(path) => write!(f, "file:{}", path.display()),
            Target::Kube { namespace, name } => write!(f, "kube://{namespace}/{name}"),
        }
    }
}

impl Target {
    /// The live plugin configuration.
    pub fn read(&self) -> Result<Value> {
        match self {
            Target::File(path) => Ok(file::read(path)?),
            Target::Kube { namespace, name } => Ok(kube::read(namespace, name)?),
        }
    }

    /// Applies `edit` to the live plugin configuration and writes the result back, if the
    /// filter accepts it and it differs from what is live.
    pub fn update(&self, edit: &Edit<'_>) -> Result<Update> {
        match self {
            Target::File(path) => file::update(path, edit),
            Target::Kube { namespace, name } => kube::update(namespace, name, edit),
        }
    }

    /// The rollout record kept for `route` (see [`record`]), if there is one.
    pub fn read_record(&self, route: &str) -> Result<Option<String>> {
        match self {
            Target::File(path) => Ok(record::read_file(path, route)?),
            Target::Kube { namespace, name } => Ok(kube::read_annotation(
                namespace,
                name,
                &record::annotation(route),
            )?),
        }
    }

    /// Replaces the rollout record of `route` with what `edit` makes of the current one, redoing
    /// the edit if someone else wrote it meanwhile. Returns the record now kept.
    pub fn update_record(&self, route: &str, edit: &RecordEdit<'_>) -> Result<Option<String>> {
        match self {
            Target::File(path) => Ok(record::update_file(path, route, edit)?),
            Target::Kube { namespace, name } => Ok(kube::update_annotation(
                namespace,
                name,
                &record::annotation(route),
                edit,
            )?),
        }
    }
}

/// A change to the plugin configuration, applied in place.
pub type Edit<'a> = dyn Fn(&mut Value) -> Result<(), WeightError> + 'a;

/// The edited configuration, if the filter's own parser accepts it.
fn edited(live: &Value, edit: &Edit<'_>) -> Result<Value> {
    let mut config = live.clone();
    edit(&mut config)?;
    canary_filter::config::from_value(config.clone()).map_err(Error::Invalid)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_syntax() {
        assert_eq!(
            "file:/etc/envoy/ecds.json".parse::<Target>().unwrap(),
            Target::File("/etc/envoy/ecds.json".into())
        );
        assert_eq!(
            "kube://shop/reviews-canary".parse::<Target>().unwrap(),
            Target::Kube {
                namespace: "shop".into(),
                name: "reviews-canary".into()
            }
        );
        for bad in [
            "file:",
            "/etc/ecds.json",
            "kube://shop",
            "kube:///x",
            "kube://shop/",
            "kube://a/b/c",
            "http://x",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn edited_refuses_what_the_filter_rejects() {
        let live = serde_json::json!({"routes": [{"name": "r", "variants": [
            {"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}]}]});
        let breaks_it = |config: &mut Value| {
            config["routes"][0]["variants"][1]["name"] = "Canary!".into();
            Ok(())
        };
        let error = edited(&live, &breaks_it).unwrap_err().to_string();
        assert!(
            error.contains("routes[0].variants[1].name"),
            "names the JSON path: {error}"
        );
    }
}
