//! [`Host`] over the dynamic-module ABI: the stream's headers through the filter's Envoy
//! pointer, metrics defined when the configuration was loaded, logs in Envoy's
//! `dynamic_modules` logger.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use canary_filter::host::{Host, LogLevel, MetricKind};
use canary_filter::RequestHeaders;

use crate::abi::{self, FilterEnvoyPtr, ModuleBuffer};
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
        let mut raw = vec![
            abi::EnvoyHttpHeader {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            count
        ];
        // SAFETY: `raw` has room for the `count` headers Envoy just reported, and nothing
        // changes the header map between the two calls.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.filter,
                abi::REQUEST_HEADER,
                raw.as_mut_ptr(),
            )
        };
        if !ok {
            self.failed("get request headers");
            return RequestHeaders::default();
        }
        let pairs: Vec<(Cow<'_, [u8]>, &[u8])> = raw
            .iter()
            .filter_map(|h| {
                let key = abi::EnvoyBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                };
                let value = abi::EnvoyBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                };
                // SAFETY: Envoy's header map owns these bytes until the hook returns or a
                // header is set; `RequestHeaders::from_pairs` copies them out before either.
                let (key, value) = unsafe { (key.bytes()?, value.bytes().unwrap_or_default()) };
                // Envoy's names are lowercase already; a copy only for one that is not.
                let key = if key.iter().any(u8::is_ascii_uppercase) {
                    Cow::Owned(key.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(key)
                };
                Some((key, value))
            })
            .collect();
        RequestHeaders::from_pairs(&pairs)
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
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
