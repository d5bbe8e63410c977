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

use crate::error::ConfigError;
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

    /// Whether the first route matches any host and any path, and so every request.
    pub(crate) fn first_route_takes_all(&self) -> bool {
        self.routes
            .first()
            .is_some_and(|route| route.path_prefixes.is_empty())
            && self.index.takes_any_host(0)
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// What the configuration does on the response, one error at its path each: for a host
    /// that decides a request and never sees its response (the dynamic module's route cluster
    /// specifier), which must refuse such a configuration rather than drop part of it. Empty
    /// when everything the configuration asks for happens on the request.
    pub fn response_needs(&self) -> Vec<ConfigError> {
        const REASON: &str = "acts on the response, which a route cluster specifier never sees";
        let mut needs = Vec::new();
        if self.debug_header {
            needs.push(ConfigError::new("debugHeader", REASON));
        }
        if self.response_metrics {
            needs.push(ConfigError::new("metrics.responses", REASON));
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.stickiness.cookie.is_some() {
                needs.push(ConfigError::new(
                    format!("routes[{i}].stickiness.cookie"),
                    "is issued on the response, which a route cluster specifier never sees; \
                     identify users with stickiness.keys",
                ));
            }
            let mut rule_pins = false;
            for (j, rule) in route.targeting.iter().enumerate() {
                let field = match rule.pin {
                    Some(PinUpdate::Set) => "pin",
                    Some(PinUpdate::Clear) => "unpin",
                    None => continue,
                };
                rule_pins = true;
                needs.push(ConfigError::new(
                    format!("routes[{i}].targeting[{j}].{field}"),
                    REASON,
                ));
            }
            if route.stickiness.pins.is_some() && !rule_pins {
                needs.push(ConfigError::new(
                    format!("routes[{i}].stickiness.pin"),
                    REASON,
                ));
            }
        }
        needs
    }
}

#[cfg(test)]
mod tests {
    fn needs(json: &str) -> Vec<String> {
        let table = crate::parse(json.as_bytes()).expect("valid configuration");
        table
            .response_needs()
            .iter()
            .map(|e| e.path.clone())
            .collect()
    }

    #[test]
    fn what_acts_on_the_response_is_named_at_its_path() {
        let all = r#"{"debugHeader": true, "metrics": {"responses": true}, "routes": [
            {"name": "a", "variants": [{"name": "s", "weight": 100}],
             "stickiness": {"keys": [], "cookie": {"name": "id"}}},
            {"name": "b", "variants": [{"name": "s", "weight": 50}, {"name": "c", "weight": 50}],
             "targeting": [
               {"name": "x", "header": "x", "equals": "1", "variant": "c"},
               {"name": "p", "header": "p", "equals": "1", "variant": "c", "pin": true},
               {"name": "u", "header": "u", "equals": "1", "variant": "s", "unpin": true}]},
            {"name": "c", "variants": [{"name": "s", "weight": 100}],
             "stickiness": {"pin": {}}}
        ]}"#;
        assert_eq!(
            needs(all),
            [
                "debugHeader",
                "metrics.responses",
                "routes[0].stickiness.cookie",
                "routes[1].targeting[1].pin",
                "routes[1].targeting[2].unpin",
                "routes[2].stickiness.pin",
            ]
        );
    }

    #[test]
    fn only_a_first_route_for_any_host_and_path_takes_every_request() {
        let takes_all = |routes: &str| {
            let json = format!(r#"{{"routes": {routes}}}"#);
            crate::parse(json.as_bytes())
                .expect("valid configuration")
                .first_route_takes_all()
        };
        let route = |name: &str, matches: &str| {
            format!(
                r#"{{"name": "{name}", "match": {matches}, "variants": [{{"name": "s", "weight": 100}}]}}"#
            )
        };
        let any = route("a", "{}");
        let star = route("a", r#"{"hosts": ["*"]}"#);
        let host = route("a", r#"{"hosts": ["shop"]}"#);
        let path = route("a", r#"{"pathPrefixes": ["/api/"]}"#);
        let second = route("b", "{}");
        assert!(takes_all(&format!("[{any}, {second}]")));
        assert!(takes_all(&format!("[{star}]")));
        assert!(!takes_all(&format!("[{host}, {second}]")));
        assert!(!takes_all(&format!("[{path}, {second}]")));
    }

    #[test]
    fn a_configuration_acting_on_the_request_only_needs_nothing() {
        let request_only = r#"{"debugHeader": false, "routes": [
            {"name": "a", "variants": [{"name": "s", "weight": 90}, {"name": "c", "weight": 10}],
             "targeting": [{"name": "x", "cookie": "x", "present": true, "variant": "c"}],
             "stickiness": {"keys": [{"header": "x-user-id"}, {"cookie": "sid"}]}}
        ]}"#;
        assert!(needs(request_only).is_empty());
    }
}
