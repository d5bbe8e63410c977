//! The request as the decision reads it.

use super::route::{RouteSources, Slot};

/// A request's headers as the filter holds them once it has read them from the host in one
/// call: lowercase names, in the order received, a name possibly repeated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders(pub Vec<(String, Vec<u8>)>);

pub(super) const COOKIE: &str = "cookie";

impl RequestHeaders {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        // A plain loop comparing lengths first: most names differ in length, and the byte
        // comparison is a call.
        for (n, value) in &self.0 {
            if n.len() == name.len() && n == name {
                return Some(value);
            }
        }
        None
    }

    /// The value of header `name` (lowercase) when the request carries exactly one.
    pub fn only(&self, name: &str) -> Option<&[u8]> {
        let mut values = self
            .0
            .iter()
            .filter(|(n, _)| n.len() == name.len() && n == name);
        match (values.next(), values.next()) {
            (Some((_, value)), None) => Some(value),
            _ => None,
        }
    }

    /// The first `:path` value (empty when absent).
    pub(super) fn path(&self) -> &[u8] {
        self.header(":path").unwrap_or_default()
    }

    /// The first `:authority` and `:path` values (empty when absent), found in one pass.
    pub(super) fn authority_and_path(&self) -> (&[u8], &[u8]) {
        let (mut authority, mut path) = (None, None);
        for (name, value) in &self.0 {
            let is = |pseudo: &str| name.len() == pseudo.len() && name == pseudo;
            let found = if is(":authority") {
                &mut authority
            } else if is(":path") {
                &mut path
            } else {
                continue;
            };
            found.get_or_insert(value.as_slice());
            if authority.is_some() && path.is_some() {
                break;
            }
        }
        (authority.unwrap_or_default(), path.unwrap_or_default())
    }

    /// Writes the value of each of a route's sources into `values` (all `None` on entry) at its
    /// slot: one pass over the headers, parsing each
    /// `cookie` header once for all the route's cookies.
    pub(super) fn resolve<'r>(&'r self, sources: &RouteSources, values: &mut [Option<&'r [u8]>]) {
        // The first value of a header, and the first occurrence of a cookie, wins.
        let mut found = |slot: Option<Slot>, read: &'r [u8]| {
            if let Some(value) = slot.and_then(|Slot(i)| values.get_mut(i)) {
                value.get_or_insert(read);
            }
        };
        for (name, value) in &self.0 {
            if name.len() == COOKIE.len() && name == COOKIE && sources.reads_cookies() {
                for (cookie, value) in crate::cookie::pairs(value) {
                    found(sources.cookie(cookie), value);
                }
            }
            found(sources.header(name), value);
        }
    }
}
