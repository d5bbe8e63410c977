//! The per-request decision, free of any host types.
//!
//! Order: no route → pass through; the first targeting rule that holds → `rule`; an identity
//! from a key or the identity cookie → `hash`; otherwise a new random identity → `new`.

use std::fmt;
use std::ops::Deref;

use super::request::RequestView;
use super::route::{Route, Slot};
use super::RoutingTable;

/// A route's source values for one request are held on the stack up to this many sources.
const INLINE_SOURCES: usize = 16;

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
        let mut digits = [0; IDENTITY_BYTES * 2];
        // The buffer is exactly twice the bytes, so the encoding cannot fail.
        let _ = hex::encode_to_slice(bytes, &mut digits);
        NewIdentity(digits)
    }

    /// The identity's characters.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
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
        let index = match request.headers() {
            Some(headers) => {
                let (authority, path) = headers.authority_and_path();
                self.route_for(authority, path)
            }
            None => {
                let authority = request.header(":authority").unwrap_or_default();
                let path = request.header(":path").unwrap_or_default();
                self.route_for(&authority, &path)
            }
        }?;
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
    let sources = &route.sources;
    let Some(headers) = request.headers() else {
        // A view without its headers in memory (a test double): each source read on its own.
        let read: Vec<_> = sources.iter().map(|source| request.read(source)).collect();
        let values: Vec<_> = read.iter().map(Option::as_deref).collect();
        return decide_with(index, route, &values, random);
    };
    let mut inline = [None; INLINE_SOURCES];
    let mut spilled = Vec::new();
    let values = match inline.get_mut(..sources.len()) {
        Some(values) => values,
        None => {
            spilled.resize(sources.len(), None);
            spilled.as_mut_slice()
        }
    };
    headers.resolve(sources, values);
    decide_with(index, route, values, random)
}

/// The decision on `route` given the values of its sources.
fn decide_with(
    index: usize,
    route: &Route,
    values: &[Option<&[u8]>],
    random: impl FnOnce(&mut [u8; IDENTITY_BYTES]) -> bool,
) -> Decision {
    let decision = |variant, reason, issue_identity| Decision {
        route: index,
        variant,
        reason,
        issue_identity,
    };
    let value = |Slot(i): Slot| values.get(i).copied().flatten();

    for (i, rule) in route.targeting.iter().enumerate() {
        if rule.predicate.holds(value(rule.slot)) {
            return decision(rule.variant, Reason::Rule(i), None);
        }
    }
    // The first key present and non-empty, then the identity cookie.
    let identity = route.stickiness.identity.iter().copied().map(value);
    if let Some(identity) = identity.flatten().find(|value| !value.is_empty()) {
        return decision(route.assign(identity), Reason::Hash, None);
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::super::request::{RequestHeaders, COOKIE};
    use super::*;

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

    /// The request as the filter holds it: its headers in memory, read in one pass.
    fn held(req: &Req) -> RequestHeaders {
        let headers = req
            .headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()));
        let cookies = req
            .cookies
            .iter()
            .map(|c| (COOKIE.to_owned(), c.as_bytes().to_vec()));
        RequestHeaders(headers.chain(cookies).collect())
    }

    fn decide(req: &Req) -> Option<(String, Reason)> {
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
        let random = |b: &mut [u8; IDENTITY_BYTES]| {
            b.fill(7);
            true
        };
        let one_by_one = t.decide(req, random);
        assert_eq!(t.decide(&held(req), random), one_by_one, "held headers");
        one_by_one.map(|d| (t.routes[d.route].variants[d.variant].name.clone(), d.reason))
    }

    /// A user id that hashes to the baseline, so that rules into canary are visible.
    fn stable_user() -> &'static str {
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
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
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
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
        let t = crate::parse(CONFIG.as_bytes()).unwrap();
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
        let d = t.decide(&Req::new("reviews", "/"), |_| false).unwrap();
        assert_eq!(
            (d.variant, d.reason, d.issue_identity),
            (0, Reason::New, None)
        );
    }

    #[test]
    fn without_identity_cookie_nothing_is_issued() {
        let t = crate::parse(
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
    fn routes_reading_more_sources_than_held_inline_decide_the_same() {
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
                Req::new("any", "/").cookie(Box::leak(format!("x-{last}=on").into_boxed_str())),
                Reason::Rule(last),
            ),
        ];
        for (req, reason) in cases {
            let d = t.decide(&held(&req), never).unwrap();
            assert_eq!(d.reason, reason);
            assert_eq!(Some(d), t.decide(&req, never));
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
