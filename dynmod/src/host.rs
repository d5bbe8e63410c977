//! [`Host`] over the dynamic-module ABI: for an HTTP stream ([`StreamHost`]), its headers
//! through the filter's Envoy pointer; for a route cluster specifier's selection
//! ([`RouteHost`]), the request headers through the selection's. Metrics are defined when
//! the configuration is loaded; logs go to Envoy's `dynamic_modules` logger.

use std::time::{SystemTime, UNIX_EPOCH};

use canary_filter::host::{Host, LogLevel, MetricKind};
use canary_filter::RequestHeaders;

use crate::abi::{
    self, FilterEnvoyPtr, ModuleBuffer, SpecifierConfigEnvoyPtr, SpecifierContextEnvoyPtr,
};
use crate::config::MetricIds;

/// Writes one line to Envoy's log, under the `dynamic_modules` logger.
pub fn log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        LogLevel::Error => 4,
        LogLevel::Critical => 5,
    };
    // SAFETY: a module-wide callback; Envoy reads the message only during the call.
    unsafe {
        abi::envoy_dynamic_module_callback_log_v2(
            level,
            ModuleBuffer::from(message),
            ModuleBuffer::NULL,
            0,
        );
    }
}

/// Headers read into a buffer on the stack; a request with more takes one on the heap.
const INLINE_HEADERS: usize = 32;

/// The request headers, `count` of them, that `fill` has Envoy write into a buffer with room
/// for `count`, copied into one [`RequestHeaders`] before anything can change the header map;
/// `None` if `fill` fails. One allocation, the map's, unless a request has more than
/// [`INLINE_HEADERS`] headers.
fn read_headers(
    count: usize,
    fill: impl FnOnce(*mut abi::EnvoyHttpHeader) -> bool,
) -> Option<RequestHeaders> {
    let empty = abi::EnvoyHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
    let mut inline = [empty; INLINE_HEADERS];
    let mut spilled = Vec::new();
    let raw = match inline.get_mut(..count) {
        Some(raw) => raw,
        None => {
            spilled.resize(count, empty);
            spilled.as_mut_slice()
        }
    };
    if !fill(raw.as_mut_ptr()) {
        return None;
    }
    let headers = raw.iter().filter_map(|h| {
        let key = abi::EnvoyBuffer {
            ptr: h.key_ptr,
            length: h.key_length,
        };
        let value = abi::EnvoyBuffer {
            ptr: h.value_ptr,
            length: h.value_length,
        };
        // SAFETY: Envoy's header map owns these bytes until the hook returns or a header is
        // set; `RequestHeaders` copies them out before either.
        unsafe { Some((key.bytes()?, value.bytes().unwrap_or_default())) }
    });
    // The names are lowercase, as the decision core expects: Envoy's codecs lowercase them,
    // and every way of adding a header to its maps takes a lowercase name. The proxy-wasm
    // filter reads the same map as it comes.
    Some(RequestHeaders::from_headers(headers))
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Envoy as seen from one HTTP stream, during one of its event hooks.
pub struct StreamHost<'a> {
    filter: FilterEnvoyPtr,
    metrics: &'a MetricIds,
}

impl<'a> StreamHost<'a> {
    /// `filter` must be the Envoy pointer Envoy passed to the event hook running now.
    pub fn new(filter: FilterEnvoyPtr, metrics: &'a MetricIds) -> Self {
        StreamHost { filter, metrics }
    }

    fn failed(&self, what: &str) {
        log(LogLevel::Debug, &format!("[canary] {what} failed"));
    }

    /// Counts a panic caught at the boundary (see `crate::barrier`).
    pub fn count_panic(&self) {
        if let Some(id) = self.metrics.panic_counter() {
            self.add(id, 1);
        }
    }

    fn add(&self, id: usize, value: u64) {
        // SAFETY: `filter` is the live stream's pointer; no labels were defined, so none are
        // passed.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.filter,
                id,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        if result != abi::METRICS_SUCCESS {
            self.failed("increment counter");
        }
    }
}

impl Host for StreamHost<'_> {
    /// Every request header, copied into one buffer: no allocation per header.
    fn request_headers(&self) -> RequestHeaders {
        // SAFETY: `filter` is the live stream's pointer.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers_size(
                self.filter,
                abi::REQUEST_HEADER,
            )
        };
        // SAFETY: `filter` is the live stream's pointer, and `read_headers` hands a buffer
        // with room for the `count` headers Envoy just reported.
        read_headers(count, |buf| unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.filter,
                abi::REQUEST_HEADER,
                buf,
            )
        })
        .unwrap_or_else(|| {
            self.failed("get request headers");
            RequestHeaders::default()
        })
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        let value = value.map_or(ModuleBuffer::NULL, ModuleBuffer::from);
        // SAFETY: `filter` is the live stream's pointer; Envoy copies both buffers.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.filter,
                abi::REQUEST_HEADER,
                ModuleBuffer::from(name),
                value,
            )
        };
        if !ok {
            self.failed("set request header");
        }
    }

    fn clear_route_cache(&self) {
        // SAFETY: `filter` is the live stream's pointer.
        unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(self.filter) }
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        let mut value = abi::EnvoyBuffer::NULL;
        // SAFETY: `filter` is the live stream's pointer, `value` is writable, and the count
        // of values is optional (null).
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.filter,
                abi::RESPONSE_HEADER,
                ModuleBuffer::from(name),
                &mut value,
                0,
                std::ptr::null_mut(),
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: Envoy owns the value until the hook returns; it is copied out here.
        unsafe { value.bytes() }.map(<[u8]>::to_vec)
    }

    fn add_response_header(&self, name: &str, value: &[u8]) {
        // SAFETY: `filter` is the live stream's pointer; Envoy copies both buffers.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.filter,
                abi::RESPONSE_HEADER,
                ModuleBuffer::from(name),
                ModuleBuffer::from(value),
            )
        };
        if !ok {
            self.failed("add response header");
        }
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        // Envoy takes metric definitions only while the configuration loads; they were all
        // made then (`MetricIds::define`), so this is a look-up.
        let id = self.metrics.get(kind, name);
        if id.is_none() {
            self.failed("define metric (not defined at configuration time)");
        }
        id.and_then(|id| u32::try_from(id).ok())
    }

    fn increment_counter(&self, id: u32) {
        self.add(id as usize, 1);
    }

    fn record_histogram(&self, id: u32, value: u64) {
        // SAFETY: `filter` is the live stream's pointer; no labels were defined.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                self.filter,
                id as usize,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        if result != abi::METRICS_SUCCESS {
            self.failed("record histogram");
        }
    }

    fn now_millis(&self) -> u64 {
        now_millis()
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        getrandom::fill(buf).is_ok()
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level, message);
    }
}

/// Envoy as seen from one request's route cluster specifier selection: the request headers,
/// and the counters of the specifier's configuration. Nothing can be written to the request
/// or the response there, so the setters do nothing; a configuration Envoy decides with
/// through this host has no use for them (`RoutingTable::response_needs` is empty).
pub struct RouteHost<'a> {
    context: SpecifierContextEnvoyPtr,
    config: SpecifierConfigEnvoyPtr,
    metrics: &'a MetricIds,
}

impl<'a> RouteHost<'a> {
    /// `context` must be the selection Envoy passed to the running
    /// `on_cluster_specifier_select`, and `config` Envoy's object of the configuration it
    /// selects for, which lives as long as the module's configuration does.
    pub fn new(
        context: SpecifierContextEnvoyPtr,
        config: SpecifierConfigEnvoyPtr,
        metrics: &'a MetricIds,
    ) -> Self {
        RouteHost {
            context,
            config,
            metrics,
        }
    }

    /// Counts a panic caught at the boundary (see `crate::barrier`).
    pub fn count_panic(&self) {
        if let Some(id) = self.metrics.panic_counter() {
            self.add(id);
        }
    }

    fn add(&self, id: usize) {
        // SAFETY: `config` is alive while its module configuration is, and Envoy's counters
        // may be incremented from any thread; no labels were defined, so none are passed.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_cluster_specifier_config_increment_counter(
                self.config,
                id,
                std::ptr::null_mut(),
                0,
                1,
            )
        };
        if result != abi::METRICS_SUCCESS {
            log(LogLevel::Debug, "[canary] increment counter failed");
        }
    }
}

impl Host for RouteHost<'_> {
    /// Every request header, copied into one buffer: no allocation per header. (Reading only
    /// the headers a decision needs, one call each, costs Envoy more: it looks a name up by
    /// copying and lowercasing it and scanning the map, several times the cost of handing over
    /// the whole map; see BENCHMARKS.md.)
    fn request_headers(&self) -> RequestHeaders {
        // SAFETY: `context` is the running selection's.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(
                self.context,
            )
        };
        // SAFETY: `context` is the running selection's, and `read_headers` hands a buffer with
        // room for the `count` headers Envoy just reported.
        read_headers(count, |buf| unsafe {
            abi::envoy_dynamic_module_callback_cluster_specifier_get_request_headers(
                self.context,
                buf,
            )
        })
        .unwrap_or_else(|| {
            log(LogLevel::Debug, "[canary] get request headers failed");
            RequestHeaders::default()
        })
    }
    fn set_request_header(&self, _name: &str, _value: Option<&[u8]>) {}
    fn clear_route_cache(&self) {}
    fn response_header(&self, _name: &str) -> Option<Vec<u8>> {
        None
    }
    fn add_response_header(&self, _name: &str, _value: &[u8]) {}

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        // Defined when the configuration was loaded (`MetricIds::define`): a look-up.
        self.metrics
            .get(kind, name)
            .and_then(|id| u32::try_from(id).ok())
    }

    fn increment_counter(&self, id: u32) {
        self.add(id as usize);
    }

    /// The specifier defines no histogram: the only ones are response metrics.
    fn record_histogram(&self, _id: u32, _value: u64) {}

    fn now_millis(&self) -> u64 {
        now_millis()
    }

    fn random(&self, buf: &mut [u8]) -> bool {
        getrandom::fill(buf).is_ok()
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level, message);
    }
}

/// Envoy while a configuration loads: only logging is of use there.
pub struct ConfigHost;

impl Host for ConfigHost {
    fn request_headers(&self) -> RequestHeaders {
        RequestHeaders::default()
    }
    fn set_request_header(&self, _name: &str, _value: Option<&[u8]>) {}
    fn clear_route_cache(&self) {}
    fn response_header(&self, _name: &str) -> Option<Vec<u8>> {
        None
    }
    fn add_response_header(&self, _name: &str, _value: &[u8]) {}
    fn define_metric(&self, _kind: MetricKind, _name: &str) -> Option<u32> {
        None
    }
    fn increment_counter(&self, _id: u32) {}
    fn record_histogram(&self, _id: u32, _value: u64) {}
    fn now_millis(&self) -> u64 {
        0
    }
    fn random(&self, buf: &mut [u8]) -> bool {
        getrandom::fill(buf).is_ok()
    }
    fn log(&self, level: LogLevel, message: &str) {
        log(level, message);
    }
}
