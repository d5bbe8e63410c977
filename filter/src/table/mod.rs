//! The compiled configuration: validated, indexed, ready for per-request use.
//!
//! Everything that can be checked or precomputed is done here, once, at configuration time:
//! names validated, header names lowercased, regexes compiled, weights turned into integers,
//! hosts indexed, `Set-Cookie` attributes rendered, cookie signing keys set up.
//!
//! In the order a configuration and then a request meet them: [`compile`] builds the table
//! from a [`PluginConfig`](crate::config::PluginConfig), checking single values with
//! [`validate`]; [`route`] holds the compiled routes, and [`ramp`] a route's weights over time; [`request`] is the request as the
//! decision reads it, and [`decide`] the decision, a method of the table, which keeps a
//! decision made upstream on a route with a [`lane`].

mod compile;
mod decide;
mod lane;
mod ramp;
mod request;
mod route;
mod validate;

pub use decide::{Decision, NewIdentity, Reason, IDENTITY_BYTES};
pub use lane::Lanes;
pub use ramp::{parse_time, Ramp, Weights};
pub use request::{Headers, RequestHeaders};
pub use route::{
    PinUpdate, Pins, Predicate, Route, RouteSources, Slot, Source, Stickiness, TargetingRule,
    ValueSet, Variant, VariantId,
};
pub use validate::{check_seal, check_secret, decimal, parse_weight};

use crate::router::RouteIndex;

pub const MAX_ROUTES: usize = 1024;
pub const MAX_VARIANTS: usize = 16;
/// Compiled size limit for one `matches` regex.
pub const MAX_REGEX_SIZE: usize = 256 * 1024;
/// Fewest characters of a seal: 22 of the base64url alphabet carry 132 bits.
pub const MIN_SEAL_LEN: usize = 22;
/// Fewest characters of a seal written in hexadecimal digits only: 32 carry 128 bits.
pub const MIN_HEX_SEAL_LEN: usize = 32;
/// Most characters of a seal: it travels in a header on every decided request.
pub const MAX_SEAL_LEN: usize = 128;
/// Most previous secrets of a signed identity cookie: a cookie that verifies with none of them
/// costs one HMAC per key.
pub const MAX_PREVIOUS_SECRETS: usize = 4;
/// Identity cookie lifetime when `maxAge` is not set: 30 days.
pub const DEFAULT_COOKIE_MAX_AGE: u64 = 30 * 24 * 3600;
/// Pin cookie lifetime when `stickiness.pin.maxAge` is not set: one day, a tester's session.
pub const DEFAULT_PIN_MAX_AGE: u64 = 24 * 3600;
/// The pin cookie's name when `stickiness.pin.cookie` is not set is this and the route name.
pub const DEFAULT_PIN_COOKIE_PREFIX: &str = "canary_pin_";

#[derive(Debug)]
pub struct RoutingTable {
    /// Lowercase header name the decision is written to.
    pub decision_header: String,
    pub debug_header: bool,
    /// `metrics.responses`: count responses and record `upstream_time` per variant.
    pub response_metrics: bool,
    pub routes: Vec<Route>,
    pub(crate) index: RouteIndex,
}

impl RoutingTable {
    /// The index of the first route, in configuration order, matching `authority` and `path`.
    pub(crate) fn route_for(&self, authority: &[u8], path: &[u8]) -> Option<usize> {
        let prefixes = |i: usize| self.routes.get(i).map(|r| r.path_prefixes.as_slice());
        self.index.find(prefixes, authority, path)
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }
}
