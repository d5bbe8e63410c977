//! A proxy-wasm HTTP filter that does nothing: every stream gets a context whose callbacks all
//! return `Continue` and make no host call.
//!
//! `make bench` loads it into Envoy next to the canary filter. Envoy still enters the VM for
//! every stream event (context create, request headers, response headers, log, done, delete),
//! so its cost over Envoy alone is the floor any proxy-wasm filter pays, measured in the same
//! run as the canary filter. It is built from the same proxy-wasm version and release profile.
//!
//! Built with a feature, it makes on request headers the host calls a request decided by the
//! canary filter cannot do without, and nothing else, so that the benchmark tells their cost
//! from the filter's own work:
//! - `read-headers`: reads the request header map in one call, as the canary filter does (the
//!   map as the host serialises it, not parsed), and drops it;
//! - `set-header`: the same, then sets [`DECISION_HEADER`] to [`DECISION_VALUE`], as the
//!   canary filter writes its decision.

/// The request header the `set-header` build sets: the canary filter's default decision
/// header.
pub const DECISION_HEADER: &str = "x-canary-variant";
/// The value it sets, a variant of the benchmark's configuration.
pub const DECISION_VALUE: &str = "stable";

#[cfg(target_arch = "wasm32")]
mod wasm {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::ContextType;

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}

    struct Root;

    impl Context for Root {}

    impl RootContext for Root {
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Stream))
        }
    }

    struct Stream;

    impl Context for Stream {}

    impl HttpContext for Stream {
        #[cfg(feature = "read-headers")]
        fn on_http_request_headers(
            &mut self,
            _headers: usize,
            _end_of_stream: bool,
        ) -> proxy_wasm::types::Action {
            drop(host_calls::read_request_headers());
            #[cfg(feature = "set-header")]
            host_calls::set_request_header(super::DECISION_HEADER, super::DECISION_VALUE);
            proxy_wasm::types::Action::Continue
        }
    }

    /// The canary filter's two request-path host calls, made the way it makes them; a failed
    /// call is ignored, as there is nothing to do about it here.
    #[cfg(feature = "read-headers")]
    mod host_calls {
        use proxy_wasm::types::MapType;

        #[link(wasm_import_module = "env")]
        extern "C" {
            fn proxy_get_header_map_pairs(
                map_type: MapType,
                return_map_data: *mut *mut u8,
                return_map_size: *mut usize,
            ) -> u32;
        }

        /// The request header map as the host serialised it.
        pub fn read_request_headers() -> Vec<u8> {
            let mut data: *mut u8 = std::ptr::null_mut();
            let mut size: usize = 0;
            // SAFETY: both out-pointers point at live locals of the right types.
            let status = unsafe {
                proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size)
            };
            if status != 0 || data.is_null() {
                return Vec::new();
            }
            // SAFETY: the host allocated `size` bytes at `data` with the SDK's
            // `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes) and hands them
            // over; a `Vec` of that length and capacity frees them the same way.
            unsafe { Vec::from_raw_parts(data, size, size) }
        }

        #[cfg(feature = "set-header")]
        pub fn set_request_header(name: &str, value: &str) {
            let _ = proxy_wasm::hostcalls::set_map_value_bytes(
                MapType::HttpRequestHeaders,
                name,
                Some(value.as_bytes()),
            );
        }
    }
}
