//! A proxy-wasm HTTP filter that does nothing: every stream gets a context whose callbacks all
//! return `Continue` and make no host call.
//!
//! `make bench` loads it into Envoy next to the canary filter. Envoy still enters the VM for
//! every stream event (context create, request headers, response headers, log, done, delete),
//! so its cost over Envoy alone is the floor any proxy-wasm filter pays, measured in the same
//! run as the canary filter. It is built from the same proxy-wasm version and release profile.

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

    impl HttpContext for Stream {}
}
