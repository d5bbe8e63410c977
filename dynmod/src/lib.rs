//! canary-router as a native Envoy dynamic module (preview).
//!
//! The same decision core as the proxy-wasm filter (`canary_filter`): the configuration is
//! parsed by [`canary_filter::parse`] and every stream runs [`canary_filter::http::Stream`],
//! through the [`Host`](canary_filter::host::Host) binding in [`host`] instead of proxy-wasm.
//! Envoy loads the module as `libcanary_router.so` for a `DynamicModuleFilter` with
//! `dynamic_module_config.name: canary_router` and `filter_name: canary`; `filter_config` is
//! the plugin configuration JSON (a `google.protobuf.StringValue`).
//!
//! The same library is also a route cluster specifier (`specifier`), for routes that pick
//! their cluster with `DynamicModuleClusterSpecifier` and `specifier_name: canary`.
//!
//! Every event hook Envoy calls is an `extern "C"` function here and runs its body inside
//! [`barrier`]: a panic never unwinds into Envoy. It is logged and counted
//! (`<metrics namespace>.canary.panic`), and the stream continues undecided (fail open), with
//! any decision header the client sent removed. This needs the module built with
//! `panic = "unwind"`, as the workspace's `dynmod` profile does.

mod abi;
mod config;
mod host;
mod specifier;

use std::any::Any;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use canary_filter::host::{Host, LogLevel};
use canary_filter::http::{self, Stream};

use abi::{ConfigEnvoyPtr, EnvoyBuffer, FilterEnvoyPtr, FilterStatus, ModulePtr, CONTINUE};
use config::FilterConfig;
use host::StreamHost;

/// The `filter_name` this module serves.
pub const FILTER_NAME: &str = "canary";

static PANICS: AtomicU64 = AtomicU64::new(0);
static NEXT_STREAM: AtomicU32 = AtomicU32::new(1);

/// Runs an event hook's body; a panic in it is reported (`report` gets the message) and
/// `fallback` returned instead.
fn barrier<R>(hook: &str, fallback: R, report: impl FnOnce(&str), body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let n = PANICS.fetch_add(1, Ordering::Relaxed) + 1;
            let message = format!(
                "[canary] panic #{n} in {hook}: {}; the request continues undecided",
                panic_message(payload.as_ref())
            );
            // Reporting must not unwind either.
            let _ = catch_unwind(AssertUnwindSafe(|| report(&message)));
            fallback
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn log_panic(message: &str) {
    host::log(LogLevel::Critical, message);
}

// ------------------------------- Program -------------------------------------

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    barrier("on_program_init", std::ptr::null(), log_panic, || {
        let missing = missing_callbacks();
        if !missing.is_empty() {
            let message = format!(
                "[canary] this Envoy lacks the dynamic-module callbacks {}: the module is built \
                 for dynamic-module ABI {} (Envoy 1.40); refusing to load",
                missing.join(", "),
                abi::ABI_VERSION.to_string_lossy()
            );
            if missing.contains(&"envoy_dynamic_module_callback_log_v2".to_owned()) {
                eprintln!("{message}");
            } else {
                host::log(LogLevel::Error, &message);
            }
            return std::ptr::null();
        }
        host::log(
            LogLevel::Info,
            &format!(
                "[canary] dynamic module loaded, built for dynamic-module ABI {} (Envoy 1.40)",
                abi::ABI_VERSION.to_string_lossy()
            ),
        );
        if cfg!(panic = "abort") {
            host::log(
                LogLevel::Warn,
                "[canary] built with panic = \"abort\": a panic aborts Envoy instead of failing \
                 open (build with the `dynmod` profile)",
            );
        }
        abi::ABI_VERSION.as_ptr()
    })
}

/// The callbacks of [`abi::CALLBACKS`] this process does not export.
fn missing_callbacks() -> Vec<String> {
    abi::CALLBACKS
        .iter()
        .filter(|name| {
            // SAFETY: `name` is a NUL-terminated string; RTLD_DEFAULT searches the process's
            // global symbols, where Envoy exports its callbacks.
            unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }.is_null()
        })
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

// ---------------------------- Configuration ----------------------------------

/// The configuration bytes of a `config_new` hook whose `name` (the `field` Envoy fills it
/// from) names this module's [`FILTER_NAME`]; otherwise `None`, logged.
///
/// # Safety
/// Both buffers must be null or valid for `'a`, as Envoy's are for the duration of the hook.
unsafe fn configuration<'a>(
    field: &str,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> Option<&'a [u8]> {
    // SAFETY: the caller's.
    let (name, config) = unsafe { (name.bytes(), config.bytes()) };
    let name = String::from_utf8_lossy(name.unwrap_or_default());
    if name != FILTER_NAME {
        host::log(
            LogLevel::Error,
            &format!("[canary] unknown {field} {name:?}: this module serves {FILTER_NAME:?}"),
        );
        return None;
    }
    Some(config.unwrap_or_default())
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ModulePtr {
    barrier(
        "on_http_filter_config_new",
        std::ptr::null(),
        log_panic,
        || {
            // SAFETY: Envoy owns both buffers for the duration of this hook.
            let Some(config) = (unsafe { configuration("filter_name", name, config) }) else {
                return std::ptr::null();
            };
            match FilterConfig::load(envoy, config) {
                Some(config) => Box::into_raw(Box::new(config)).cast_const().cast(),
                // Each error was logged with its JSON path; null makes Envoy reject the config.
                None => std::ptr::null(),
            }
        },
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ModulePtr) {
    barrier("on_http_filter_config_destroy", (), log_panic, || {
        if !config.is_null() {
            // SAFETY: made by `Box::into_raw` in `on_http_filter_config_new`; Envoy destroys a
            // configuration once.
            drop(unsafe { Box::from_raw(config.cast::<Arc<FilterConfig>>().cast_mut()) });
        }
    });
}

// ------------------------------- Streams -------------------------------------

/// One HTTP stream.
struct Filter {
    config: Arc<FilterConfig>,
    /// `None` if this worker could not build the configuration, or after a panic: the
    /// stream passes undecided, with any client-sent decision header removed.
    stream: Option<Stream>,
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ModulePtr,
    _envoy: FilterEnvoyPtr,
) -> ModulePtr {
    if config.is_null() {
        return std::ptr::null();
    }
    if cfg!(feature = "floor") {
        // Nothing per stream: the hooks get the configuration.
        return config;
    }
    // SAFETY: made by `on_http_filter_config_new`; Envoy keeps the configuration alive while
    // it creates filters from it.
    let config = unsafe { &*config.cast::<Arc<FilterConfig>>() };
    let stream = barrier("on_http_filter_new", None, log_panic, || {
        let plugin = config.plugin()?;
        Some(Stream::new(
            plugin,
            NEXT_STREAM.fetch_add(1, Ordering::Relaxed),
        ))
    });
    let filter = Filter {
        config: Arc::clone(config),
        stream,
    };
    Box::into_raw(Box::new(filter)).cast_const().cast()
}

/// When a hook panicked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the request went upstream: a decision header the client sent is removed, so
    /// that the request cannot pick a variant with it.
    Request,
    Response,
}

/// Runs `body` on the stream's filter within [`barrier`]; after a panic the stream is
/// dropped, so that the rest of the request passes undecided.
fn on_stream(
    hook: &str,
    phase: Phase,
    envoy: FilterEnvoyPtr,
    filter: ModulePtr,
    body: impl FnOnce(&mut Option<Stream>, &StreamHost),
) -> FilterStatus {
    if filter.is_null() {
        return CONTINUE;
    }
    // SAFETY: made by `on_http_filter_new` and not yet destroyed; Envoy calls one stream's
    // hooks one at a time, on its worker thread, so this is the only reference.
    let filter = unsafe { &mut *filter.cast::<Filter>().cast_mut() };
    let host = StreamHost::new(envoy, &filter.config.metrics);
    let panicked = barrier(
        hook,
        true,
        |message| {
            log_panic(message);
            host.count_panic();
        },
        || {
            body(&mut filter.stream, &host);
            false
        },
    );
    if panicked {
        filter.stream = None;
        if phase == Phase::Request {
            barrier(hook, (), log_panic, || {
                host.set_request_header(&filter.config.decision_header, None);
                host.clear_route_cache();
            });
        }
    }
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    filter: ModulePtr,
    _end_of_stream: bool,
) -> FilterStatus {
    #[cfg(feature = "floor")]
    return floor::request_headers(envoy, filter);
    #[cfg_attr(feature = "floor", allow(unreachable_code))]
    on_stream(
        "on_http_filter_request_headers",
        Phase::Request,
        envoy,
        filter,
        |stream, host| {
            #[cfg(feature = "panic-probe")]
            panic_probe::panic_if_asked(host);
            match stream {
                Some(stream) => stream.on_request_headers(host),
                None => http::strip_unconfigured(host),
            }
        },
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    filter: ModulePtr,
    _end_of_stream: bool,
) -> FilterStatus {
    if cfg!(feature = "floor") {
        return CONTINUE;
    }
    on_stream(
        "on_http_filter_response_headers",
        Phase::Response,
        envoy,
        filter,
        |stream, host| {
            if let Some(stream) = stream {
                stream.on_response_headers(host);
            }
        },
    )
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: ModulePtr) {
    barrier("on_http_filter_destroy", (), log_panic, || {
        if !filter.is_null() && !cfg!(feature = "floor") {
            // SAFETY: made by `Box::into_raw` in `on_http_filter_new`; Envoy destroys a filter
            // once, after its last hook.
            drop(unsafe { Box::from_raw(filter.cast::<Filter>().cast_mut()) });
        }
    });
}

// The hooks below are required by Envoy's loader; the filter has nothing to do in them.

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
    _end_of_stream: bool,
) -> FilterStatus {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
) -> FilterStatus {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
    _end_of_stream: bool,
) -> FilterStatus {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
) -> FilterStatus {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *mut abi::EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
    _stream_id: u64,
    _headers: *mut abi::EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
    _stream_id: u64,
    _trailers: *mut abi::EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: ModulePtr,
) {
}

/// Benchmark only (features `floor`, `floor-read`, `floor-set`): what any dynamic-module
/// filter costs, and what the two things a decision asks of Envoy cost, without deciding.
#[cfg(feature = "floor")]
mod floor {
    use super::*;

    pub fn request_headers(envoy: FilterEnvoyPtr, config: ModulePtr) -> FilterStatus {
        if config.is_null() || !cfg!(feature = "floor-read") {
            return CONTINUE;
        }
        // SAFETY: `on_http_filter_new` hands each stream its configuration under `floor`,
        // and Envoy keeps the configuration alive while its filters run.
        let config = unsafe { &*config.cast::<Arc<FilterConfig>>() };
        let host = StreamHost::new(envoy, &config.metrics);
        std::hint::black_box(host.request_headers());
        if cfg!(feature = "floor-set") {
            host.set_request_header(&config.decision_header, Some(b"stable"));
            host.clear_route_cache();
        }
        CONTINUE
    }
}

/// Test only (feature `panic-probe`): a real panic inside a hook, on request.
#[cfg(feature = "panic-probe")]
mod panic_probe {
    use canary_filter::host::Host;

    /// The request header that makes the request headers hook panic.
    pub const HEADER: &str = "x-canary-panic-probe";

    #[allow(clippy::panic)]
    pub fn panic_if_asked(host: &impl Host) {
        if host.request_headers().header(HEADER).is_some() {
            panic!("{HEADER} asked for a panic");
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_reported_and_the_fallback_returned() {
        let mut reported = Vec::new();
        let status = barrier(
            "on_http_filter_request_headers",
            CONTINUE,
            |m| reported.push(m.to_owned()),
            || -> FilterStatus { panic!("index out of range") },
        );
        assert_eq!(status, CONTINUE);
        assert_eq!(reported.len(), 1);
        assert!(
            reported[0].contains("in on_http_filter_request_headers: index out of range"),
            "{reported:?}"
        );
        assert!(reported[0].ends_with("the request continues undecided"));
    }

    #[test]
    fn without_a_panic_the_body_value_is_returned() {
        let value = barrier("hook", 0, |_| unreachable!(), || 7);
        assert_eq!(value, 7);
    }

    #[test]
    fn a_panic_while_reporting_does_not_escape() {
        let value = barrier("hook", 1, |_| panic!("reporting"), || panic!("body"));
        assert_eq!(value, 1);
    }
}

/// Stand-ins for the Envoy callbacks, so that the unit tests link outside Envoy.
#[cfg(test)]
mod envoy_stubs {
    #![allow(clippy::missing_safety_doc)]
    use crate::abi::*;

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_log_v2(
        _: LogLevel,
        _: ModuleBuffer,
        _: ModuleBuffer,
        _: u32,
    ) {
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        _: ConfigEnvoyPtr,
        _: ModuleBuffer,
        _: *mut ModuleBuffer,
        _: usize,
        _: *mut usize,
    ) -> MetricsResult {
        1
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        _: ConfigEnvoyPtr,
        _: ModuleBuffer,
        _: *mut ModuleBuffer,
        _: usize,
        _: *mut usize,
    ) -> MetricsResult {
        1
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_increment_counter(
        _: FilterEnvoyPtr,
        _: usize,
        _: *mut ModuleBuffer,
        _: usize,
        _: u64,
    ) -> MetricsResult {
        1
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        _: FilterEnvoyPtr,
        _: usize,
        _: *mut ModuleBuffer,
        _: usize,
        _: u64,
    ) -> MetricsResult {
        1
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_headers_size(
        _: FilterEnvoyPtr,
        _: HeaderType,
    ) -> usize {
        0
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_headers(
        _: FilterEnvoyPtr,
        _: HeaderType,
        _: *mut EnvoyHttpHeader,
    ) -> bool {
        false
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_header(
        _: FilterEnvoyPtr,
        _: HeaderType,
        _: ModuleBuffer,
        _: *mut EnvoyBuffer,
        _: usize,
        _: *mut usize,
    ) -> bool {
        false
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_set_header(
        _: FilterEnvoyPtr,
        _: HeaderType,
        _: ModuleBuffer,
        _: ModuleBuffer,
    ) -> bool {
        false
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_add_header(
        _: FilterEnvoyPtr,
        _: HeaderType,
        _: ModuleBuffer,
        _: ModuleBuffer,
    ) -> bool {
        false
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_clear_route_cache(_: FilterEnvoyPtr) {}
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_cluster_specifier_config_define_counter(
        _: SpecifierConfigEnvoyPtr,
        _: ModuleBuffer,
        _: *mut ModuleBuffer,
        _: usize,
        _: *mut usize,
    ) -> MetricsResult {
        1
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_cluster_specifier_config_increment_counter(
        _: SpecifierConfigEnvoyPtr,
        _: usize,
        _: *mut ModuleBuffer,
        _: usize,
        _: u64,
    ) -> MetricsResult {
        1
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(
        _: SpecifierContextEnvoyPtr,
    ) -> usize {
        0
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_cluster_specifier_get_request_headers(
        _: SpecifierContextEnvoyPtr,
        _: *mut EnvoyHttpHeader,
    ) -> bool {
        false
    }
    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
        _: SpecifierContextEnvoyPtr,
        _: ModuleBuffer,
    ) {
    }
}
