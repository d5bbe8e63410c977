//! The proxy-wasm binding: Envoy's contexts, and [`Host`] over the `hostcalls` that return
//! `Result` (never the `Context` helpers, which panic on a host error).
//!
//! The request headers are read as the host serialises them, one buffer that [`RequestHeaders`]
//! reads in place (proxy-wasm's `hostcalls::get_map_bytes` would copy every name and value
//! into a `String` and a `Vec` of their own).
//!
//! Two of the [`Host`] calls cost nothing on a request here:
//! - Counter increments are added up in the VM and handed to Envoy on the root context's tick,
//!   every [`FLUSH_PERIOD`], one `increment_metric` per counter that changed, and also before a
//!   configuration is replaced and when the VM stops. A call into the host costs more than the
//!   filter's whole decision; a counter that lags by a second costs nothing.
//! - `clear_route_cache` makes no call: Envoy's proxy-wasm host clears the route cache itself
//!   whenever a filter changes the request headers, which the filter does whenever it decides
//!   or removes a decision header (the `route_cache` end-to-end test shows Envoy routing on the
//!   new header with filters before this one that already picked the route).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType, Status};

use crate::host::{Host, LogLevel, MetricKind};
use crate::http::{self, Plugin, Stream};
use crate::table::RequestHeaders;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(
            proxy_wasm::types::LogLevel::Critical,
            &format!("[canary] panic: {info}"),
        );
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, plugin: None })
    });
}}

#[link(wasm_import_module = "env")]
extern "C" {
    /// proxy-wasm's call for a whole header map: the host allocates the serialised map in the
    /// module's memory, through the module's `proxy_on_memory_allocate`, and writes its address
    /// and length to the last two arguments. Declared here as the ABI has it (the SDK
    /// declares it too, but only deserialises what it returns), with the status as the plain
    /// number the host may return.
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// Header map `map`, serialised as the host returned it (empty if the host returned none), or
/// the status of a failed call.
fn serialized_map(map: MapType) -> Result<Vec<u8>, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: both out-pointers point at live locals of the right types.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    if status != Status::Ok as u32 {
        return Err(status);
    }
    if data.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: the host put the map in `size` bytes at `data` that it allocated with the
    // module's `proxy_on_memory_allocate` (the SDK's allocator: a boxed slice of exactly `size`
    // bytes, from the global allocator, alignment 1) and that nothing else refers to. A `Vec`
    // of that length and capacity owns them and frees them the same way, as the SDK's own
    // `get_map_bytes` does.
    Ok(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// How long a counter increment may wait in the VM before Envoy has it.
pub const FLUSH_PERIOD: Duration = Duration::from_secs(1);

thread_local! {
    /// Counter increments not yet handed to Envoy, by metric id. A VM runs on one thread, so
    /// this is the VM's own.
    static PENDING: RefCell<HashMap<u32, u64, rustc_hash::FxBuildHasher>> = RefCell::default();
}

/// Hands every pending counter increment to Envoy, one call per counter, in id order.
fn flush_counters() {
    let mut pending: Vec<(u32, u64)> =
        PENDING.with(|p| p.borrow_mut().drain().filter(|&(_, n)| n > 0).collect());
    pending.sort_unstable();
    for (id, n) in pending {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        if let Err(s) = hostcalls::increment_metric(id, n) {
            EnvoyHost.failed("increment metric", s);
        }
    }
}

struct Root {
    context_id: u32,
    plugin: Option<Rc<Plugin>>,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        flush_counters();
        true
    }
}

impl RootContext for Root {
    fn on_tick(&mut self) {
        flush_counters();
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        // Counts made under the configuration in force are Envoy's before it can be replaced.
        flush_counters();
        if let Err(s) = hostcalls::set_tick_period(FLUSH_PERIOD) {
            EnvoyHost.failed("set tick period", s);
        }
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes,
            Err(status) => {
                EnvoyHost.log(
                    LogLevel::Error,
                    &format!(
                        "[canary {}] cannot read the plugin configuration: {status:?}",
                        self.context_id
                    ),
                );
                return false;
            }
        };
        let started = hostcalls::get_current_time().ok();
        let plugin = Plugin::configure(&EnvoyHost, self.context_id, bytes.as_deref());
        let finished = hostcalls::get_current_time().ok();
        if let Some(took) = started
            .zip(finished)
            .and_then(|(s, f)| f.duration_since(s).ok())
        {
            let micros = took.as_micros();
            EnvoyHost.log(
                LogLevel::Debug,
                &format!("[canary {}] on_configure took {micros} us", self.context_id),
            );
        }
        match plugin {
            Some(plugin) => {
                self.plugin = Some(Rc::new(plugin));
                true
            }
            // Keep the configuration in force; the host keeps serving it.
            None => false,
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stream = self
            .plugin
            .as_ref()
            .map(|p| Stream::new(Rc::clone(p), context_id));
        Some(Box::new(Http { stream }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    /// `None` while no configuration was ever accepted: requests pass undecided, with any
    /// decision header removed.
    stream: Option<Stream>,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        match &mut self.stream {
            Some(stream) => stream.on_request_headers(&EnvoyHost),
            None => http::strip_unconfigured(&EnvoyHost),
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some(stream) = &mut self.stream {
            stream.on_response_headers(&EnvoyHost);
        }
        Action::Continue
    }
}

/// Envoy, through the proxy-wasm ABI.
struct EnvoyHost;

impl EnvoyHost {
    fn failed(&self, what: &str, status: Status) {
        self.log(
            LogLevel::Debug,
            &format!("[canary] {what} failed: {status:?}"),
        );
    }
}

impl Host for EnvoyHost {
    fn request_headers(&self) -> RequestHeaders {
        match serialized_map(MapType::HttpRequestHeaders) {
            Ok(map) => RequestHeaders::from_serialized_map(map),
            Err(status) => {
                self.log(
                    LogLevel::Debug,
                    &format!("[canary] get request headers failed: status {status}"),
                );
                RequestHeaders::default()
            }
        }
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        if let Err(s) = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value) {
            self.failed("set request header", s);
        }
    }

    /// Nothing to do: Envoy has already cleared the route cache when the filter set or removed
    /// the request header (see the module's documentation).
    fn clear_route_cache(&self) {}

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name).unwrap_or_else(|s| {
            self.failed("get response header", s);
            None
        })
    }

    fn add_response_header(&self, name: &str, value: &[u8]) {
        if let Err(s) = hostcalls::add_map_value_bytes(MapType::HttpResponseHeaders, name, value) {
            self.failed("add response header", s);
        }
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name)
            .map_err(|s| self.failed("define metric", s))
            .ok()
    }

    /// Counted in the VM; [`flush_counters`] hands the sum to Envoy.
    fn increment_counter(&self, id: u32) {
        PENDING.with(|p| *p.borrow_mut().entry(id).or_default() += 1);
    }

    fn record_histogram(&self, id: u32, value: u64) {
        if let Err(s) = hostcalls::record_metric(id, value) {
            self.failed("record metric", s);
        }
    }

    fn now_millis(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        getrandom::fill(buf).is_ok()
    }

    fn log(&self, level: LogLevel, message: &str) {
        use proxy_wasm::types::LogLevel as L;
        let level = match level {
            LogLevel::Trace => L::Trace,
            LogLevel::Debug => L::Debug,
            LogLevel::Info => L::Info,
            LogLevel::Warn => L::Warn,
            LogLevel::Error => L::Error,
            LogLevel::Critical => L::Critical,
        };
        let _ = hostcalls::log(level, message);
    }
}
