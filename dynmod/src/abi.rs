//! Declarations of the part of Envoy's dynamic-module ABI (`abi.h`) this module uses.
//!
//! Written by hand from the C header of the ABI version in [`ABI_VERSION`], the one Envoy 1.40
//! expects: its types, the HTTP filter and route cluster specifier callbacks the
//! [`Host`](canary_filter::host::Host) bindings need, and the logging and metrics callbacks.
//! The event hooks Envoy calls are the `extern "C"` functions in `lib.rs` and `specifier.rs`.
//!
//! C enums cross the boundary as `u32` constants rather than Rust enums, so that a value this
//! module does not know is never undefined behaviour.

use std::ffi::{c_void, CStr};

/// The ABI version this module is built for, returned by `envoy_dynamic_module_on_program_init`.
/// Envoy compares it with its own and logs whether it matched.
pub const ABI_VERSION: &CStr = c"v0.2.0";

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`.
pub type ConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr`.
pub type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr`,
/// `envoy_dynamic_module_type_http_filter_module_ptr` and
/// `envoy_dynamic_module_type_cluster_specifier_config_module_ptr`: this module's objects,
/// opaque to Envoy.
pub type ModulePtr = *const c_void;

/// `envoy_dynamic_module_type_cluster_specifier_config_envoy_ptr`: Envoy's object for one route
/// cluster specifier configuration, alive until the module's configuration is destroyed.
pub type SpecifierConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_cluster_specifier_context_envoy_ptr`: one request's selection,
/// valid during one `envoy_dynamic_module_on_cluster_specifier_select` call.
pub type SpecifierContextEnvoyPtr = *mut c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes, or `None` for a null buffer.
    ///
    /// # Safety
    /// `ptr` must be null or point to `length` readable bytes that stay valid for `'a`.
    pub unsafe fn bytes<'a>(self) -> Option<&'a [u8]> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: non-null, and the caller guarantees `length` readable bytes.
        Some(unsafe { std::slice::from_raw_parts(self.ptr, self.length) })
    }
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by this module, read by Envoy during
/// the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// A null buffer: "no value" (for `set_header`, remove the header).
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

impl From<&[u8]> for ModuleBuffer {
    fn from(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

impl From<&str> for ModuleBuffer {
    fn from(s: &str) -> Self {
        ModuleBuffer::from(s.as_bytes())
    }
}

/// `envoy_dynamic_module_type_envoy_http_header`: one header, owned by Envoy's header map.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_http_header_type`.
pub type HeaderType = u32;
pub const REQUEST_HEADER: HeaderType = 0;
pub const RESPONSE_HEADER: HeaderType = 2;

/// `envoy_dynamic_module_type_log_level`, from trace (0) to critical (5).
pub type LogLevel = u32;

/// `envoy_dynamic_module_type_metrics_result`.
pub type MetricsResult = u32;
pub const METRICS_SUCCESS: MetricsResult = 0;

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_*_status`: every hook of this
/// filter continues the stream, and `Continue` is 0 in each of them.
pub type FilterStatus = u32;
pub const CONTINUE: FilterStatus = 0;

/// The callbacks below, by symbol name: `envoy_dynamic_module_on_program_init` checks that
/// Envoy exports each one before the module is used, since a missing one would otherwise be
/// found only at the first call, as a fatal symbol lookup error.
pub const CALLBACKS: [&CStr; 16] = [
    c"envoy_dynamic_module_callback_log_v2",
    c"envoy_dynamic_module_callback_http_filter_config_define_counter",
    c"envoy_dynamic_module_callback_http_filter_config_define_histogram",
    c"envoy_dynamic_module_callback_http_filter_increment_counter",
    c"envoy_dynamic_module_callback_http_filter_record_histogram_value",
    c"envoy_dynamic_module_callback_http_get_headers_size",
    c"envoy_dynamic_module_callback_http_get_headers",
    c"envoy_dynamic_module_callback_http_get_header",
    c"envoy_dynamic_module_callback_http_set_header",
    c"envoy_dynamic_module_callback_http_add_header",
    c"envoy_dynamic_module_callback_http_clear_route_cache",
    c"envoy_dynamic_module_callback_cluster_specifier_config_define_counter",
    c"envoy_dynamic_module_callback_cluster_specifier_config_increment_counter",
    c"envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size",
    c"envoy_dynamic_module_callback_cluster_specifier_get_request_headers",
    c"envoy_dynamic_module_callback_cluster_specifier_set_cluster_name",
];

unsafe extern "C" {
    pub fn envoy_dynamic_module_callback_log_v2(
        level: LogLevel,
        message: ModuleBuffer,
        source_file: ModuleBuffer,
        source_line: u32,
    );

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> MetricsResult;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        histogram_id: *mut usize,
    ) -> MetricsResult;

    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
    ) -> usize;

    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterEnvoyPtr);

    pub fn envoy_dynamic_module_callback_cluster_specifier_config_define_counter(
        config: SpecifierConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> MetricsResult;

    pub fn envoy_dynamic_module_callback_cluster_specifier_config_increment_counter(
        config: SpecifierConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    pub fn envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(
        context: SpecifierContextEnvoyPtr,
    ) -> usize;

    pub fn envoy_dynamic_module_callback_cluster_specifier_get_request_headers(
        context: SpecifierContextEnvoyPtr,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
        context: SpecifierContextEnvoyPtr,
        cluster_name: ModuleBuffer,
    );
}
