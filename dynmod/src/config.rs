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

use crate::abi::{self, ConfigEnvoyPtr, ModuleBuffer};
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
        let id = NEXT_CONFIG.fetch_add(1, Ordering::Relaxed);
        let plugin = Plugin::configure(&ConfigHost, id, Some(bytes))?;
        let metrics = MetricIds::define(envoy, &plugin.table);
        Some(Arc::new(FilterConfig {
            id,
            decision_header: plugin.table.decision_header.clone(),
            bytes: bytes.to_vec(),
            metrics,
        }))
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

/// A worker's [`Plugin`] per configuration id, with the configuration it was built from (to
/// drop it once the configuration is gone).
type Plugins = HashMap<u32, (Weak<FilterConfig>, Rc<Plugin>)>;

thread_local! {
    static PLUGINS: RefCell<Plugins> = RefCell::new(HashMap::new());
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
    fn define(envoy: ConfigEnvoyPtr, table: &RoutingTable) -> MetricIds {
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
                    ids.define_one(envoy, metric.kind(), name);
                }
            }
        }
        ids.define_one(envoy, MetricKind::Counter, PANIC_COUNTER.to_owned());
        ids
    }

    fn define_one(&mut self, envoy: ConfigEnvoyPtr, kind: MetricKind, name: String) {
        let mut id = 0usize;
        // SAFETY: `envoy` is the configuration pointer of the running
        // `on_http_filter_config_new`; `id` is writable; no labels.
        let result = unsafe {
            match kind {
                MetricKind::Counter => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                        envoy,
                        ModuleBuffer::from(name.as_str()),
                        std::ptr::null_mut(),
                        0,
                        &mut id,
                    )
                }
                MetricKind::Histogram => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_histogram(
                        envoy,
                        ModuleBuffer::from(name.as_str()),
                        std::ptr::null_mut(),
                        0,
                        &mut id,
                    )
                }
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
