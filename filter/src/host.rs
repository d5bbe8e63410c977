//! The one seam between the filter and its host (Envoy through proxy-wasm, or a test double).

use crate::table::RequestHeaders;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// What the filter needs from its host. Calls that can fail on the host side report it as
/// `None` / `false` and never panic: the filter carries on without the result.
pub trait Host {
    /// Every request header (lowercase names), in order, in one call.
    fn request_headers(&self) -> RequestHeaders;
    /// Sets request header `name` to `value`, replacing every value; `None` removes it.
    fn set_request_header(&self, name: &str, value: Option<&[u8]>);
    /// Asks the host to pick the route again after the headers changed.
    fn clear_route_cache(&self);
    /// The first value of response header `name` (lowercase).
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Adds a response header value, keeping the values already there.
    fn add_response_header(&self, name: &str, value: &[u8]);
    /// The id of the metric called `name`; the same name gives the same metric.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment_counter(&self, id: u32);
    fn record_histogram(&self, id: u32, value: u64);
    /// Wall-clock time in milliseconds.
    fn now_millis(&self) -> u64;
    /// Fills `buf` from the host's random source.
    fn random(&self, buf: &mut [u8]) -> bool;
    fn log(&self, level: LogLevel, message: &str);
}
