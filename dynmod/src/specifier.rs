//! The module as a route **cluster specifier** (`DynamicModuleClusterSpecifier`): Envoy calls
//! it while it resolves a route whose action is this specifier, and the module names the
//! cluster of the variant the decision core picks. No HTTP filter runs per stream and the
//! route is not matched again, which is what makes it cheaper than the filter; but the module
//! never sees the response, and cannot change the request, so a configuration that needs
//! either is refused ([`RoutingTable::response_needs`]).
//!
//! `specifier_name` is `canary`; `specifier_config` is a JSON object (a `StringValue`):
//!
//! ```json
//! { "cluster": "outbound|9080|{variant}|reviews.prod.svc.cluster.local",
//!   "defaultCluster": "outbound|9080|stable|reviews.prod.svc.cluster.local",
//!   "routing": { "routes": [ ... ] } }
//! ```
//!
//! `routing` is the plugin configuration of the filter, `cluster` the name of a variant's
//! cluster with `{variant}` (and, optionally, `{route}`) in it, and `defaultCluster` where a
//! request goes that no route of `routing` matches, or that the module could not decide.

use std::sync::Arc;

use canary_filter::host::LogLevel;
use canary_filter::{ConfigError, RoutingTable};
use serde::Deserialize;

use crate::abi::{
    EnvoyBuffer, ModuleBuffer, ModulePtr, SpecifierConfigEnvoyPtr, SpecifierContextEnvoyPtr,
};
use crate::config::{next_id, FilterConfig, MetricOwner};
use crate::host::{self, RouteHost};
use crate::{barrier, configuration, log_panic};

/// `specifier_config`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpecifierJson<'a> {
    cluster: String,
    default_cluster: String,
    #[serde(borrow)]
    routing: &'a serde_json::value::RawValue,
}

/// One route cluster specifier configuration Envoy accepted, shared by its workers.
pub struct SpecifierConfig {
    filter: Arc<FilterConfig>,
    /// Envoy's object of this configuration: where the counters are.
    envoy: SpecifierConfigEnvoyPtr,
    /// Each variant's cluster, by `VariantId`.
    clusters: Vec<String>,
    default_cluster: String,
}

// SAFETY: `envoy` is only passed to Envoy's counter callbacks, which may be called from any
// worker; Envoy keeps the object alive until it destroys this configuration. The rest is
// immutable once built.
unsafe impl Send for SpecifierConfig {}
// SAFETY: as for `Send`.
unsafe impl Sync for SpecifierConfig {}

impl SpecifierConfig {
    /// Parses `bytes`; on errors, logs each with its JSON path and returns `None`, so that
    /// Envoy rejects the configuration.
    fn load(envoy: SpecifierConfigEnvoyPtr, bytes: &[u8]) -> Option<SpecifierConfig> {
        let id = next_id();
        let rejected = |errors: &[ConfigError]| {
            for error in errors {
                host::log(
                    LogLevel::Error,
                    &format!("[canary {id}] cluster specifier configuration rejected: {error}"),
                );
            }
        };
        let json: SpecifierJson = match serde_json::from_slice(bytes) {
            Ok(json) => json,
            Err(error) => {
                rejected(&[ConfigError::new("$", error.to_string())]);
                return None;
            }
        };
        let routing = json.routing.get().as_bytes();
        let table = match canary_filter::parse(routing) {
            Ok(table) => table,
            Err(errors) => {
                let errors: Vec<ConfigError> = errors.iter().map(under_routing).collect();
                rejected(&errors);
                return None;
            }
        };
        let mut errors: Vec<ConfigError> =
            table.response_needs().iter().map(under_routing).collect();
        errors.extend(check_cluster("cluster", &json.cluster, true));
        errors.extend(check_cluster(
            "defaultCluster",
            &json.default_cluster,
            false,
        ));
        if !errors.is_empty() {
            rejected(&errors);
            return None;
        }
        host::log(
            LogLevel::Info,
            &format!(
                "[canary {id}] cluster specifier configuration accepted: {} route(s)",
                table.routes.len()
            ),
        );
        Some(SpecifierConfig {
            clusters: clusters(&table, &json.cluster),
            filter: FilterConfig::new(id, &table, routing, MetricOwner::ClusterSpecifier(envoy)),
            envoy,
            default_cluster: json.default_cluster,
        })
    }

    /// The cluster for one request: its variant's, or the default one when no route matches
    /// or this worker could not build the configuration.
    fn select(&self, host: &RouteHost) -> &str {
        self.filter
            .plugin()
            .and_then(|plugin| {
                let variant = plugin.decide_request(host)?;
                self.clusters.get(variant.id.0)
            })
            .unwrap_or(&self.default_cluster)
    }
}

fn under_routing(error: &ConfigError) -> ConfigError {
    let path = match error.path.as_str() {
        "$" => "routing".to_owned(),
        path => format!("routing.{path}"),
    };
    ConfigError::new(path, error.reason.clone())
}

/// The errors of a cluster name (`template`: with `{variant}` in it).
fn check_cluster(field: &str, name: &str, template: bool) -> Option<ConfigError> {
    if name.is_empty() {
        return Some(ConfigError::new(field, "must not be empty"));
    }
    if template && !name.contains("{variant}") {
        return Some(ConfigError::new(
            field,
            "must contain {variant}, so that each variant has its own cluster",
        ));
    }
    None
}

/// Each variant's cluster name, in `VariantId` order (the table's routes and variants in
/// configuration order).
fn clusters(table: &RoutingTable, template: &str) -> Vec<String> {
    table
        .routes
        .iter()
        .flat_map(|route| {
            route.variants.iter().map(|variant| {
                template
                    .replace("{route}", &route.name)
                    .replace("{variant}", &variant.name)
            })
        })
        .collect()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_cluster_specifier_config_new(
    envoy: SpecifierConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ModulePtr {
    barrier(
        "on_cluster_specifier_config_new",
        std::ptr::null(),
        log_panic,
        || {
            // SAFETY: Envoy owns both buffers for the duration of this hook.
            let Some(config) = (unsafe { configuration("specifier_name", name, config) }) else {
                return std::ptr::null();
            };
            match SpecifierConfig::load(envoy, config) {
                Some(config) => Box::into_raw(Box::new(config)).cast_const().cast(),
                None => std::ptr::null(),
            }
        },
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_cluster_specifier_config_destroy(config: ModulePtr) {
    barrier("on_cluster_specifier_config_destroy", (), log_panic, || {
        if !config.is_null() {
            // SAFETY: made by `Box::into_raw` in `on_cluster_specifier_config_new`; Envoy
            // destroys a configuration once.
            drop(unsafe { Box::from_raw(config.cast::<SpecifierConfig>().cast_mut()) });
        }
    });
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_cluster_specifier_select(
    config: ModulePtr,
    context: SpecifierContextEnvoyPtr,
) -> bool {
    if config.is_null() {
        return false;
    }
    // SAFETY: made by `on_cluster_specifier_config_new` and not yet destroyed: Envoy selects
    // only with a live configuration.
    let config = unsafe { &*config.cast::<SpecifierConfig>() };
    let host = RouteHost::new(context, config.envoy, &config.filter.metrics);
    let cluster = barrier(
        "on_cluster_specifier_select",
        config.default_cluster.as_str(),
        |message| {
            log_panic(message);
            host.count_panic();
        },
        || {
            #[cfg(feature = "panic-probe")]
            crate::panic_probe::panic_if_asked(&host);
            config.select(&host)
        },
    );
    // SAFETY: `context` is the running selection's; Envoy copies the name.
    unsafe {
        crate::abi::envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
            context,
            ModuleBuffer::from(cluster),
        );
    }
    true
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn table(json: &str) -> RoutingTable {
        match canary_filter::parse(json.as_bytes()) {
            Ok(table) => table,
            Err(errors) => unreachable!("{errors}"),
        }
    }

    #[test]
    fn each_variant_gets_its_cluster_in_variant_id_order() {
        let table = table(
            r#"{"routes": [
                {"name": "web", "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]},
                {"name": "api", "variants": [{"name": "v1", "weight": 100}]}
            ]}"#,
        );
        let clusters = clusters(&table, "{route}-{variant}");
        assert_eq!(clusters, ["web-stable", "web-canary", "api-v1"]);
        for route in &table.routes {
            for variant in &route.variants {
                assert_eq!(
                    clusters[variant.id.0],
                    format!("{}-{}", route.name, variant.name)
                );
            }
        }
    }

    #[test]
    fn a_template_without_the_variant_is_refused() {
        let error = check_cluster("cluster", "outbound|80||web", true);
        assert_eq!(
            error.map(|e| e.to_string()),
            Some(
                "cluster: must contain {variant}, so that each variant has its own cluster".into()
            )
        );
        assert!(check_cluster("defaultCluster", "outbound|80||web", false).is_none());
        assert!(check_cluster("defaultCluster", "", false).is_some());
    }

    #[test]
    fn routing_errors_are_reported_under_routing() {
        let error = ConfigError::new("routes[0].name", "bad");
        assert_eq!(under_routing(&error).path, "routing.routes[0].name");
        assert_eq!(under_routing(&ConfigError::new("$", "x")).path, "routing");
    }
}
