//! One filter configuration: the plugin configuration JSON, checked once when Envoy loads it,
//! and the metrics it needs, defined then too (Envoy freezes metric definitions once
//! `envoy_dynamic_module_on_http_filter_config_new` returns).
//!
//! The decision core keeps per-configuration state in `Rc` and `Cell` (`canary_filter::http`),
//! as a proxy-wasm VM is single-threaded. Envoy shares one dynamic-module configuration across
//! its worker threads, so each worker builds its own [`Plugin`] from the same bytes the first
//! time it serves a stream of that configuration, and keeps it until the configuration is gone.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use canary_filter::host::MetricKind;
use canary_filter::http::Plugin;
use canary_filter::metrics::Metric;
use canary_filter::{Reason, RoutingTable};
use rustc_hash::FxHashMap;

use crate::abi::{self, ConfigEnvoyPtr, ModuleBuffer, SpecifierConfigEnvoyPtr};
use crate::host::{self, ConfigHost};

/// The counter of panics caught at the module boundary (`<metrics namespace>.canary.panic`).
pub const PANIC_COUNTER: &str = "canary.panic";

static NEXT_CONFIG: AtomicU32 = AtomicU32::new(1);

/// A configuration Envoy accepted; shared by every stream of every worker that uses it.
#[derive(Debug)]
pub struct FilterConfig {
    /// Names the configuration in logs, like the proxy-wasm root context id.
    pub id: u32,
    /// The request header the decision goes in, removed from a request whose hook panicked.
    pub decision_header: String,
    bytes: Vec<u8>,
    pub metrics: MetricIds,
}

impl FilterConfig {
    /// Parses `bytes`; on errors, logs each with its JSON path and returns `None`, so that
    /// Envoy rejects the configuration.
    pub fn load(envoy: ConfigEnvoyPtr, bytes: &[u8]) -> Option<Arc<FilterConfig>> {
        let id = next_id();
        let plugin = Plugin::configure(&ConfigHost, id, Some(bytes))?;
        Some(FilterConfig::new(
            id,
            &plugin.table,
            bytes,
            MetricOwner::HttpFilter(envoy),
        ))
    }

    /// A configuration `bytes` compiled to `table`, under the id `id` (from [`next_id`]), with
    /// its metrics defined on `owner`.
    pub fn new(id: u32, table: &RoutingTable, bytes: &[u8], owner: MetricOwner) -> Arc<Self> {
        Arc::new(FilterConfig {
            id,
            decision_header: table.decision_header.clone(),
            bytes: bytes.to_vec(),
            metrics: MetricIds::define(owner, table),
        })
    }

    /// This worker's [`Plugin`] for the configuration, built on first use.
    pub fn plugin(self: &Arc<Self>) -> Option<Rc<Plugin>> {
        PLUGINS.with(|plugins| {
            let mut plugins = plugins.borrow_mut();
            if let Some((_, plugin)) = plugins.get(&self.id) {
                return Some(Rc::clone(plugin));
            }
            // Configurations come and go with listener updates: drop those gone before
            // adding one.
            plugins.retain(|_, (config, _)| config.strong_count() > 0);
            let plugin = match canary_filter::parse(&self.bytes) {
                Ok(table) => Rc::new(Plugin::new(table)),
                Err(errors) => {
                    // Accepted on the main thread, so not expected; the stream then passes
                    // undecided.
                    host::log(
                        canary_filter::host::LogLevel::Error,
                        &format!(
                            "[canary {}] configuration rejected on a worker: {errors}",
                            self.id
                        ),
                    );
                    return None;
                }
            };
            plugins.insert(self.id, (Arc::downgrade(self), Rc::clone(&plugin)));
            Some(plugin)
        })
    }
}

/// A new configuration id: ids name configurations in logs, and a worker's [`Plugin`] for each.
pub fn next_id() -> u32 {
    NEXT_CONFIG.fetch_add(1, Ordering::Relaxed)
}

/// The Envoy object a configuration's metrics are defined on while it loads.
#[derive(Debug, Clone, Copy)]
pub enum MetricOwner {
    /// An HTTP filter configuration.
    HttpFilter(ConfigEnvoyPtr),
    /// A route cluster specifier configuration.
    ClusterSpecifier(SpecifierConfigEnvoyPtr),
}

/// A worker's [`Plugin`] per configuration id, with the configuration it was built from (to
/// drop it once the configuration is gone).
/// Hashed with `FxHash`: the ids are small integers of our own, looked up on every request.
type Plugins = FxHashMap<u32, (Weak<FilterConfig>, Rc<Plugin>)>;

thread_local! {
    static PLUGINS: RefCell<Plugins> = RefCell::new(FxHashMap::default());
}

/// The ids Envoy gave the configuration's metrics, by name: every name the decision core can
/// ask for under the configuration (`canary_filter::metrics`; the response metrics only with
/// `metrics.responses`, so that, as with the wasm filter, none shows when they are off, and the
/// `lane` decisions only on routes that trust incoming decisions), plus [`PANIC_COUNTER`].
#[derive(Debug, Default)]
pub struct MetricIds {
    counters: HashMap<String, usize>,
    histograms: HashMap<String, usize>,
}

impl MetricIds {
    fn define(owner: MetricOwner, table: &RoutingTable) -> MetricIds {
        let mut ids = MetricIds::default();
        for route in &table.routes {
            for variant in &route.variants {
                for metric in Metric::each() {
                    let response = matches!(metric, Metric::Response(_) | Metric::UpstreamTime);
                    if response && !table.response_metrics {
                        continue;
                    }
                    if metric == Metric::Decision(Reason::Lane) && route.lanes.is_none() {
                        continue;
                    }
                    let name = metric.name(&route.name, &variant.name);
                    ids.define_one(owner, metric.kind(), name);
                }
            }
        }
        ids.define_one(owner, MetricKind::Counter, PANIC_COUNTER.to_owned());
        ids
    }

    fn define_one(&mut self, owner: MetricOwner, kind: MetricKind, name: String) {
        let mut id = 0usize;
        let buffer = ModuleBuffer::from(name.as_str());
        // SAFETY: `owner` is the Envoy object of the configuration whose `config_new` hook
        // is running; `id` is writable; no labels.
        let result = unsafe {
            match (owner, kind) {
                (MetricOwner::HttpFilter(envoy), MetricKind::Counter) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                        envoy,
                        buffer,
                        std::ptr::null_mut(),
                        0,
                        &mut id,
                    )
                }
                (MetricOwner::HttpFilter(envoy), MetricKind::Histogram) => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_histogram(
                        envoy,
                        buffer,
                        std::ptr::null_mut(),
                        0,
                        &mut id,
                    )
                }
                (MetricOwner::ClusterSpecifier(envoy), MetricKind::Counter) => {
                    abi::envoy_dynamic_module_callback_cluster_specifier_config_define_counter(
                        envoy,
                        buffer,
                        std::ptr::null_mut(),
                        0,
                        &mut id,
                    )
                }
                // The only histogram is a response metric, which a route cluster specifier's
                // configuration cannot have (`RoutingTable::response_needs`).
                (MetricOwner::ClusterSpecifier(_), MetricKind::Histogram) => return,
            }
        };
        if result != abi::METRICS_SUCCESS {
            host::log(
                canary_filter::host::LogLevel::Warn,
                &format!("[canary] cannot define metric {name}: result {result}"),
            );
            return;
        }
        match kind {
            MetricKind::Counter => self.counters.insert(name, id),
            MetricKind::Histogram => self.histograms.insert(name, id),
        };
    }

    pub fn get(&self, kind: MetricKind, name: &str) -> Option<usize> {
        match kind {
            MetricKind::Counter => self.counters.get(name),
            MetricKind::Histogram => self.histograms.get(name),
        }
        .copied()
    }

    pub fn panic_counter(&self) -> Option<usize> {
        self.get(MetricKind::Counter, PANIC_COUNTER)
    }
}
