//! The per-request decision, free of any host types.
//!
//! Order: no route → pass through; the first targeting rule that holds → `rule`; on a route
//! that trusts incoming decisions, a sealed decision made upstream → `lane`; a valid pin
//! cookie → `pin`; an identity from a key or the identity cookie → `hash`, or in session mode
//! the variant the identity cookie carries → `session`; otherwise a new random identity → `new`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use super::request::RequestHeaders;
use super::route::{PinUpdate, Route, Slot, Variant};
use super::RoutingTable;
use crate::assign::Weight;
use crate::carried::SessionCookie;
use crate::cookie::IdentityCookie;

/// A route's source values for one request are held on the stack up to this many sources.
const INLINE_SOURCES: usize = 16;

/// Number of random bytes in a new identity: 128 bits.
pub const IDENTITY_BYTES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The targeting rule at this index matched.
    Rule(usize),
    /// The request carried a decision an upstream hop made, sealed, and the route trusts
    /// incoming decisions (see [`super::lane`]).
    Lane,
    /// The variant was hashed from the request's identity.
    Hash,
    /// The request had no identity; a new one was made.
    New,
    /// The request's pin cookie pinned the variant.
    Pin,
    /// In session mode, the identity cookie carried the variant, still served.
    Session,
}

impl Reason {
    /// The reason as it appears in metric names.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Rule(_) => "rule",
            Reason::Lane => "lane",
            Reason::Hash => "hash",
            Reason::New => "new",
            Reason::Pin => "pin",
            Reason::Session => "session",
        }
    }
}

/// What was decided for a request: the route it matched and the variant chosen on it, both
/// borrowed from the table, and why.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'t> {
    pub route: &'t Route,
    pub variant: &'t Variant,
    pub reason: Reason,
    /// An identity to hand to the client with `Set-Cookie`: a new one, or in session mode
    /// the request's own, to carry the variant decided.
    pub issue_identity: Option<NewIdentity>,
    /// What the response does to the pin cookie.
    pub pin: Option<PinUpdate>,
}

/// A new identity: [`IDENTITY_BYTES`] random bytes as lowercase hex, held inline so that
/// making one allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NewIdentity([u8; IDENTITY_BYTES * 2]);

impl NewIdentity {
    pub fn from_random(bytes: &[u8; IDENTITY_BYTES]) -> Self {
        let mut digits = [0; IDENTITY_BYTES * 2];
        // The buffer is exactly twice the bytes, so the encoding cannot fail.
        let _ = hex::encode_to_slice(bytes, &mut digits);
        NewIdentity(digits)
    }

    /// The identity's characters.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// An identity the filter issued, read back: exactly [`IDENTITY_BYTES`] bytes in lowercase
    /// hex.
    pub fn parse(identity: &[u8]) -> Option<Self> {
        let digits: [u8; IDENTITY_BYTES * 2] = identity.try_into().ok()?;
        digits
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(NewIdentity(digits))
    }

    pub fn as_str(&self) -> &str {
        // Hex digits only, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Deref for NewIdentity {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for NewIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl RoutingTable {
    /// Decides the variant for a request, or `None` when no route matches.
    ///
    /// `now_millis` reads the host's clock (Unix milliseconds); it is called only when a route
    /// with a ramp assigns by weight, so other requests read no clock. `random` fills a buffer
    /// from the host's random source and says whether it could; it is called only when the
    /// request carries no identity. Without randomness the baseline is used.
    pub fn decide(
        &self,
        request: &RequestHeaders,
        now_millis: impl FnOnce() -> u64,
        random: impl FnOnce(&mut [u8; IDENTITY_BYTES]) -> bool,
    ) -> Option<Decision<'_>> {
        // A first route for every host and path takes every request: no need to read them.
        let first = if self.first_route_takes_all() {
            0
        } else {
            let (authority, path) = request.authority_and_path();
            self.route_for(authority, path)?
        };
        let route = self.routes.get(first)?;
        route.decide(request, now_millis, random)
    }
}

impl Route {
    /// Decides the variant for a request on this route, whatever its host and path (see
    /// [`RoutingTable::decide`]); never `None` for a compiled route. The query string is
    /// decoded only when one of the route's rules reads it.
    pub fn decide(
        &self,
        request: &RequestHeaders,
        now_millis: impl FnOnce() -> u64,
        random: impl FnOnce(&mut [u8; IDENTITY_BYTES]) -> bool,
    ) -> Option<Decision<'_>> {
        let sources = &self.sources;
        // The decoded values of the query parameters the route reads, held here so that the
        // values below can borrow them.
        let mut query: Vec<(Slot, Cow<'_, str>)> = Vec::new();
        if sources.reads_query() {
            for (name, value) in crate::query::pairs(request.path()) {
                if let Some(slot) = sources.query(&name) {
                    if query.iter().all(|(s, _)| *s != slot) {
                        query.push((slot, value));
                    }
                }
            }
        }
        let mut inline = [None; INLINE_SOURCES];
        let mut spilled = Vec::new();
        let values = match inline.get_mut(..sources.len()) {
            Some(values) => values,
            None => {
                spilled.resize(sources.len(), None);
                spilled.as_mut_slice()
            }
        };
        request.resolve(sources, values);
        for (Slot(i), value) in &query {
            if let Some(slot) = values.get_mut(*i) {
                *slot = Some(value.as_bytes());
            }
        }
        let lane = self
            .lanes
            .as_ref()
            .and_then(|lanes| lanes.incoming(request));
        decide_with(self, values, lane, now_millis, random)
    }
}

/// The decision on `route` given the values of its sources and the incoming decision, if the
/// route trusts one. Compilation guarantees a route at least one variant and every rule a
/// variant of its route, so this is never `None`.
fn decide_with<'t>(
    route: &'t Route,
    values: &[Option<&[u8]>],
    lane: Option<&[u8]>,
    now_millis: impl FnOnce() -> u64,
    random: impl FnOnce(&mut [u8; IDENTITY_BYTES]) -> bool,
) -> Option<Decision<'t>> {
    let decision = |variant: usize, reason, issue_identity, pin| {
        Some(Decision {
            route,
            variant: route.variants.get(variant)?,
            reason,
            issue_identity,
            pin,
        })
    };
    let value = |Slot(i): Slot| values.get(i).copied().flatten();

    for (i, rule) in route.targeting.iter().enumerate() {
        if rule.predicate.holds(value(rule.slot)) {
            return decision(rule.variant, Reason::Rule(i), None, rule.pin);
        }
    }
    let mut clock = Clock::new(now_millis);
    let lanes = route.lanes.as_ref();
    if let Some(k) = lane.and_then(|lane| lanes?.kept(route, lane, || clock.now())) {
        return decision(k, Reason::Lane, None, None);
    }
    // A pin cookie that is not honoured is cleared.
    let mut pin = None;
    if let Some(pins) = &route.stickiness.pins {
        if let Some(cookie) = value(pins.slot) {
            match pins.variant(&route.variants, cookie) {
                Some(k) => return decision(k, Reason::Pin, None, None),
                None => pin = Some(PinUpdate::Clear),
            }
        }
    }
    let (variant, reason, issue) = by_identity(route, value, clock, random);
    decision(variant, reason, issue, pin)
}

/// The variant of a request no rule or pin decided, by its identity: the variant, the reason,
/// and the identity to hand out with `Set-Cookie`, if any.
fn by_identity<'v, F: FnOnce() -> u64>(
    route: &Route,
    value: impl Fn(Slot) -> Option<&'v [u8]>,
    mut clock: Clock<F>,
    random: impl FnOnce(&mut [u8; IDENTITY_BYTES]) -> bool,
) -> (usize, Reason, Option<NewIdentity>) {
    // The first key present and non-empty, then the identity cookie, if its signature verifies
    // where cookies are signed.
    let stickiness = &route.stickiness;
    let non_empty = |value: &&[u8]| !value.is_empty();
    let key = stickiness
        .key_slots
        .iter()
        .filter_map(|slot| value(*slot))
        .find(non_empty);
    if let Some(identity) = key {
        return (clock.assign(route, identity), Reason::Hash, None);
    }
    let cookie = stickiness
        .cookie
        .as_ref()
        .zip(stickiness.cookie_slot.and_then(&value));
    if let Some((cookie, cookie_value)) = cookie {
        match &stickiness.session {
            None => {
                if let Some(identity) = cookie.identity(cookie_value).filter(non_empty) {
                    return (clock.assign(route, identity), Reason::Hash, None);
                }
            }
            Some(session) => {
                if let Some(kept) = by_session(route, session, cookie, cookie_value, &mut clock) {
                    return kept;
                }
            }
        }
    }
    let mut bytes = [0u8; IDENTITY_BYTES];
    if !random(&mut bytes) {
        return (0, Reason::New, None);
    }
    let identity = NewIdentity::from_random(&bytes);
    let variant = clock.assign(route, identity.as_bytes());
    let issue = stickiness.cookie.as_ref().map(|_| identity);
    (variant, Reason::New, issue)
}

/// In session mode, the decision of an identity cookie that verifies: the variant it carries
/// (reason `session`) while that variant is on the route with a weight above 0; otherwise, and
/// for an identity cookie signed as in hash mode, the identity's hash at the weights in force,
/// handed out again with that variant (reason `hash`). `None` for a cookie that does not verify
/// or does not hold an identity the filter issued.
fn by_session<F: FnOnce() -> u64>(
    route: &Route,
    session: &SessionCookie,
    cookie: &IdentityCookie,
    value: &[u8],
    clock: &mut Clock<F>,
) -> Option<(usize, Reason, Option<NewIdentity>)> {
    let (identity, carried) = match session.open(value) {
        Some((identity, variant)) => (NewIdentity::parse(identity)?, Some(variant)),
        None => (NewIdentity::parse(cookie.identity(value)?)?, None),
    };
    let served = carried
        .and_then(|name| {
            route
                .variants
                .iter()
                .position(|v| v.name.as_bytes() == name)
        })
        .filter(|k| clock.weight(route, *k) > Weight(0));
    if let Some(k) = served {
        return Some((k, Reason::Session, None));
    }
    let variant = clock.assign(route, identity.as_bytes());
    Some((variant, Reason::Hash, Some(identity)))
}

/// The host's clock, read once and only if asked.
struct Clock<F> {
    read: Option<F>,
    now: Option<u64>,
}

impl<F: FnOnce() -> u64> Clock<F> {
    fn new(read: F) -> Self {
        Clock {
            read: Some(read),
            now: None,
        }
    }

    fn now(&mut self) -> u64 {
        if let Some(now) = self.now {
            return now;
        }
        let now = self.read.take().map_or(0, |read| read());
        self.now = Some(now);
        now
    }

    /// The variant `identity` hashes to on `route`; the clock is read only on a route with a
    /// ramp.
    fn assign(&mut self, route: &Route, identity: &[u8]) -> usize {
        match route.ramp {
            Some(_) => route.assign_at(identity, self.now()),
            None => route.assign(identity),
        }
    }

    /// The weight in force of variant `k` of `route`; the clock is read only on a route with a
    /// ramp.
    fn weight(&mut self, route: &Route, k: usize) -> Weight {
        let weight = match &route.ramp {
            Some(ramp) => ramp.weights_at(&route.variants, self.now()).get(k).copied(),
            None => route.variants.get(k).map(|v| v.weight),
        };
        weight.unwrap_or(Weight(0))
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::{RequestHeaders, COOKIE};
    use super::*;

    /// A request built header by header, in the order the filter would receive them.
    struct Req(Vec<(String, String)>, RequestHeaders);

    impl Req {
        fn new(authority: &str, path: &str) -> Self {
            Req(Vec::new(), RequestHeaders::default())
                .header(":authority", authority)
                .header(":path", path)
        }
        fn header(mut self, name: &str, value: &str) -> Self {
            self.0.push((name.to_owned(), value.to_owned()));
            self.1 = RequestHeaders::from_pairs(&self.0);
            self
        }
        fn cookie(self, header: &str) -> Self {
            self.header(COOKIE, header)
        }
    }

    impl std::ops::Deref for Req {
        type Target = RequestHeaders;

        fn deref(&self) -> &RequestHeaders {
            &self.1
        }
    }

    const CONFIG: &str = r#"{
      "routes": [{
        "name": "reviews",
        "match": { "hosts": ["reviews"] },
        "variants": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
        "targeting": [
          { "name": "optout", "cookie": "canary", "equals": "never", "variant": "stable" },
          { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
          { "name": "rings", "header": "x-user-group", "in": ["beta", "staff"], "variant": "canary" },
          { "name": "pre", "header": "x-build", "prefix": "rc-", "variant": "canary" },
          { "name": "re", "header": "x-tenant", "matches": "t-\\d+", "variant": "canary" },
          { "name": "debug", "header": "x-debug-canary", "present": true, "variant": "canary" }
        ],
        "stickiness": {
          "keys": [ { "header": "x-user-id" }, { "cookie": "session_id" } ],
          "cookie": { "name": "canary_id" },
          "salt": "reviews-2026-11"
        }
      }]
    }"#;

    fn never(_: &mut [u8; IDENTITY_BYTES]) -> bool {
        panic!("randomness asked for although the request has an identity")
    }

    fn decide(req: &Req) -> Option<(String, Reason)> {
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
        let random = |b: &mut [u8; IDENTITY_BYTES]| {
            b.fill(7);
            true
        };
        t.decide(req, || 0, random)
            .map(|d| (d.variant.name.clone(), d.reason))
    }

    /// A user id that hashes to the baseline, so that rules into canary are visible.
    fn stable_user() -> String {
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
        (0..100)
            .map(|i| format!("user-{i}"))
            .find(|id| {
                let req = Req::new("reviews", "/").header("x-user-id", id);
                t.decide(&req, || 0, never).map(|d| d.variant.name.as_str()) == Some("stable")
            })
            .expect("some user on stable at 90 %")
    }

    #[test]
    fn targeting_rules_in_order() {
        let user = stable_user();
        let base = || Req::new("reviews", "/").header("x-user-id", &user);
        let cases: Vec<(&str, Req, &str, Reason)> = vec![
            (
                "header equals",
                base().header("x-canary", "always"),
                "canary",
                Reason::Rule(1),
            ),
            (
                "header equals, other value",
                base().header("x-canary", "Always"),
                "stable",
                Reason::Hash,
            ),
            (
                "in",
                base().header("x-user-group", "staff"),
                "canary",
                Reason::Rule(2),
            ),
            (
                "in, not listed",
                base().header("x-user-group", "dev"),
                "stable",
                Reason::Hash,
            ),
            (
                "prefix",
                base().header("x-build", "rc-12"),
                "canary",
                Reason::Rule(3),
            ),
            (
                "regex is anchored",
                base().header("x-tenant", "xt-12"),
                "stable",
                Reason::Hash,
            ),
            (
                "regex",
                base().header("x-tenant", "t-12"),
                "canary",
                Reason::Rule(4),
            ),
            (
                "present",
                base().header("x-debug-canary", ""),
                "canary",
                Reason::Rule(5),
            ),
            (
                "cookie opt-out wins over header opt-in",
                base()
                    .header("x-canary", "always")
                    .cookie("a=1; canary=never"),
                "stable",
                Reason::Rule(0),
            ),
        ];
        assert_eq!(decide(&base()), Some(("stable".into(), Reason::Hash)));
        for (label, req, variant, reason) in cases {
            assert_eq!(decide(&req), Some((variant.to_owned(), reason)), "{label}");
        }
    }

    #[test]
    fn opt_out_cookie_moves_a_canary_user_to_stable() {
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
        let canary_user = (0..1000)
            .map(|i| format!("user-{i}"))
            .find(|id| {
                let req = Req::new("reviews", "/").header("x-user-id", id);
                t.decide(&req, || 0, never).map(|d| d.variant.name.as_str()) == Some("canary")
            })
            .expect("some user on canary at 10 %");
        let req = Req::new("reviews", "/")
            .header("x-user-id", &canary_user)
            .cookie("canary=never");
        assert_eq!(decide(&req), Some(("stable".into(), Reason::Rule(0))));
    }

    #[test]
    fn identity_sources_in_order() {
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
        let hashed = |id: &str| {
            crate::assign::assign(
                b"reviews-2026-11",
                id.as_bytes(),
                t.routes[0]
                    .variants
                    .iter()
                    .map(|v| (v.name.as_bytes(), v.weight)),
            )
        };
        let cases: Vec<(&str, Req, &str)> = vec![
            (
                "header key",
                Req::new("reviews", "/")
                    .header("x-user-id", "h")
                    .cookie("session_id=s; canary_id=c"),
                "h",
            ),
            (
                "cookie key",
                Req::new("reviews", "/").cookie("session_id=s; canary_id=c"),
                "s",
            ),
            (
                "identity cookie",
                Req::new("reviews", "/").cookie("canary_id=c"),
                "c",
            ),
            (
                "empty header skipped",
                Req::new("reviews", "/")
                    .header("x-user-id", "")
                    .cookie("canary_id=c"),
                "c",
            ),
        ];
        for (label, req, identity) in cases {
            let d = t.decide(&req, || 0, never).unwrap();
            assert_eq!(
                (d.variant, d.reason, d.issue_identity),
                (&t.routes[0].variants[hashed(identity)], Reason::Hash, None),
                "{label}"
            );
        }
    }

    #[test]
    fn new_identity_is_issued_and_hashed() {
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
        let d = t
            .decide(
                &Req::new("reviews", "/"),
                || 0,
                |b| {
                    b.copy_from_slice(&[0xab; IDENTITY_BYTES]);
                    true
                },
            )
            .unwrap();
        let id = "ab".repeat(IDENTITY_BYTES);
        assert_eq!(d.reason, Reason::New);
        assert_eq!(d.issue_identity.as_deref(), Some(id.as_str()));
        // Replaying the issued cookie gives the same variant.
        let replay = Req::new("reviews", "/").cookie(&format!("canary_id={id}"));
        let again = t.decide(&replay, || 0, never).unwrap();
        assert_eq!((again.variant, again.reason), (d.variant, Reason::Hash));
        assert!(std::ptr::eq(again.route, d.route));
    }

    #[test]
    fn new_identity_is_lowercase_hex_of_the_random_bytes() {
        let bytes: [u8; IDENTITY_BYTES] = std::array::from_fn(|i| (i as u8) * 17);
        let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(NewIdentity::from_random(&bytes).as_str(), want);
        assert_eq!(
            NewIdentity::from_random(&[0xff; IDENTITY_BYTES]).as_str(),
            "f".repeat(2 * IDENTITY_BYTES)
        );
    }

    proptest::proptest! {
        #[test]
        fn new_identity_is_hex_of_any_random_bytes(bytes in proptest::array::uniform16(0u8..)) {
            let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let identity = NewIdentity::from_random(&bytes);
            proptest::prop_assert_eq!(identity.as_str(), want.as_str());
        }
    }

    #[test]
    fn without_randomness_the_baseline_serves_and_no_cookie_is_issued() {
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
        let d = t
            .decide(&Req::new("reviews", "/"), || 0, |_| false)
            .unwrap();
        assert_eq!(
            (d.variant, d.reason, d.issue_identity),
            (&t.routes[0].variants[0], Reason::New, None)
        );
    }

    #[test]
    fn without_identity_cookie_nothing_is_issued() {
        let t = crate::parse(
            br#"{"routes":[{"name":"r","variants":[{"name":"a","weight":50},{"name":"b","weight":50}]}]}"#,
        )
        .unwrap();
        let d = t
            .decide(
                &Req::new("any", "/"),
                || 0,
                |b| {
                    b.fill(1);
                    true
                },
            )
            .unwrap();
        assert_eq!((d.reason, d.issue_identity), (Reason::New, None));
    }

    #[test]
    fn routes_reading_more_sources_than_held_inline_decide_by_them_all() {
        let rules: Vec<String> = (0..INLINE_SOURCES + 4)
            .map(|i| {
                let source = if i % 2 == 0 { "header" } else { "cookie" };
                format!(r#"{{"name":"r{i}","{source}":"x-{i}","equals":"on","variant":"b"}}"#)
            })
            .collect();
        let config = format!(
            r#"{{"routes":[{{"name":"r","variants":[{{"name":"a","weight":50}},{{"name":"b","weight":50}}],
                "targeting":[{}],"stickiness":{{"keys":[{{"header":"x-user-id"}}]}}}}]}}"#,
            rules.join(",")
        );
        let t = crate::parse(config.as_bytes()).unwrap();
        let last = INLINE_SOURCES + 3;
        let cases = [
            (Req::new("any", "/").header("x-user-id", "u"), Reason::Hash),
            (
                Req::new("any", "/").cookie("x-17=on; x-19=on"),
                Reason::Rule(17),
            ),
            (
                Req::new("any", "/").cookie(&format!("x-{last}=on")),
                Reason::Rule(last),
            ),
        ];
        for (req, reason) in cases {
            let d = t.decide(&req, || 0, never).unwrap();
            assert_eq!(d.reason, reason);
        }
    }

    #[test]
    fn unmatched_requests_pass_through() {
        assert_eq!(
            decide(&Req::new("ratings", "/").header("x-canary", "always")),
            None
        );
    }
}
