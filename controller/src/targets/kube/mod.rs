//! `kube://NAMESPACE/NAME`: the WasmPlugin, TrafficExtension or EnvoyFilter of that name,
//! through the Kubernetes API; `kube://NAMESPACE/KIND/NAME` names the kind when several kinds
//! have that name, and is the only way to name an Envoy Gateway EnvoyExtensionPolicy (see
//! [`envoy_extension_policy`]), which lives in another API than Istio's. The client comes from
//! the ambient configuration: `KUBECONFIG` or `~/.kube/config`, else the in-cluster service
//! account.
//!
//! An EnvoyFilter is a target when it has the shape `canaryctl render --api envoyfilter`
//! gives it, for the Wasm module or the dynamic module: one `EXTENSION_CONFIG` patch whose
//! Wasm filter's `configuration`, or whose `DynamicModuleFilter`'s `filter_config`, is a
//! `StringValue` holding the plugin configuration as JSON (see [`envoy_filter`]).
//!
//! A change is a JSON merge patch of `spec.pluginConfig` (`spec.wasm.pluginConfig` for a
//! TrafficExtension) holding only what changed (for a weight change, the `routes` list), or
//! for an EnvoyFilter of `spec.configPatches` (a list, so patched whole, with only the plugin
//! configuration string changed), for an EnvoyExtensionPolicy of `spec.dynamicModule` (the
//! same, with only what changed in the configuration object), and the
//! `metadata.resourceVersion` it was computed from, so the API server refuses it with 409
//! Conflict if anyone wrote the object in between; the change is then recomputed on a fresh
//! read, at most [`MAX_ATTEMPTS`] times.
//!
//! One client is connected per process, on first use ([`super::Clients`]), and shared by every
//! call, concurrent ones included. Every call survives a briefly unavailable API server (see
//! [`retry`]). A 401 or 403 is reported with what the client's credentials or RBAC role lack.
//!
//! Without a kind, the name is looked up as each of Istio's kinds; a kind the client's role
//! may not read (403) is not a candidate, so a role granting only the one resource is enough.

mod envoy_extension_policy;
mod envoy_filter;
mod retry;

use std::sync::{Mutex, PoisonError};

use canary_filter::{ConfigErrors, PluginConfig};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::client::ClientBuilder;
use kube::Client;
use serde_json::{json, Value};
use tracing::debug;

use self::envoy_filter::Filter;
use self::retry::{retrying, Budget};
use super::{edited, read_edit_write, Edit, Error, ExtensionConfig, RecordEdit, Slot, Update};

pub const GROUP: &str = "extensions.istio.io";
pub const VERSION: &str = "v1alpha1";
pub const NETWORKING_GROUP: &str = "networking.istio.io";
pub const NETWORKING_VERSION: &str = "v1alpha3";
pub const GATEWAY_GROUP: &str = "gateway.envoyproxy.io";
pub const GATEWAY_VERSION: &str = "v1alpha1";
const FIELD_MANAGER: &str = "canaryctl";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("no Kubernetes client configuration (KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    Config(Box<kube::config::InferConfigError>),
    #[error("cannot build the Kubernetes client: {}", describe(.0))]
    Client(Box<kube::Error>),
    #[error("invalid {0}")]
    RetryBudget(String),
    #[error("no {} named {name:?} in namespace {namespace:?}{}", kinds_text(.kinds, "or"), unreadable_text(.unreadable))]
    NotFound {
        kinds: Vec<Kind>,
        /// The kinds the client's role may not read, so not looked at.
        unreadable: Vec<Kind>,
        namespace: String,
        name: String,
    },
    #[error(
        "the Kubernetes API did not accept the client's credentials to {verb} {kind} {namespace}/{name}: \
         {message} (Unauthorized, 401); check the token or certificate of the kubeconfig's user, \
         or the pod's service account token"
    )]
    Unauthorized {
        verb: &'static str,
        kind: Kind,
        namespace: String,
        name: String,
        message: String,
    },
    #[error(
        "the Kubernetes API refused to {verb} {kind} {namespace}/{name}: {message} (Forbidden, 403); \
         the client's RBAC role must allow verb {verb:?} on resource {:?} in API group {:?} \
         in namespace {namespace:?} (resourceNames: [{name:?}] is enough)",
        kind.plural(), kind.group()
    )]
    Forbidden {
        verb: &'static str,
        kind: Kind,
        namespace: String,
        name: String,
        message: String,
    },
    #[error(
        "kube://{namespace}/{name} is ambiguous: there are {} objects of that name; name the kind: {}",
        kinds_text(.kinds, "and"),
        .kinds.iter().map(|k| format!("kube://{namespace}/{}/{name}", k.lowercase())).collect::<Vec<_>>().join(" or ")
    )]
    Ambiguous {
        kinds: Vec<Kind>,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name} has no {field}")]
    NoPluginConfig {
        kind: Kind,
        namespace: String,
        name: String,
        field: &'static str,
    },
    #[error(
        "{kind} {namespace}/{name} carries {} plugin configurations, in {}; canaryctl changes \
         an object with exactly one",
        .fields.len(), .fields.join(" and ")
    )]
    SeveralPluginConfigs {
        kind: Kind,
        namespace: String,
        name: String,
        fields: Vec<String>,
    },
    #[error(
        "{kind} {namespace}/{name}: the plugin configuration in {field} cannot be read:\n{errors}"
    )]
    PluginConfigUnreadable {
        kind: Kind,
        namespace: String,
        name: String,
        field: String,
        errors: ConfigErrors,
    },
    #[error(
        "the Kubernetes API refused to {verb} {kind} {namespace}/{name}: {}",
        describe(error)
    )]
    Api {
        verb: &'static str,
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

impl KubeError {
    /// Whether the API may accept the same call later: it was unavailable or overloaded, or
    /// other writers kept conflicting.
    pub fn unavailable(&self) -> bool {
        match self {
            KubeError::Api { error, .. } => retry::transient(error),
            KubeError::Conflict { .. } => true,
            _ => false,
        }
    }
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

/// ` (the client's role may not read A or B)`, or nothing.
fn unreadable_text(kinds: &[Kind]) -> String {
    if kinds.is_empty() {
        return String::new();
    }
    format!(
        " (the client's RBAC role may not read {})",
        kinds_text(kinds, "or")
    )
}

/// `A, B or C`.
fn kinds_text(kinds: &[Kind], conjunction: &str) -> String {
    match kinds {
        [] => String::new(),
        [one] => one.to_string(),
        [first @ .., last] => {
            let first: Vec<String> = first.iter().map(Kind::to_string).collect();
            format!("{} {conjunction} {last}", first.join(", "))
        }
    }
}

/// The kinds that carry a plugin configuration: Istio's, and Envoy Gateway's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WasmPlugin,
    TrafficExtension,
    EnvoyFilter,
    EnvoyExtensionPolicy,
}

impl std::str::FromStr for Kind {
    type Err = ();

    /// The kind as written in `kube://NAMESPACE/KIND/NAME`: lower case, singular.
    fn from_str(text: &str) -> Result<Self, ()> {
        Kind::NAMED
            .into_iter()
            .find(|kind| kind.lowercase() == text)
            .ok_or(())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Kind {
    /// Every kind a `kube://NAMESPACE/NAME` target is looked up as: Istio's. An Envoy Gateway
    /// policy lives in another API, and is named by its kind.
    pub const ALL: [Kind; 3] = [Kind::WasmPlugin, Kind::TrafficExtension, Kind::EnvoyFilter];

    /// Every kind a `kube://NAMESPACE/KIND/NAME` target can name.
    pub const NAMED: [Kind; 4] = [
        Kind::WasmPlugin,
        Kind::TrafficExtension,
        Kind::EnvoyFilter,
        Kind::EnvoyExtensionPolicy,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::WasmPlugin => "WasmPlugin",
            Kind::TrafficExtension => "TrafficExtension",
            Kind::EnvoyFilter => "EnvoyFilter",
            Kind::EnvoyExtensionPolicy => "EnvoyExtensionPolicy",
        }
    }

    /// As written in a `kube://NAMESPACE/KIND/NAME` target.
    pub fn lowercase(self) -> &'static str {
        match self {
            Kind::WasmPlugin => "wasmplugin",
            Kind::TrafficExtension => "trafficextension",
            Kind::EnvoyFilter => "envoyfilter",
            Kind::EnvoyExtensionPolicy => "envoyextensionpolicy",
        }
    }

    /// The resource's name in the API and in RBAC rules.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::WasmPlugin => "wasmplugins",
            Kind::TrafficExtension => "trafficextensions",
            Kind::EnvoyFilter => "envoyfilters",
            Kind::EnvoyExtensionPolicy => "envoyextensionpolicies",
        }
    }

    /// The API group, as RBAC rules name it.
    pub fn group(self) -> &'static str {
        match self {
            Kind::WasmPlugin | Kind::TrafficExtension => GROUP,
            Kind::EnvoyFilter => NETWORKING_GROUP,
            Kind::EnvoyExtensionPolicy => GATEWAY_GROUP,
        }
    }

    fn api_resource(self) -> ApiResource {
        let version = match self {
            Kind::WasmPlugin | Kind::TrafficExtension => VERSION,
            Kind::EnvoyFilter => NETWORKING_VERSION,
            Kind::EnvoyExtensionPolicy => GATEWAY_VERSION,
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group(), version, self.name()),
            self.plural(),
        )
    }

    /// Where the plugin configuration sits in the object's `spec`, for the kinds that keep it
    /// at a fixed path (WasmPlugin and TrafficExtension: as an object).
    fn config_path(self) -> &'static [&'static str] {
        match self {
            Kind::WasmPlugin => &["pluginConfig"],
            Kind::TrafficExtension => &["wasm", "pluginConfig"],
            Kind::EnvoyFilter | Kind::EnvoyExtensionPolicy => &[],
        }
    }

    /// Where this kind keeps the plugin configuration, for the error when an object has none.
    fn config_field(self) -> &'static str {
        match self {
            Kind::WasmPlugin => "spec.pluginConfig",
            Kind::TrafficExtension => "spec.wasm.pluginConfig",
            Kind::EnvoyFilter => envoy_filter::FIELD,
            Kind::EnvoyExtensionPolicy => envoy_extension_policy::FIELD,
        }
    }

    /// For the kinds that keep the plugin configuration in an entry of a list (EnvoyFilter,
    /// EnvoyExtensionPolicy), that entry's one configuration in `spec`; None for the others.
    fn in_list(self, spec: &Value) -> Result<Option<InList>, Unread> {
        Ok(Some(match self {
            Kind::WasmPlugin | Kind::TrafficExtension => return Ok(None),
            Kind::EnvoyFilter => {
                let place = the_envoy_filter_place(spec)?;
                InList {
                    list: "configPatches",
                    pointer: place.pointer(),
                    field: place.describe(),
                    as_string: true,
                }
            }
            Kind::EnvoyExtensionPolicy => {
                let place = the_one(
                    envoy_extension_policy::places(spec),
                    |place: &envoy_extension_policy::Place| place.describe(),
                )?;
                InList {
                    list: "dynamicModule",
                    pointer: place.pointer(),
                    field: place.describe(),
                    as_string: false,
                }
            }
        }))
    }

    /// The plugin configuration, read by the filter's own decoder, if the object has exactly
    /// one where this kind keeps it.
    fn config(self, object: &DynamicObject) -> Result<PluginConfig, Unread> {
        let spec = object.data.get("spec").ok_or(Unread::Missing)?;
        if let Some(place) = self.in_list(spec)? {
            let value = spec.pointer(&place.pointer).ok_or(Unread::Missing)?;
            let text = match value {
                Value::String(text) if place.as_string => text.clone(),
                _ if place.as_string => return Err(Unread::Missing),
                object => object.to_string(),
            };
            return canary_filter::config::decode(text.as_bytes())
                .map_err(|errors| Unread::Invalid(place.field, errors));
        }
        let value = self
            .config_path()
            .iter()
            .try_fold(spec, |value, key| value.get(key))
            .ok_or(Unread::Missing)?;
        canary_filter::config::decode(value.to_string().as_bytes())
            .map_err(|errors| Unread::Invalid(self.config_field().to_owned(), errors))
    }

    /// The merge patch that turns the plugin configuration `live` of `object` into `config`,
    /// valid only against the object's resourceVersion. For a WasmPlugin or TrafficExtension it
    /// holds only the members of the plugin configuration that differ, as each is written
    /// back; for an EnvoyFilter `spec.configPatches`, for an EnvoyExtensionPolicy
    /// `spec.dynamicModule`, as read with the one configuration replaced.
    fn change(
        self,
        object: &DynamicObject,
        live: &PluginConfig,
        config: &PluginConfig,
    ) -> Result<Value, serde_json::Error> {
        use serde::ser::Error as _;

        let resource_version = object.metadata.resource_version.as_deref();
        let mut spec = object.data.get("spec").cloned().unwrap_or_default();
        // `object` is the one `live` was read from, so the configuration is where it was.
        let place = match self.in_list(&spec) {
            Ok(Some(place)) => place,
            Ok(None) => {
                let diff = merge_diff(&serde_json::to_value(live)?, &serde_json::to_value(config)?);
                return Ok(self.patch(resource_version, diff));
            }
            Err(_) => {
                return Err(serde_json::Error::custom(
                    "the plugin configuration is not where it was read",
                ))
            }
        };
        if let Some(slot) = spec.pointer_mut(&place.pointer) {
            if place.as_string {
                *slot = Value::String(serde_json::to_string(config)?);
            } else {
                // As for a WasmPlugin: only the members that differ change.
                let diff = merge_diff(&serde_json::to_value(live)?, &serde_json::to_value(config)?);
                merge(slot, &diff);
            }
        }
        Ok(json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": { place.list: spec.get(place.list) },
        }))
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

/// Why an object yields no plugin configuration.
enum Unread {
    /// It has none where its kind keeps it.
    Missing,
    /// It has several, at these fields.
    Several(Vec<String>),
    /// The one at this field is not a configuration the filter reads.
    Invalid(String, ConfigErrors),
}

/// A plugin configuration in an entry of a list of the object's `spec`, which a merge patch
/// can only replace whole.
struct InList {
    /// The list's field in `spec`.
    list: &'static str,
    /// The JSON pointer to the configuration, from `spec`.
    pointer: String,
    /// Its path as errors name it.
    field: String,
    /// Whether it is written as a JSON string (an EnvoyFilter's) rather than as an object.
    as_string: bool,
}

/// Where, in an EnvoyFilter's `spec`, its one plugin configuration string is.
fn the_envoy_filter_place(spec: &Value) -> Result<envoy_filter::Place, Unread> {
    the_one(envoy_filter::places(spec), envoy_filter::Place::describe)
}

/// The one place of `places`.
fn the_one<P>(mut places: Vec<P>, describe: impl Fn(&P) -> String) -> Result<P, Unread> {
    match places.len() {
        0 => Err(Unread::Missing),
        1 => Ok(places.remove(0)),
        _ => Err(Unread::Several(places.iter().map(describe).collect())),
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

/// Applies the JSON merge patch (RFC 7386) `patch` to `target`.
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

/// The process's Kubernetes client, and how long each of its calls is retried.
pub struct Connection {
    client: Client,
    budget: Budget,
}

impl Connection {
    /// Connects with `config`, or else the ambient configuration: `KUBECONFIG` or
    /// `~/.kube/config`, else the in-cluster service account.
    pub async fn connect(config: Option<kube::Config>) -> Result<Self, KubeError> {
        let budget = Budget::from_env().map_err(KubeError::RetryBudget)?;
        let config = match config {
            Some(config) => config,
            None => kube::Config::infer()
                .await
                .map_err(|e| KubeError::Config(Box::new(e)))?,
        };
        let client = ClientBuilder::try_from(config)
            .map_err(|e| KubeError::Client(Box::new(e)))?
            .with_layer(&retry::retry_after_layer())
            .build();
        Ok(Connection { client, budget })
    }
}

/// One WasmPlugin, TrafficExtension, EnvoyFilter or EnvoyExtensionPolicy, by namespace and
/// name, of the kind given or else of whichever of Istio's kinds has that name.
struct Resource<'a> {
    connection: &'a Connection,
    kind: Option<Kind>,
    /// The kind the name was last found as.
    last_kind: Mutex<Option<Kind>>,
    namespace: &'a str,
    name: &'a str,
}

/// Where a `kube://` target points: a namespace, a name and maybe a kind.
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    pub kind: Option<Kind>,
    pub namespace: &'a str,
    pub name: &'a str,
}

pub async fn read(connection: &Connection, at: Location<'_>) -> Result<PluginConfig, Error> {
    let resource = Resource::new(connection, at);
    let (kind, object) = resource.get().await?;
    Ok(resource.config(kind, &object)?)
}

/// The live plugin configuration and, for an EnvoyFilter of the dynamic module, its
/// `TypedExtensionConfig`. That one is complete as it stands (Envoy finds the module by its
/// name), so `canaryctl serve` can deliver it over ECDS; a Wasm filter's names the module
/// image, which only the istio-agent fetches.
pub async fn read_with_extension_config(
    connection: &Connection,
    at: Location<'_>,
) -> Result<(PluginConfig, Option<ExtensionConfig>), Error> {
    let resource = Resource::new(connection, at);
    let (kind, object) = resource.get().await?;
    let config = resource.config(kind, &object)?;
    let extension_config = match (kind, object.data.get("spec")) {
        (Kind::EnvoyFilter, Some(spec)) => the_envoy_filter_place(spec)
            .ok()
            .filter(|place| place.filter == Filter::DynamicModule)
            .and_then(|place| {
                Some(ExtensionConfig {
                    path: place.extension_config_path(),
                    value: place.extension_config(spec)?,
                })
            }),
        _ => None,
    };
    Ok((config, extension_config))
}

pub async fn update(
    connection: &Connection,
    at: Location<'_>,
    edit: &Edit<'_>,
) -> Result<Update, Error> {
    Resource::new(connection, at).update(edit).await
}

/// What the API said of one kind of the name.
enum Lookup {
    Found(Box<DynamicObject>),
    Missing,
    /// The client's role may not read this kind.
    Forbidden(KubeError),
}

impl<'a> Resource<'a> {
    fn new(connection: &'a Connection, at: Location<'a>) -> Self {
        Self {
            connection,
            kind: at.kind,
            last_kind: Mutex::new(None),
            namespace: at.namespace,
            name: at.name,
        }
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.connection.client.clone(),
            self.namespace,
            &kind.api_resource(),
        )
    }

    /// The object of the kind given; else the one object of this name among the kinds the
    /// client may read (an EnvoyFilter only if it carries a plugin configuration), or an error
    /// naming them all when there are several.
    async fn get(&self) -> Result<(Kind, DynamicObject), KubeError> {
        if let Some(kind) = self.kind {
            return match self.get_kind(kind).await? {
                Lookup::Found(object) => Ok((kind, *object)),
                Lookup::Missing => Err(self.not_found(vec![kind], Vec::new())),
                Lookup::Forbidden(error) => Err(error),
            };
        }
        let mut found = Vec::new();
        let mut forbidden = Vec::new();
        for kind in Kind::ALL {
            match self.get_kind(kind).await? {
                Lookup::Found(object) => {
                    let object = *object;
                    if kind == Kind::EnvoyFilter
                        && matches!(kind.config(&object), Err(Unread::Missing))
                    {
                        debug!(%kind, namespace = self.namespace, name = self.name,
                            "carries no plugin configuration; not a target");
                        continue;
                    }
                    found.push((kind, object));
                }
                Lookup::Missing => {}
                Lookup::Forbidden(error) => {
                    debug!(%kind, namespace = self.namespace, name = self.name, %error,
                        "may not be read; not a candidate");
                    forbidden.push((kind, error));
                }
            }
        }
        match found.len() {
            0 if forbidden.len() == Kind::ALL.len() => Err(forbidden.remove(0).1),
            0 => {
                let unreadable: Vec<Kind> = forbidden.iter().map(|(kind, _)| *kind).collect();
                let readable = Kind::ALL
                    .into_iter()
                    .filter(|kind| !unreadable.contains(kind))
                    .collect();
                Err(self.not_found(readable, unreadable))
            }
            1 => Ok(found.remove(0)),
            _ => Err(KubeError::Ambiguous {
                kinds: found.iter().map(|(kind, _)| *kind).collect(),
                namespace: self.namespace.to_owned(),
                name: self.name.to_owned(),
            }),
        }
    }

    async fn get_kind(&self, kind: Kind) -> Result<Lookup, KubeError> {
        let api = self.api(kind);
        let what = format!("get {kind} {}/{}", self.namespace, self.name);
        match retrying(self.connection.budget, &what, || api.get(self.name)).await {
            Ok(object) => {
                debug!(%kind, namespace = self.namespace, name = self.name,
                    resource_version = ?object.metadata.resource_version, "read");
                Ok(Lookup::Found(Box::new(object)))
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                debug!(%kind, namespace = self.namespace, name = self.name, "not found");
                Ok(Lookup::Missing)
            }
            Err(source) => match self.api_error("get", kind, source) {
                error @ KubeError::Forbidden { .. } => Ok(Lookup::Forbidden(error)),
                error => Err(error),
            },
        }
    }

    /// Writes `patch` with the object's field manager; retried while the API is unavailable.
    async fn patch(&self, kind: Kind, patch: &Value) -> Result<DynamicObject, kube::Error> {
        let api = self.api(kind);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patch = Patch::Merge(patch);
        let what = format!("patch {kind} {}/{}", self.namespace, self.name);
        retrying(self.connection.budget, &what, || {
            api.patch(self.name, &params, &patch)
        })
        .await
    }

    fn not_found(&self, kinds: Vec<Kind>, unreadable: Vec<Kind>) -> KubeError {
        KubeError::NotFound {
            kinds,
            unreadable,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
        }
    }

    fn config(&self, kind: Kind, object: &DynamicObject) -> Result<PluginConfig, KubeError> {
        let (namespace, name) = (self.namespace.to_owned(), self.name.to_owned());
        kind.config(object).map_err(|unread| match unread {
            Unread::Invalid(field, errors) => KubeError::PluginConfigUnreadable {
                kind,
                namespace,
                name,
                field,
                errors,
            },
            Unread::Several(fields) => KubeError::SeveralPluginConfigs {
                kind,
                namespace,
                name,
                fields,
            },
            Unread::Missing => KubeError::NoPluginConfig {
                kind,
                namespace,
                name,
                field: kind.config_field(),
            },
        })
    }

    fn config_error(&self, kind: Kind, error: &serde_json::Error) -> KubeError {
        KubeError::PluginConfigUnreadable {
            kind,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            field: kind.config_field().to_owned(),
            errors: canary_filter::ConfigError::new("$", error.to_string()).into(),
        }
    }

    fn found_as(&self, kind: Kind) {
        *self
            .last_kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(kind);
    }

    /// The kind the name was last found as, else the kind given.
    fn known_kind(&self) -> Option<Kind> {
        self.last_kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .or(self.kind)
    }

    /// The error for `source`, the answer to `verb` (`get`, `patch`): for 401 and 403, what
    /// the client lacks.
    fn api_error(&self, verb: &'static str, kind: Kind, source: kube::Error) -> KubeError {
        let (namespace, name) = (self.namespace.to_owned(), self.name.to_owned());
        match source {
            kube::Error::Api(status) if status.code == 401 => KubeError::Unauthorized {
                verb,
                kind,
                namespace,
                name,
                message: status.message,
            },
            kube::Error::Api(status) if status.code == 403 => KubeError::Forbidden {
                verb,
                kind,
                namespace,
                name,
                message: status.message,
            },
            source => KubeError::Api {
                verb,
                kind,
                namespace,
                name,
                error: Box::new(source),
            },
        }
    }
}

/// The annotation `key` on the resource at `at`.
pub async fn read_annotation(
    connection: &Connection,
    at: Location<'_>,
    key: &str,
) -> Result<Option<String>, Error> {
    let (_, object) = Resource::new(connection, at).get().await?;
    Ok(annotation(&object, key))
}

/// Sets the annotation `key` to what `edit` makes of it, by a merge patch carrying the
/// `resourceVersion` it was computed from, redone on a fresh read after a conflict.
pub async fn update_annotation(
    connection: &Connection,
    at: Location<'_>,
    key: &str,
    edit: &RecordEdit<'_>,
) -> Result<Option<String>, Error> {
    Resource::new(connection, at)
        .update_annotation(key, edit)
        .await
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

/// The plugin configuration in the object.
struct ConfigSlot<'r, 'a>(&'r Resource<'a>);

/// The object as read: its kind, the object and the plugin configuration in it.
struct Seen {
    kind: Kind,
    object: DynamicObject,
    live: PluginConfig,
}

impl Slot for ConfigSlot<'_, '_> {
    type Version = Seen;
    type Value = PluginConfig;

    async fn load(&self) -> Result<(Seen, PluginConfig), Error> {
        let resource = self.0;
        let (kind, object) = resource.get().await?;
        let live = resource.config(kind, &object)?;
        resource.found_as(kind);
        Ok((
            Seen {
                kind,
                object,
                live: live.clone(),
            },
            live,
        ))
    }

    async fn compare_and_swap(&self, seen: Seen, config: &PluginConfig) -> Result<bool, Error> {
        let resource = self.0;
        let patch = seen
            .kind
            .change(&seen.object, &seen.live, config)
            .map_err(|error| resource.config_error(seen.kind, &error))?;
        Ok(resource.patch_unless_stale(seen.kind, &patch).await?)
    }

    fn contended(&self, attempts: u32) -> Error {
        self.0.conflict(attempts).into()
    }

    fn describe(&self) -> String {
        format!("the plugin configuration of {}", self.0)
    }
}

/// One annotation of the object.
struct AnnotationSlot<'r, 'a> {
    resource: &'r Resource<'a>,
    key: &'r str,
}

impl Slot for AnnotationSlot<'_, '_> {
    type Version = (Kind, Option<String>);
    type Value = Option<String>;

    async fn load(&self) -> Result<((Kind, Option<String>), Option<String>), Error> {
        let (kind, object) = self.resource.get().await?;
        self.resource.found_as(kind);
        let version = object.metadata.resource_version.clone();
        Ok(((kind, version), annotation(&object, self.key)))
    }

    async fn compare_and_swap(
        &self,
        (kind, version): (Kind, Option<String>),
        value: &Option<String>,
    ) -> Result<bool, Error> {
        // An edit sets the annotation or leaves the slot alone: it never removes it.
        let value = value.as_deref().unwrap_or_default();
        let patch = annotation_patch(version.as_deref(), self.key, value);
        Ok(self.resource.patch_unless_stale(kind, &patch).await?)
    }

    fn contended(&self, attempts: u32) -> Error {
        self.resource.conflict(attempts).into()
    }

    fn describe(&self) -> String {
        format!("the annotation {} of {}", self.key, self.resource)
    }
}

impl Resource<'_> {
    async fn update(&self, edit: &Edit<'_>) -> Result<Update, Error> {
        let (config, written) =
            read_edit_write(&ConfigSlot(self), |live| edited(live, edit).map(Some)).await?;
        Ok(Update { config, written })
    }

    async fn update_annotation(
        &self,
        key: &str,
        edit: &RecordEdit<'_>,
    ) -> Result<Option<String>, Error> {
        let slot = AnnotationSlot {
            resource: self,
            key,
        };
        let (value, _) = read_edit_write(&slot, |current: &Option<String>| {
            Ok(edit(current.as_deref()).map(Some))
        })
        .await?;
        Ok(value)
    }

    /// Writes a merge patch carrying the resourceVersion it was computed from; false when the
    /// server refused it as stale (409).
    async fn patch_unless_stale(&self, kind: Kind, patch: &Value) -> Result<bool, KubeError> {
        match self.patch(kind, patch).await {
            Ok(written) => {
                debug!(%kind, namespace = self.namespace, name = self.name,
                    resource_version = ?written.metadata.resource_version, "patched");
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                debug!(%kind, namespace = self.namespace, name = self.name,
                    message = %status.message, "stale");
                Ok(false)
            }
            Err(source) => Err(self.api_error("patch", kind, source)),
        }
    }

    fn conflict(&self, attempts: u32) -> KubeError {
        KubeError::Conflict {
            kind: self.known_kind().unwrap_or(Kind::WasmPlugin),
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            attempts,
        }
    }
}

impl std::fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.known_kind() {
            Some(kind) => write!(f, "{kind} {}/{}", self.namespace, self.name),
            None => write!(f, "kube://{}/{}", self.namespace, self.name),
        }
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

    /// A weight change patches the `routes` list and nothing else: not the defaults the object
    /// spells out, which read the same as they are written back, nor the rest of the object.
    #[test]
    fn a_weight_change_patches_only_the_routes() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "5"},
            "spec": {"url": "oci://x", "pluginConfig": {
                "decisionHeader": "x-canary-variant", "debugHeader": false,
                "routes": [{"name": "web", "targeting": [], "variants": [
                    {"name": "stable", "weight": 90.0}, {"name": "canary", "weight": 10}]}]}}
        }))
        .unwrap();
        let live = Kind::WasmPlugin.config(&object).ok().unwrap();
        let mut config = live.clone();
        crate::weights::Change::Promote("canary".into())
            .apply(&mut config, "web")
            .unwrap();
        assert_eq!(
            Kind::WasmPlugin.change(&object, &live, &config).unwrap(),
            json!({"metadata": {"resourceVersion": "5"}, "spec": {"pluginConfig": {"routes": [
                {"name": "web", "variants": [
                    {"name": "stable", "weight": 0}, {"name": "canary", "weight": 100}]}]}}})
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

    #[test]
    fn annotation_patches_carry_the_resource_version() {
        assert_eq!(
            annotation_patch(Some("9"), "rollout.canary-router.io/web", "{}"),
            json!({"metadata": {"resourceVersion": "9",
                   "annotations": {"rollout.canary-router.io/web": "{}"}}})
        );
    }

    #[test]
    fn a_403_names_what_the_role_must_allow() {
        let error = KubeError::Forbidden {
            verb: "patch",
            kind: Kind::EnvoyFilter,
            namespace: "bookinfo".into(),
            name: "reviews-canary".into(),
            message: "envoyfilters.networking.istio.io \"reviews-canary\" is forbidden".into(),
        };
        let text = error.to_string();
        for part in [
            "refused to patch EnvoyFilter bookinfo/reviews-canary",
            "(Forbidden, 403)",
            r#"verb "patch" on resource "envoyfilters" in API group "networking.istio.io""#,
            r#"in namespace "bookinfo""#,
            r#"resourceNames: ["reviews-canary"]"#,
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        assert!(!error.unavailable(), "a 403 does not go away by waiting");
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
