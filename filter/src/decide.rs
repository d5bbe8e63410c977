//! The per-request decision, free of any host types.
//!
//! Order: no route → pass through; the first targeting rule that holds → `rule`; an identity
//! from a key or the identity cookie → `hash`; otherwise a new random identity → `new`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use crate::table::{Route, RoutingTable, Source};

/// Read access to the request being decided. Header names are lowercase.
pub trait RequestView {
    /// The first value of request header `name`.
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>>;
    /// The value of cookie `name` from any `cookie` header.
    fn cookie(&self, name: &str) -> Option<Cow<'_, [u8]>>;

    #[inline(always)]
    fn read(&self, source: &Source) -> Option<Cow<'_, [u8]>> {
        match source {
            Source::Header(name) => self.header(name),
            Source::Cookie(name) => self.cookie(name),
        }
    }
}

/// A request's headers as the filter holds them once it has read them from the host in one
/// call: lowercase names, in the order received, a name possibly repeated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders(pub Vec<(String, Vec<u8>)>);

const COOKIE: &str = "cookie";

impl RequestView for RequestHeaders {
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        // A plain loop comparing lengths first: most names differ in length, and the byte
        // comparison is a call.
        for (n, value) in &self.0 {
            if n.len() == name.len() && n == name {
                return Some(Cow::Borrowed(value));
            }
        }
        None
    }

    fn cookie(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        let cookies = self
            .0
            .iter()
            .filter(|(n, _)| n.len() == COOKIE.len() && n == COOKIE)
            .map(|(_, v)| v.as_slice());
        crate::cookie::find(cookies, name.as_bytes()).map(Cow::Borrowed)
    }
}

/// Number of random bytes in a new identity: 128 bits.
pub const IDENTITY_BYTES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The targeting rule at this index matched.
    Rule(usize),
    /// The variant was hashed from the request's identity.
    Hash,
    /// The request had no identity; a new one was made.
    New,
}

impl Reason {
    /// The reason as it appears in metric names.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Rule(_) => "rule",
            Reason::Hash => "hash",
            Reason::New => "new",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub route: usize,
    pub variant: usize,
    pub reason: Reason,
    /// A new identity to hand to the client with `Set-Cookie`.
    pub issue_identity: Option<NewIdentity>,
}

/// A new identity: [`IDENTITY_BYTES`] random bytes as lowercase hex, held inline so that
/// making one allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NewIdentity([u8; IDENTITY_BYTES * 2]);

impl NewIdentity {
    pub fn from_random(bytes: &[u8; IDENTITY_BYTES]) -> Self {
        let digit = |n: u8| if n < 10 { b'0' + n } else { b'a' + (n - 10) };
        let mut hex = [0; IDENTITY_BYTES * 2];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(bytes) {
            if let [high, low] = pair {
                (*high, *low) = (digit(byte >> 4), digit(byte & 0xf));
            }
        }
        NewIdentity(hex)
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
    /// `random` fills a buffer from the host's random source and says whether it could; it is
    /// called only when the request carries no identity. Without randomness the baseline is used.
    pub fn decide(
        &self,
        request: &impl RequestView,
        random: impl FnOnce(&mut [u8; IDENTITY_BYTES]) -> bool,
    ) -> Option<Decision> {
        let authority = request.header(":authority").unwrap_or_default();
        let path = request.header(":path").unwrap_or_default();
        let index = self.index.find(&self.routes, &authority, &path)?;
        let route = self.routes.get(index)?;
        Some(decide_route(index, route, request, random))
    }
}

fn decide_route(
    index: usize,
    route: &Route,
    request: &impl RequestView,
    random: impl FnOnce(&mut [u8; IDENTITY_BYTES]) -> bool,
) -> Decision {
    let decision = |variant, reason, issue_identity| Decision {
        route: index,
        variant,
        reason,
        issue_identity,
    };
    for (i, rule) in route.targeting.iter().enumerate() {
        if rule.predicate.holds(request.read(&rule.source).as_deref()) {
            return decision(rule.variant, Reason::Rule(i), None);
        }
    }
    if let Some(identity) = identity(route, request) {
        return decision(route.assign(&identity), Reason::Hash, None);
    }
    let mut bytes = [0u8; IDENTITY_BYTES];
    if !random(&mut bytes) {
        return decision(0, Reason::New, None);
    }
    let identity = NewIdentity::from_random(&bytes);
    let variant = route.assign(identity.as_bytes());
    let issue = route.stickiness.cookie.as_ref().map(|_| identity);
    decision(variant, Reason::New, issue)
}

/// The request's identity: the first key present and non-empty, then the identity cookie.
fn identity<'r>(route: &Route, request: &'r impl RequestView) -> Option<Cow<'r, [u8]>> {
    let stickiness = &route.stickiness;
    let keys = stickiness
        .keys
        .iter()
        .filter_map(|source| request.read(source));
    let cookie = stickiness
        .cookie
        .iter()
        .filter_map(|c| request.cookie(&c.name));
    keys.chain(cookie).find(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[derive(Default)]
    struct Req {
        headers: Vec<(&'static str, Vec<u8>)>,
        cookies: Vec<&'static str>,
    }

    impl Req {
        fn new(authority: &str, path: &str) -> Self {
            let mut r = Req::default();
            r.headers
                .push((":authority", authority.as_bytes().to_vec()));
            r.headers.push((":path", path.as_bytes().to_vec()));
            r
        }
        fn header(mut self, name: &'static str, value: &str) -> Self {
            self.headers.push((name, value.as_bytes().to_vec()));
            self
        }
        fn cookie(mut self, header: &'static str) -> Self {
            self.cookies.push(header);
            self
        }
    }

    impl RequestView for Req {
        fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
            self.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| Cow::Borrowed(v.as_slice()))
        }
        fn cookie(&self, name: &str) -> Option<Cow<'_, [u8]>> {
            crate::cookie::find(self.cookies.iter().map(|c| c.as_bytes()), name.as_bytes())
                .map(Cow::Borrowed)
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
        let t = config::parse(CONFIG.as_bytes()).unwrap();
        t.decide(req, |b| {
            b.fill(7);
            true
        })
        .map(|d| (t.routes[d.route].variants[d.variant].name.clone(), d.reason))
    }

    /// A user id that hashes to the baseline, so that rules into canary are visible.
    fn stable_user() -> &'static str {
        let t = config::parse(CONFIG.as_bytes()).unwrap();
        let id = (0..100)
            .map(|i| format!("user-{i}"))
            .find(|id| {
                let req = Req::new("reviews", "/")
                    .header("x-user-id", Box::leak(id.clone().into_boxed_str()));
                t.decide(&req, never).map(|d| d.variant) == Some(0)
            })
            .expect("some user on stable at 90 %");
        Box::leak(id.into_boxed_str())
    }

    #[test]
    fn targeting_rules_in_order() {
        let user = stable_user();
        let base = || Req::new("reviews", "/").header("x-user-id", user);
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
        let t = config::parse(CONFIG.as_bytes()).unwrap();
        let canary_user = (0..1000)
            .map(|i| format!("user-{i}"))
            .find(|id| {
                let req = Req::new("reviews", "/")
                    .header("x-user-id", Box::leak(id.clone().into_boxed_str()));
                t.decide(&req, never).map(|d| d.variant) == Some(1)
            })
            .expect("some user on canary at 10 %");
        let id: &'static str = Box::leak(canary_user.into_boxed_str());
        let req = Req::new("reviews", "/")
            .header("x-user-id", id)
            .cookie("canary=never");
        assert_eq!(decide(&req), Some(("stable".into(), Reason::Rule(0))));
    }

    #[test]
    fn identity_sources_in_order() {
        let t = config::parse(CONFIG.as_bytes()).unwrap();
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
            let d = t.decide(&req, never).unwrap();
            assert_eq!(
                (d.variant, d.reason, d.issue_identity),
                (hashed(identity), Reason::Hash, None),
                "{label}"
            );
        }
    }

    #[test]
    fn new_identity_is_issued_and_hashed() {
        let t = config::parse(CONFIG.as_bytes()).unwrap();
        let d = t
            .decide(&Req::new("reviews", "/"), |b| {
                b.copy_from_slice(&[0xab; IDENTITY_BYTES]);
                true
            })
            .unwrap();
        let id = "ab".repeat(IDENTITY_BYTES);
        assert_eq!(d.reason, Reason::New);
        assert_eq!(d.issue_identity.as_deref(), Some(id.as_str()));
        // Replaying the issued cookie gives the same variant.
        let replay =
            Req::new("reviews", "/").cookie(Box::leak(format!("canary_id={id}").into_boxed_str()));
        let again = t.decide(&replay, never).unwrap();
        assert_eq!((again.variant, again.reason), (d.variant, Reason::Hash));
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

    #[test]
    fn without_randomness_the_baseline_serves_and_no_cookie_is_issued() {
        let t = config::parse(CONFIG.as_bytes()).unwrap();
        let d = t.decide(&Req::new("reviews", "/"), |_| false).unwrap();
        assert_eq!(
            (d.variant, d.reason, d.issue_identity),
            (0, Reason::New, None)
        );
    }

    #[test]
    fn without_identity_cookie_nothing_is_issued() {
        let t = config::parse(
            br#"{"routes":[{"name":"r","variants":[{"name":"a","weight":50},{"name":"b","weight":50}]}]}"#,
        )
        .unwrap();
        let d = t
            .decide(&Req::new("any", "/"), |b| {
                b.fill(1);
                true
            })
            .unwrap();
        assert_eq!((d.reason, d.issue_identity), (Reason::New, None));
    }

    #[test]
    fn unmatched_requests_pass_through() {
        assert_eq!(
            decide(&Req::new("ratings", "/").header("x-canary", "always")),
            None
        );
    }
}
