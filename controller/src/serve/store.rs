//! The live configuration, read from the target (the only source of truth) and published to
//! the gRPC streams and the API as a [`Snapshot`].
//!
//! Changes from the API go through the target's parse → edit → validate → write cycle, awaited
//! on the server's own runtime; the target is then read back and the new snapshot published. The target is also polled, so an
//! edit made by someone else (an operator, `canaryctl set-weight`, a rollout) is pushed too.
//! A configuration the filter's parser rejects is never published: the last good snapshot
//! stays, and the error is kept for `/readyz` and the API.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canary_filter::{PluginConfig, RoutingTable};
use tokio::sync::watch;
use tracing::{error, info};

use super::resource::{Resource, ResourceError};
use crate::ecds::{EcdsError, EcdsFile, Format};
use crate::targets::{self, Clients, Target};
use crate::weights::Change;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Target(#[from] targets::Error),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {error}")]
    Resource { path: String, error: ResourceError },
    #[error("{0}: the filter rejects the live configuration:\n{1}")]
    Invalid(String, canary_filter::ConfigErrors),
}

/// One version of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The content version: the resource's for an ECDS file, else the plugin configuration's.
    pub version: String,
    pub plugin_config: PluginConfig,
    /// The ECDS resource: a `file:` target's, or a dynamic-module EnvoyFilter's
    /// `TypedExtensionConfig`. Any other Kubernetes target is delivered by istiod alone.
    pub resource: Option<Resource>,
}

pub struct Store {
    target: Target,
    clients: Clients,
    published: watch::Sender<Arc<Snapshot>>,
    /// Why the target's current content was not published, if it was not.
    last_error: Mutex<Option<String>>,
    /// One change or reload at a time.
    writing: tokio::sync::Mutex<()>,
}

impl Store {
    /// Reads the target; fails if it holds nothing the filter would accept.
    pub async fn open(target: Target, clients: Clients) -> Result<Store, StoreError> {
        let snapshot = load(&target, &clients).await?;
        info!(target = %target, version = %snapshot.version, "configuration loaded");
        Ok(Store {
            target,
            clients,
            published: watch::Sender::new(Arc::new(snapshot)),
            last_error: Mutex::new(None),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.published.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.published.subscribe()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Applies `change` to `route` on the target, then publishes what the target now holds.
    pub async fn change(&self, route: &str, change: Change) -> Result<Arc<Snapshot>, StoreError> {
        let _writing = self.writing.lock().await;
        self.target
            .update(&self.clients, &|config| change.apply(config, route))
            .await?;
        self.reload_locked().await
    }

    /// Reads the target again and publishes it if it changed and the filter accepts it.
    pub async fn reload(&self) -> Result<Arc<Snapshot>, StoreError> {
        let _writing = self.writing.lock().await;
        self.reload_locked().await
    }

    async fn reload_locked(&self) -> Result<Arc<Snapshot>, StoreError> {
        match load(&self.target, &self.clients).await {
            Ok(snapshot) => {
                self.set_error(None);
                self.published.send_if_modified(|current| {
                    if current.version == snapshot.version {
                        return false;
                    }
                    info!(target = %self.target, from = %current.version, to = %snapshot.version, "configuration changed");
                    *current = Arc::new(snapshot);
                    true
                });
                Ok(self.current())
            }
            Err(error) => {
                self.set_error(Some(error.to_string()));
                Err(error)
            }
        }
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut last) = self.last_error.lock() {
            if error.is_some() && *last != error {
                error!(target = %self.target, error = error.as_deref().unwrap_or_default(), "live configuration not published; the last good one stays");
            }
            *last = error;
        }
    }

    /// Reloads every `interval` until `stop` turns true.
    pub async fn watch(&self, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = super::stopped(&mut stop) => return,
                () = tokio::time::sleep(interval) => {
                    let _ = self.reload().await;
                }
            }
        }
    }
}

async fn load(target: &Target, clients: &Clients) -> Result<Snapshot, StoreError> {
    let invalid = |errors| StoreError::Invalid(target.to_string(), errors);
    let (plugin_config, resource) = match target {
        Target::File(path) => {
            let file = read_file(target, path)?;
            let resource =
                Resource::from_document(&file.document).map_err(|error| StoreError::Resource {
                    path: path.display().to_string(),
                    error,
                })?;
            (file.config, Some(resource))
        }
        Target::Kube { .. } => {
            let (config, extension_config) = target.read_with_extension_config(clients).await?;
            let resource = extension_config
                .map(|extension| {
                    Resource::from_extension_config(&extension.value, &extension.path).map_err(
                        |error| StoreError::Resource {
                            path: target.to_string(),
                            error,
                        },
                    )
                })
                .transpose()?;
            (config, resource)
        }
    };
    RoutingTable::try_from(&plugin_config).map_err(invalid)?;
    let version = match &resource {
        Some(resource) => resource.version.clone(),
        None => {
            use sha2::{Digest, Sha256};
            let text = serde_json::to_string(&plugin_config).unwrap_or_default();
            let digest = Sha256::digest(text.as_bytes());
            hex::encode(digest).chars().take(16).collect()
        }
    };
    Ok(Snapshot {
        version,
        plugin_config,
        resource,
    })
}

/// The ECDS file of `target`, JSON or YAML by its extension as Envoy reads it.
fn read_file(target: &Target, path: &Path) -> Result<EcdsFile, StoreError> {
    let read_error = |reason: String| StoreError::Read {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| read_error(e.to_string()))?;
    EcdsFile::parse(bytes, Format::of(path)).map_err(|error| match error {
        EcdsError::PluginConfig(errors) => StoreError::Invalid(target.to_string(), errors),
        other => read_error(other.to_string()),
    })
}
