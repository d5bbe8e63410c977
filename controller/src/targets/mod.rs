//! Where the live plugin configuration is: an ECDS file a standalone Envoy watches
//! (`file:PATH`), or a WasmPlugin / TrafficExtension / EnvoyFilter in Kubernetes
//! (`kube://NAMESPACE/NAME`, or `kube://NAMESPACE/KIND/NAME` to name the kind).
//!
//! Every change is read → edit → validate → write: the configuration is read from the target
//! (the only source of truth), edited in place, checked with the filter's own parser, and
//! written back only if the filter would accept it. Both targets detect a concurrent writer
//! and redo the whole cycle on the fresh configuration.
//!
//! Each thing a target keeps — the plugin configuration, a route's rollout record — is a
//! [`Slot`]: it can be loaded with a version, and replaced only if still at that version.
//! [`read_edit_write`] is the one loop over a slot that every change goes through.

mod atomic;
mod file;
mod kube;
pub mod record;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use canary_filter::ConfigErrors;
use serde_json::Value;
use tracing::{debug, info, warn};

pub use self::file::FileError;
pub use self::kube::{Kind, KubeError};
pub use self::record::RecordEdit;
use crate::weights::WeightError;

/// How many times a change is tried when someone else writes the target at the same time.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid target {0:?}: expected file:PATH, kube://NAMESPACE/NAME or kube://NAMESPACE/KIND/NAME (KIND: wasmplugin, trafficextension or envoyfilter)")]
    Syntax(String),
    #[error("cannot start the runtime the target is reached from: {0}")]
    Runtime(std::io::Error),
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

impl Error {
    /// Whether the target is unavailable for now, so that the same change may be written
    /// later: a Kubernetes API that kept answering 429 or 5xx, or could not be reached, for
    /// longer than its retry budget, or other writers that kept conflicting.
    pub fn unavailable(&self) -> bool {
        matches!(self, Error::Kube(error) if error.unavailable())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An ECDS file: `resources:` holding one `TypedExtensionConfig`.
    File(PathBuf),
    /// A WasmPlugin, TrafficExtension or EnvoyFilter: of the kind given, or else the one
    /// kind that has an object of that name.
    Kube {
        kind: Option<Kind>,
        namespace: String,
        name: String,
    },
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
        let parts: Vec<&str> = rest.split('/').collect();
        let (kind, namespace, name) = match parts.as_slice() {
            [namespace, name] => (None, *namespace, *name),
            [namespace, kind, name] => {
                let kind = kind.parse::<Kind>().map_err(|()| syntax())?;
                (Some(kind), *namespace, *name)
            }
            _ => return Err(syntax()),
        };
        if namespace.is_empty() || name.is_empty() {
            return Err(syntax());
        }
        Ok(Target::Kube {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::File(path) => write!(f, "file:{}", path.display()),
            Target::Kube {
                kind: None,
                namespace,
                name,
            } => write!(f, "kube://{namespace}/{name}"),
            Target::Kube {
                kind: Some(kind),
                namespace,
                name,
            } => write!(f, "kube://{namespace}/{}/{name}", kind.lowercase()),
        }
    }
}

impl Target {
    /// The live plugin configuration.
    pub fn read(&self) -> Result<Value> {
        match self {
            Target::File(path) => Ok(file::read(path)?),
            Target::Kube { .. } => Ok(kube::read(self.location()?)?),
        }
    }

    /// Applies `edit` to the live plugin configuration and writes the result back, if the
    /// filter accepts it and it differs from what is live.
    pub fn update(&self, edit: &Edit<'_>) -> Result<Update> {
        match self {
            Target::File(path) => file::update(path, edit),
            Target::Kube { .. } => kube::update(self.location()?, edit),
        }
    }

    /// The rollout record kept for `route` (see [`record`]), if there is one.
    pub fn read_record(&self, route: &str) -> Result<Option<String>> {
        match self {
            Target::File(path) => Ok(record::read_file(path, route)?),
            Target::Kube { .. } => Ok(kube::read_annotation(
                self.location()?,
                &record::annotation(route),
            )?),
        }
    }

    /// Replaces the rollout record of `route` with what `edit` makes of the current one, redoing
    /// the edit if someone else wrote it meanwhile. Returns the record now kept.
    pub fn update_record(&self, route: &str, edit: &RecordEdit<'_>) -> Result<Option<String>> {
        match self {
            Target::File(path) => Ok(record::update_file(path, route, edit)?),
            Target::Kube { .. } => Ok(kube::update_annotation(
                self.location()?,
                &record::annotation(route),
                edit,
            )?),
        }
    }

    fn location(&self) -> Result<kube::Location<'_>> {
        match self {
            Target::Kube {
                kind,
                namespace,
                name,
            } => Ok(kube::Location {
                kind: *kind,
                namespace,
                name,
            }),
            Target::File(_) => Err(Error::Syntax(self.to_string())),
        }
    }
}

/// A value a target keeps that is replaced only if nobody wrote it since it was read: the
/// plugin configuration, or a route's rollout record, in a file or a Kubernetes object.
pub(crate) trait Slot {
    /// What a write must still find: the file's bytes, the object's resourceVersion.
    type Version;
    type Value: PartialEq;

    /// The value now kept, and its version.
    async fn load(&self) -> Result<(Self::Version, Self::Value)>;

    /// Writes `value` if the slot is still at `version`; false if someone else wrote it
    /// meanwhile.
    async fn compare_and_swap(&self, version: Self::Version, value: &Self::Value) -> Result<bool>;

    /// The error once other writers kept winning for `attempts` tries.
    fn contended(&self, attempts: u32) -> Error;

    /// What the slot is, for the log.
    fn describe(&self) -> String;
}

/// Loads `slot`, lets `edit` make the new value (None: leave it as it is), and writes it if it
/// differs; when someone else wrote the slot in between, the edit is made again on a fresh
/// load, at most [`MAX_ATTEMPTS`] times. The value now kept, and whether it was written.
pub(crate) async fn read_edit_write<S: Slot>(
    slot: &S,
    edit: impl Fn(&S::Value) -> Result<Option<S::Value>>,
) -> Result<(S::Value, bool)> {
    for attempt in 1..=MAX_ATTEMPTS {
        let (version, current) = slot.load().await?;
        let new = match edit(&current)? {
            Some(new) if new != current => new,
            _ => {
                debug!(slot = %slot.describe(), "unchanged; nothing written");
                return Ok((current, false));
            }
        };
        if slot.compare_and_swap(version, &new).await? {
            info!(slot = %slot.describe(), attempt, "written");
            return Ok((new, true));
        }
        warn!(slot = %slot.describe(), attempt,
            "conflict: written by someone else meanwhile; redoing the change on a fresh read");
        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
    }
    Err(slot.contended(MAX_ATTEMPTS))
}

/// Runs a target's future to completion on a runtime of its own.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    Ok(runtime.block_on(future))
}

/// A change to the plugin configuration, applied in place.
pub type Edit<'a> = dyn Fn(&mut Value) -> Result<(), WeightError> + 'a;

/// The edited configuration, if the filter's own parser accepts it.
fn edited(live: &Value, edit: &Edit<'_>) -> Result<Value> {
    let mut config = live.clone();
    edit(&mut config)?;
    crate::document::compile(&config).map_err(Error::Invalid)?;
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
                kind: None,
                namespace: "shop".into(),
                name: "reviews-canary".into()
            }
        );
        for (text, kind) in [
            ("kube://shop/envoyfilter/reviews-canary", Kind::EnvoyFilter),
            ("kube://shop/wasmplugin/reviews-canary", Kind::WasmPlugin),
            (
                "kube://shop/trafficextension/reviews-canary",
                Kind::TrafficExtension,
            ),
        ] {
            let target = text.parse::<Target>().unwrap();
            assert_eq!(
                target,
                Target::Kube {
                    kind: Some(kind),
                    namespace: "shop".into(),
                    name: "reviews-canary".into()
                },
                "{text}"
            );
            assert_eq!(target.to_string(), text, "shown as written");
        }
        for bad in [
            "file:",
            "/etc/ecds.json",
            "kube://shop",
            "kube:///x",
            "kube://shop/",
            "kube://a/b/c",
            "kube://a/deployment/c",
            "kube://a/envoyfilter/",
            "kube://a/envoyfilter/b/c",
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
