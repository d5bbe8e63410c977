//! The proxy-wasm binding: Envoy's contexts, and [`Host`] over the `hostcalls` that return
//! `Result` (never the `Context` helpers, which panic on a host error).

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType, Status};

use crate::host::{Host, LogLevel, MetricKind};
use crate::http::{self, Plugin, Stream};

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

struct Root {
    context_id: u32,
    plugin: Option<Rc<Plugin>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
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
    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_else(|s| {
            self.failed("get request headers", s);
            Vec::new()
        })
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        if let Err(s) = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value) {
            self.failed("set request header", s);
        }
    }

    fn clear_route_cache(&self) {
        match hostcalls::call_foreign_function("clear_route_cache", None) {
            Ok(_) | Err(Status::NotFound) => {}
            Err(s) => self.failed("clear_route_cache", s),
        }
    }

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

    fn increment_counter(&self, id: u32) {
        if let Err(s) = hostcalls::increment_metric(id, 1) {
            self.failed("increment metric", s);
        }
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
