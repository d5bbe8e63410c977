//! A test double for [`Host`]: headers, metrics, logs, a clock and a random source kept in
//! memory, with the same semantics as Envoy's (first value by name, metrics by name).

use std::cell::{Cell, RefCell};

use crate::host::{Host, LogLevel, MetricKind};
use crate::table::RequestHeaders;

type Headers = Vec<(String, Vec<u8>)>;

#[derive(Default)]
pub struct MockHost {
    request: RefCell<Headers>,
    response: RefCell<Headers>,
    metrics: RefCell<Vec<(String, MetricKind, Vec<u64>)>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    clock_ms: Cell<u64>,
    random_calls: Cell<u64>,
    route_cache_cleared: Cell<usize>,
}

impl MockHost {
    pub fn request(headers: &[(&str, &str)]) -> Self {
        let bytes: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        Self::request_bytes(&bytes)
    }

    pub fn request_bytes(headers: &[(&str, &[u8])]) -> Self {
        let host = MockHost::default();
        *host.request.borrow_mut() = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
            .collect();
        host
    }

    pub fn set_response_header(&self, name: &str, value: &str) {
        let mut response = self.response.borrow_mut();
        response.retain(|(n, _)| n != name);
        response.push((name.to_owned(), value.as_bytes().to_vec()));
    }

    pub fn advance_millis(&self, ms: u64) {
        self.clock_ms.set(self.clock_ms.get() + ms);
    }

    fn values(headers: &Headers, name: &str) -> Vec<String> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn request_values(&self, name: &str) -> Vec<String> {
        Self::values(&self.request.borrow(), name)
    }

    pub fn response_values(&self, name: &str) -> Vec<String> {
        Self::values(&self.response.borrow(), name)
    }

    pub fn route_cache_cleared(&self) -> usize {
        self.route_cache_cleared.get()
    }

    /// The value of counter `name`, if it was ever defined.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, k, _)| n == name && *k == MetricKind::Counter)
            .map(|(_, _, v)| v.iter().sum())
    }

    /// Every counter defined, with its value.
    pub fn counters(&self) -> Vec<(String, u64)> {
        self.metrics
            .borrow()
            .iter()
            .filter(|(_, k, _)| *k == MetricKind::Counter)
            .map(|(n, _, v)| (n.clone(), v.iter().sum()))
            .collect()
    }

    /// Every value recorded in histogram `name`.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, k, _)| n == name && *k == MetricKind::Histogram)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_default()
    }

    pub fn logs(&self, level: LogLevel) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

impl MockHost {
    /// The first value of request header `name`.
    pub fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.request
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

impl Host for MockHost {
    fn request_headers(&self) -> RequestHeaders {
        RequestHeaders::from_pairs(&self.request.borrow())
    }

    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        let mut request = self.request.borrow_mut();
        request.retain(|(n, _)| n != name);
        if let Some(v) = value {
            request.push((name.to_owned(), v.to_vec()));
        }
    }

    fn clear_route_cache(&self) {
        self.route_cache_cleared
            .set(self.route_cache_cleared.get() + 1);
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.response
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn add_response_header(&self, name: &str, value: &[u8]) {
        self.response
            .borrow_mut()
            .push((name.to_owned(), value.to_vec()));
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut metrics = self.metrics.borrow_mut();
        let index = match metrics.iter().position(|(n, k, _)| n == name && *k == kind) {
            Some(i) => i,
            None => {
                metrics.push((name.to_owned(), kind, Vec::new()));
                metrics.len() - 1
            }
        };
        u32::try_from(index).ok()
    }

    fn increment_counter(&self, id: u32) {
        if let Some((_, _, values)) = self.metrics.borrow_mut().get_mut(id as usize) {
            values.push(1);
        }
    }

    fn record_histogram(&self, id: u32, value: u64) {
        if let Some((_, _, values)) = self.metrics.borrow_mut().get_mut(id as usize) {
            values.push(value);
        }
    }

    fn now_millis(&self) -> u64 {
        self.clock_ms.get()
    }

    /// Distinct bytes on every call, so that identities differ.
    fn random(&self, buf: &mut [u8]) -> bool {
        let n = self.random_calls.get() + 1;
        self.random_calls.set(n);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
        true
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
}
