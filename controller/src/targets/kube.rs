//! `kube://NAMESPACE/NAME`: the WasmPlugin (or, failing that, the TrafficExtension) of that
//! name, through the Kubernetes API. The client comes from the ambient configuration:
//! `KUBECONFIG` or `~/.kube/config`, else the in-cluster service account.
//!
//! A change is a JSON merge patch of `spec.pluginConfig` (`spec.wasm.pluginConfig` for a
//! TrafficExtension) holding only what changed (for a weight change, the `routes` list) and
//! the `metadata.resourceVersion` it was computed from, so the API server refuses it with
//! 409 Conflict if anyone wrote the object in between; the change is then recomputed on a
//! fresh read, at most [`MAX_ATTEMPTS`] times.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use super::{edited, Edit, Error, Update, MAX_ATTEMPTS};

pub const GROUP: &str = "extensions.istio.io";
pub const VERSION: &str = "v1alpha1";
const FIELD_MANAGER: &str = "canaryctl";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot start the Kubernetes client runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no Kubernetes client configuration (KUBECONFIG, ~/.kube/config or in-cluster): {}", describe(.0))]
    Client(Box<kube::Error>),
    #[error("no WasmPlugin or TrafficExtension named {name:?} in namespace {namespace:?}")]
    NotFound { namespace: String, name: String },
    #[error("{kind} {namespace}/{name} has no {field}")]
    NoPluginConfig {
        kind: Kind,
        namespace: String,
        name: String,
        field: &'static str,
    },
    #[error(
        "the Kubernetes API refused to {action} {kind} {namespace}/{name}: {}",
        describe(error)
    )]
    Api {
        action: &'static str,
        kind: Kind,
        namespace: String,
        name: String,
        error: Box<kube::Error>,
    },
    #[error(
        "{kind} {namespace}/{name} kept changing while it was being updated: gave up after {attempts} conflicting writes"
    )]
    Conflict {
        kind: Kind,
        namespace: String,
        name: String,
        attempts: u32,
    },
}

/// An API error as the server put it (`message (Reason, code)`), any other as it is.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({}, {})", status.message, status.reason, status.code)
        }
        other => other.to_string(),
    }
}

/// The Istio kinds that carry a Wasm plugin configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WasmPlugin,
    TrafficExtension,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Kind {
    /// In the order a `kube://` target is looked up.
    const ALL: [Kind; 2] = [Kind::WasmPlugin, Kind::TrafficExtension];

    fn name(self) -> &'static str {
        match self {
            Kind::WasmPlugin => "WasmPlugin",
            Kind::TrafficExtension => "TrafficExtension",
        }
    }

    fn api_resource(self) -> ApiResource {
        let plural = match self {
            Kind::WasmPlugin => "wasmplugins",
            Kind::TrafficExtension => "trafficextensions",
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GROUP, VERSION, self.name()),
            plural,
        )
    }

    /// Where the plugin configuration sits in the object's `spec`.
    fn config_path(self) -> &'static [&'static str] {
        match self {
            Kind::WasmPlugin => &["pluginConfig"],
            Kind::TrafficExtension => &["wasm", "pluginConfig"],
        }
    }

    fn config_field(self) -> &'static str {
        match self {
            Kind::WasmPlugin => "spec.pluginConfig",
            Kind::TrafficExtension => "spec.wasm.pluginConfig",
        }
    }

    fn config(self, object: &DynamicObject) -> Option<&Value> {
        let spec = object.data.get("spec")?;
        self.config_path()
            .iter()
            .try_fold(spec, |value, key| value.get(key))
    }

    /// The merge patch that applies `config_patch` to the plugin configuration, valid only
    /// against `resource_version`.
    fn patch(self, resource_version: Option<&str>, config_patch: Value) -> Value {
        let spec = self
            .config_path()
            .iter()
            .rev()
            .fold(config_patch, |inner, key| json!({ *key: inner }));
        json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": spec,
        })
    }
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`: only the members that
/// differ, arrays whole, removed members as `null`.
fn merge_diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(before) if before == value => {}
                    Some(before) => {
                        patch.insert(key.clone(), merge_diff(before, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

/// One WasmPlugin or TrafficExtension, by namespace and name.
struct Resource<'a> {
    client: Client,
    namespace: &'a str,
    name: &'a str,
}

pub fn read(namespace: &str, name: &str) -> Result<Value, KubeError> {
    block_on(async {
        let resource = Resource::connect(namespace, name).await?;
        let (kind, object) = resource.get().await?;
        resource.config(kind, &object).cloned()
    })?
}

pub fn update(namespace: &str, name: &str, edit: &Edit<'_>) -> Result<Update, Error> {
    block_on(async {
        let resource = Resource::connect(namespace, name).await?;
        resource.update(edit).await
    })?
}

fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, KubeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(KubeError::Runtime)?;
    Ok(runtime.block_on(future))
}

impl<'a> Resource<'a> {
    async fn connect(namespace: &'a str, name: &'a str) -> Result<Self, KubeError> {
        let client = Client::try_default()
            .await
            .map_err(|e| KubeError::Client(Box::new(e)))?;
        Ok(Self {
            client,
            namespace,
            name,
        })
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), self.namespace, &kind.api_resource())
    }

    /// The WasmPlugin of this name, or else the TrafficExtension.
    async fn get(&self) -> Result<(Kind, DynamicObject), KubeError> {
        for kind in Kind::ALL {
            match self.api(kind).get(self.name).await {
                Ok(object) => {
                    debug!(%kind, namespace = self.namespace, name = self.name,
                        resource_version = ?object.metadata.resource_version, "read");
                    return Ok((kind, object));
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    debug!(%kind, namespace = self.namespace, name = self.name, "not found");
                }
                Err(source) => return Err(self.api_error("read", kind, source)),
            }
        }
        Err(KubeError::NotFound {
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
        })
    }

    fn config<'o>(&self, kind: Kind, object: &'o DynamicObject) -> Result<&'o Value, KubeError> {
        kind.config(object)
            .ok_or_else(|| KubeError::NoPluginConfig {
                kind,
                namespace: self.namespace.to_owned(),
                name: self.name.to_owned(),
                field: kind.config_field(),
            })
    }

    async fn update(&self, edit: &Edit<'_>) -> Result<Update, Error> {
        let mut last_kind = Kind::WasmPlugin;
        for attempt in 1..=MAX_ATTEMPTS {
            let (kind, object) = self.get().await?;
            last_kind = kind;
            let live = self.config(kind, &object)?;
            let config = edited(live, edit)?;
            if &config == live {
                info!(%kind, namespace = self.namespace, name = self.name,
                    "configuration unchanged; nothing written");
                return Ok(Update {
                    config,
                    written: false,
                });
            }
            let resource_version = object.metadata.resource_version.as_deref();
            let patch = kind.patch(resource_version, merge_diff(live, &config));
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            match self
                .api(kind)
                .patch(self.name, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(written) => {
                    info!(%kind, namespace = self.namespace, name = self.name, attempt,
                        resource_version = ?written.metadata.resource_version,
                        "configuration written");
                    return Ok(Update {
                        config,
                        written: true,
                    });
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    warn!(%kind, namespace = self.namespace, name = self.name, attempt,
                        message = %status.message, "conflict: written by someone else meanwhile; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(source) => return Err(self.api_error("update", kind, source).into()),
            }
        }
        Err(KubeError::Conflict {
            kind: last_kind,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            attempts: MAX_ATTEMPTS,
        }
        .into())
    }

    fn api_error(&self, action: &'static str, kind: Kind, source: kube::Error) -> KubeError {
        KubeError::Api {
            action,
            kind,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            error: Box::new(source),
        }
    }
}

/// The annotation `key` on the WasmPlugin (or TrafficExtension) `namespace/name`.
pub fn read_annotation(
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, KubeError> {
    block_on(async {
        let resource = Resource::connect(namespace, name).await?;
        let (_, object) = resource.get().await?;
        Ok(annotation(&object, key))
    })?
}

/// Sets the annotation `key` to what `edit` makes of it, by a merge patch carrying the
/// `resourceVersion` it was computed from, redone on a fresh read after a conflict.
pub fn update_annotation(
    namespace: &str,
    name: &str,
    key: &str,
    edit: &super::RecordEdit<'_>,
) -> Result<Option<String>, KubeError> {
    block_on(async {
        let resource = Resource::connect(namespace, name).await?;
        resource.update_annotation(key, edit).await
    })?
}

fn annotation(object: &DynamicObject, key: &str) -> Option<String> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
}

/// The merge patch setting one annotation, valid only against `resource_version`.
fn annotation_patch(resource_version: Option<&str>, key: &str, value: &str) -> Value {
    json!({ "metadata": { "resourceVersion": resource_version, "annotations": { key: value } } })
}

impl Resource<'_> {
    async fn update_annotation(
        &self,
        key: &str,
        edit: &super::RecordEdit<'_>,
    ) -> Result<Option<String>, KubeError> {
        let mut last_kind = Kind::WasmPlugin;
        for attempt in 1..=MAX_ATTEMPTS {
            let (kind, object) = self.get().await?;
            last_kind = kind;
            let current = annotation(&object, key);
            let Some(value) = edit(current.as_deref()) else {
                return Ok(current);
            };
            if current.as_deref() == Some(value.as_str()) {
                return Ok(current);
            }
            let patch = annotation_patch(object.metadata.resource_version.as_deref(), key, &value);
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            match self
                .api(kind)
                .patch(self.name, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    info!(%kind, namespace = self.namespace, name = self.name, key, attempt,
                        "annotation written");
                    return Ok(Some(value));
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    warn!(%kind, namespace = self.namespace, name = self.name, key, attempt,
                        "conflict writing the annotation; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(source) => return Err(self.api_error("annotate", kind, source)),
            }
        }
        Err(KubeError::Conflict {
            kind: last_kind,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_carry_the_resource_version_and_the_whole_plugin_config() {
        let config = json!({"routes": []});
        assert_eq!(
            Kind::WasmPlugin.patch(Some("42"), config.clone()),
            json!({"metadata": {"resourceVersion": "42"}, "spec": {"pluginConfig": {"routes": []}}})
        );
        assert_eq!(
            Kind::TrafficExtension.patch(Some("7"), config),
            json!({"metadata": {"resourceVersion": "7"},
                   "spec": {"wasm": {"pluginConfig": {"routes": []}}}})
        );
    }

    #[test]
    fn merge_diffs_hold_only_what_changed() {
        let from = json!({"a": 1, "keep": {"x": [1, 2], "y": null}, "routes": [{"w": 90}, {"w": 10}], "gone": 1});
        let to = json!({"a": 1, "keep": {"x": [1, 2], "y": null}, "routes": [{"w": 70}, {"w": 30}], "new": true});
        let diff = merge_diff(&from, &to);
        assert_eq!(
            diff,
            json!({"routes": [{"w": 70}, {"w": 30}], "new": true, "gone": null})
        );
        let mut applied = from.clone();
        merge(&mut applied, &diff);
        assert_eq!(applied, to, "applying the diff gives the target");
    }

    /// RFC 7386, to check `merge_diff` against.
    fn merge(target: &mut Value, patch: &Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(fields), Some(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        fields.remove(key);
                    } else {
                        merge(fields.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }

    #[test]
    fn annotation_patches_carry_the_resource_version() {
        assert_eq!(
            annotation_patch(Some("9"), "rollout.canary-router.io/web", "{}"),
            json!({"metadata": {"resourceVersion": "9",
                   "annotations": {"rollout.canary-router.io/web": "{}"}}})
        );
    }

    #[test]
    fn api_resources_match_the_istio_crds() {
        let wasm = Kind::WasmPlugin.api_resource();
        assert_eq!(
            (wasm.api_version.as_str(), wasm.plural.as_str()),
            ("extensions.istio.io/v1alpha1", "wasmplugins")
        );
        let te = Kind::TrafficExtension.api_resource();
        assert_eq!(
            (te.kind.as_str(), te.plural.as_str()),
            ("TrafficExtension", "trafficextensions")
        );
    }
}
