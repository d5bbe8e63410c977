//! Where the live plugin configuration is: an ECDS file a standalone Envoy watches, or an RDS
//! file whose route's cluster the dynamic module picks (`file:PATH`), or a WasmPlugin / TrafficExtension / EnvoyFilter in Kubernetes
//! (`kube://NAMESPACE/NAME`, or `kube://NAMESPACE/KIND/NAME` to name the kind, which also
//! reaches an Envoy Gateway EnvoyExtensionPolicy).
//!
//! Every change is parse → edit → validate → write: the configuration is read from the target
//! (the only source of truth) into the filter's typed [`PluginConfig`], edited there, written
//! out as JSON, checked by the filter's own parser on exactly those bytes, and written back only
//! if the filter would accept it. Both targets detect a concurrent writer and redo the whole
//! cycle on the fresh configuration.
//!
//! Each thing a target keeps — the plugin configuration, a route's rollout record — is a
//! [`Slot`]: it can be loaded with a version, and replaced only if still at that version.
//! [`read_edit_write`] is the one loop over a slot that every change goes through.
//!
//! Every function is async and runs on the caller's runtime; the clients a target is reached
//! through ([`Clients`]) are made once per process and shared by every call.

mod atomic;
mod file;
mod kube;
pub mod record;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use canary_filter::{ConfigErrors, PluginConfig};
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

pub use self::file::FileError;
pub use self::kube::{Kind, KubeError};
pub use self::record::RecordEdit;
use crate::weights::WeightError;

/// How many times a change is tried when someone else writes the target at the same time.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid target {0:?}: expected file:PATH, kube://NAMESPACE/NAME or kube://NAMESPACE/KIND/NAME (KIND: wasmplugin, trafficextension, envoyfilter or envoyextensionpolicy)")]
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
    /// A WasmPlugin, TrafficExtension, EnvoyFilter or EnvoyExtensionPolicy: of the kind
    /// given, or else the one Istio kind that has an object of that name.
    Kube {
        kind: Option<Kind>,
        namespace: String,
        name: String,
    },
}

/// An ECDS resource a target holds whole, which Envoy can take as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionConfig {
    /// Where the target keeps it, as errors name it.
    pub path: String,
    /// The `TypedExtensionConfig`, as JSON.
    pub value: serde_json::Value,
}

/// The result of an update.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The plugin configuration now live.
    pub config: PluginConfig,
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

/// The clients targets are reached through: made once per process and shared by every call
/// (cheap to clone). The Kubernetes client is connected on first use, so a process that only
/// reaches files never looks for a Kubernetes configuration.
#[derive(Clone, Default)]
pub struct Clients {
    kube: Arc<OnceCell<kube::Connection>>,
    /// The Kubernetes client configuration, when not the ambient one.
    kube_config: Option<::kube::Config>,
}

impl Clients {
    /// Clients whose Kubernetes client is configured by `config` rather than by the environment.
    pub fn with_kube_config(config: ::kube::Config) -> Self {
        Clients {
            kube: Arc::default(),
            kube_config: Some(config),
        }
    }

    async fn kube(&self) -> Result<&kube::Connection, KubeError> {
        self.kube
            .get_or_try_init(|| kube::Connection::connect(self.kube_config.clone()))
            .await
    }
}

impl Target {
    /// The live plugin configuration.
    pub async fn read(&self, clients: &Clients) -> Result<PluginConfig> {
        match self {
            Target::File(path) => Ok(file::read(path)?),
            Target::Kube { .. } => kube::read(clients.kube().await?, self.location()?).await,
        }
    }

    /// The live plugin configuration and, if a `kube://` target's object holds one that
    /// Envoy can take as it stands, the ECDS resource carrying it: a dynamic-module
    /// EnvoyFilter's `TypedExtensionConfig`. (A `file:` target is an ECDS document as a whole,
    /// which its reader takes from the file: none here.)
    pub async fn read_with_extension_config(
        &self,
        clients: &Clients,
    ) -> Result<(PluginConfig, Option<ExtensionConfig>)> {
        match self {
            Target::File(path) => Ok((file::read(path)?, None)),
            Target::Kube { .. } => {
                kube::read_with_extension_config(clients.kube().await?, self.location()?).await
            }
        }
    }

    /// Applies `edit` to the live plugin configuration and writes the result back, if the
    /// filter accepts it and it differs from what is live.
    pub async fn update(&self, clients: &Clients, edit: &Edit<'_>) -> Result<Update> {
        match self {
            Target::File(path) => file::update(path, edit).await,
            Target::Kube { .. } => {
                kube::update(clients.kube().await?, self.location()?, edit).await
            }
        }
    }

    /// The rollout record kept for `route` (see [`record`]), if there is one.
    pub async fn read_record(&self, clients: &Clients, route: &str) -> Result<Option<String>> {
        match self {
            Target::File(path) => Ok(record::read_file(path, route)?),
            Target::Kube { .. } => {
                let key = record::annotation(route);
                kube::read_annotation(clients.kube().await?, self.location()?, &key).await
            }
        }
    }

    /// Replaces the rollout record of `route` with what `edit` makes of the current one, redoing
    /// the edit if someone else wrote it meanwhile. Returns the record now kept.
    pub async fn update_record(
        &self,
        clients: &Clients,
        route: &str,
        edit: &RecordEdit<'_>,
    ) -> Result<Option<String>> {
        match self {
            Target::File(path) => record::update_file(path, route, edit).await,
            Target::Kube { .. } => {
                let key = record::annotation(route);
                let connection = clients.kube().await?;
                kube::update_annotation(connection, self.location()?, &key, edit).await
            }
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

/// A change to the plugin configuration, applied in place.
pub type Edit<'a> = dyn Fn(&mut PluginConfig) -> Result<(), WeightError> + Send + Sync + 'a;

/// The edited configuration, if the filter's own parser accepts it as it will be written.
fn edited(live: &PluginConfig, edit: &Edit<'_>) -> Result<PluginConfig> {
    let mut config = live.clone();
    edit(&mut config)?;
    let written = serde_json::to_vec(&config).map_err(|error| {
        Error::Invalid(canary_filter::ConfigError::new("$", error.to_string()).into())
    })?;
    canary_filter::parse(&written).map_err(Error::Invalid)?;
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
            (
                "kube://shop/envoyextensionpolicy/reviews-canary",
                Kind::EnvoyExtensionPolicy,
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
        let live = canary_filter::config::decode(
            br#"{"routes": [{"name": "r", "variants": [
            {"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}]}]}"#,
        )
        .unwrap();
        let breaks_it = |config: &mut PluginConfig| {
            config.routes[0].variants[1].name = "Canary!".into();
            Ok(())
        };
        let error = edited(&live, &breaks_it).unwrap_err().to_string();
        assert!(
            error.contains("routes[0].variants[1].name"),
            "names the JSON path: {error}"
        );
    }
}
