//! Variant cookies: a variant carried in a cookie value, so that a client keeps it from one
//! request to the next, integrity-protected where the route's identity cookie is signed.
//!
//! Two kinds share the mechanism:
//! - the pin cookie, `<variant>`, or `<variant>.<mac>` where identity cookies are signed;
//! - the identity cookie of a route in session mode, `<identity>~<variant>.<mac>`, always signed.
//!
//! The MAC is the identity cookie's HMAC-SHA256 ([`Signer`], its secret and previous secrets)
//! over a tag followed by the value before the dot: `canary-pin\0<route>\0<variant>` for a pin,
//! `canary-session\0<identity>~<variant>` for a session. A hash-mode identity cookie's MAC is
//! over the identity alone, so the tags keep a value of one kind from verifying as another
//! kind's, and a pin given on one route from verifying on another.

use crate::cookie::{self, Attributes, IdentityCookie, Signer};

/// Separates the identity from the variant in a session cookie's value. Neither an identity
/// the filter issues (hexadecimal digits) nor a variant name can hold it.
pub const SESSION_SEPARATOR: u8 = b'~';

const PIN_TAG: &[u8] = b"canary-pin\0";
const SESSION_TAG: &[u8] = b"canary-session\0";

/// Reads and writes the values of one kind of variant cookie.
#[derive(Debug, Clone)]
struct Carrier {
    /// `None`: values are written bare and read as they are.
    signer: Option<Signer>,
    /// What the MAC covers before the value.
    tag: Vec<u8>,
}

impl Carrier {
    /// What a value carries: the whole value where values are not signed; where they are, the
    /// part before `.<mac>` if the MAC verifies, else `None`.
    fn open<'v>(&self, value: &'v [u8]) -> Option<&'v [u8]> {
        match &self.signer {
            None => Some(value),
            Some(signer) => signer.verify_tagged(&self.tag, value),
        }
    }

    /// The value carrying `payload`'s pieces: the payload, then `.<mac>` where values are
    /// signed.
    fn value(&self, payload: &[&[u8]]) -> Vec<u8> {
        let mut value = payload.concat();
        if let Some(signer) = &self.signer {
            let mac = signer.sign_parts(&[&self.tag, &value]);
            value.push(b'.');
            value.extend_from_slice(&mac);
        }
        value
    }
}

/// The pin cookie of a route: its name, its attributes rendered once, and its values.
#[derive(Debug, Clone)]
pub struct PinCookie {
    pub name: String,
    /// `; Max-Age=…; Path=…` and the flags.
    attributes: String,
    /// The whole `Set-Cookie` value that removes the cookie: an empty value with `Max-Age=0`.
    clear: Vec<u8>,
    carrier: Carrier,
}

impl PinCookie {
    /// The pin cookie `name` of route `route`, its values signed by `signer` if there is one.
    pub fn new(name: String, route: &str, at: &Attributes<'_>, signer: Option<Signer>) -> Self {
        let render =
            |max_age| cookie::attributes(max_age, at.path, at.secure, at.http_only, at.same_site);
        let attributes = render(at.max_age);
        let clear = cookie::with_set_cookie(&name, &[], &render(0), <[u8]>::to_vec);
        let tag = [PIN_TAG, route.as_bytes(), b"\0"].concat();
        PinCookie {
            name,
            attributes,
            clear,
            carrier: Carrier { signer, tag },
        }
    }

    /// The variant name a request's pin cookie value carries, if its MAC verifies where pins
    /// are signed. Whether the route still allows that pin is the caller's question.
    pub fn variant<'v>(&self, value: &'v [u8]) -> Option<&'v [u8]> {
        self.carrier.open(value)
    }

    /// The `Set-Cookie` value that pins `variant`.
    pub fn set_cookie(&self, variant: &str) -> Vec<u8> {
        let value = self.carrier.value(&[variant.as_bytes()]);
        cookie::with_set_cookie(&self.name, &[&value], &self.attributes, <[u8]>::to_vec)
    }

    /// The `Set-Cookie` value that removes the pin.
    pub fn clear_cookie(&self) -> &[u8] {
        &self.clear
    }
}

/// The values of a session-mode identity cookie, `<identity>~<variant>.<mac>`.
#[derive(Debug, Clone)]
pub struct SessionCookie {
    carrier: Carrier,
}

impl SessionCookie {
    pub fn new(signer: Signer) -> Self {
        SessionCookie {
            carrier: Carrier {
                signer: Some(signer),
                tag: SESSION_TAG.to_vec(),
            },
        }
    }

    /// The identity and the variant name a session value carries, if its MAC verifies.
    pub fn open<'v>(&self, value: &'v [u8]) -> Option<(&'v [u8], &'v [u8])> {
        let payload = self.carrier.open(value)?;
        let at = payload.iter().rposition(|b| *b == SESSION_SEPARATOR)?;
        let (identity, rest) = payload.split_at_checked(at)?;
        Some((identity, rest.get(1..)?))
    }

    /// The `Set-Cookie` value of `cookie` that hands out `identity` with `variant`.
    pub fn set_cookie(&self, cookie: &IdentityCookie, identity: &str, variant: &str) -> Vec<u8> {
        let separator = [SESSION_SEPARATOR];
        let value = self
            .carrier
            .value(&[identity.as_bytes(), &separator, variant.as_bytes()]);
        cookie.with_set_cookie_value(&[&value], <[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::SameSite;

    const SECRET: &str = "k7Qw9zR2mX4vB8nL1pT6yH3s";
    const PREVIOUS: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn signer() -> Signer {
        Signer::new(SECRET, [PREVIOUS]).unwrap()
    }

    fn attributes() -> Attributes<'static> {
        Attributes {
            max_age: 60,
            path: "/app",
            secure: true,
            http_only: false,
            same_site: SameSite::Strict,
        }
    }

    fn value(set_cookie: &[u8], name: &str) -> String {
        let text = std::str::from_utf8(set_cookie).unwrap();
        let rest = text.strip_prefix(&format!("{name}=")).unwrap();
        rest.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn renders_pin_cookies_with_the_identity_cookies_attributes() {
        let unsigned = PinCookie::new("pin".into(), "web", &attributes(), None);
        assert_eq!(
            unsigned.set_cookie("canary"),
            b"pin=canary; Max-Age=60; Path=/app; Secure; SameSite=Strict"
        );
        assert_eq!(
            unsigned.clear_cookie(),
            b"pin=; Max-Age=0; Path=/app; Secure; SameSite=Strict"
        );
        assert_eq!(unsigned.variant(b"canary"), Some(&b"canary"[..]));
    }

    #[test]
    fn a_signed_pin_verifies_on_its_route_only() {
        let web = PinCookie::new("pin".into(), "web", &attributes(), Some(signer()));
        let api = PinCookie::new("pin".into(), "api", &attributes(), Some(signer()));
        let pin = value(&web.set_cookie("canary"), "pin");
        assert_eq!(web.variant(pin.as_bytes()), Some(&b"canary"[..]));
        assert_eq!(api.variant(pin.as_bytes()), None, "another route");
        assert_eq!(web.variant(b"canary"), None, "unsigned");
        let previous = Signer::new(PREVIOUS, []).unwrap();
        let before_rotation = PinCookie::new("pin".into(), "web", &attributes(), Some(previous));
        let old = value(&before_rotation.set_cookie("canary"), "pin");
        assert_eq!(
            web.variant(old.as_bytes()),
            Some(&b"canary"[..]),
            "previous key"
        );
    }

    #[test]
    fn session_values_carry_identity_and_variant_and_are_no_other_kind() {
        let session = SessionCookie::new(signer());
        let cookie = IdentityCookie::new("id".into(), 60, "/", false, true, SameSite::Lax)
            .signed_by(signer());
        let identity = "0123456789abcdef0123456789abcdef";
        let set = session.set_cookie(&cookie, identity, "canary");
        assert!(
            std::str::from_utf8(&set)
                .unwrap()
                .ends_with("; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"),
            "the identity cookie's attributes"
        );
        let v = value(&set, "id");
        assert!(v.starts_with(&format!("{identity}~canary.")), "{v}");
        assert_eq!(
            session.open(v.as_bytes()),
            Some((identity.as_bytes(), &b"canary"[..]))
        );
        assert_eq!(
            cookie.identity(v.as_bytes()),
            None,
            "not a hash-mode identity"
        );
        let pins = PinCookie::new("pin".into(), "web", &attributes(), Some(signer()));
        assert_eq!(pins.variant(v.as_bytes()), None, "not a pin");
        let hash_mode = value(&cookie.with_set_cookie(identity, <[u8]>::to_vec), "id");
        assert_eq!(
            session.open(hash_mode.as_bytes()),
            None,
            "a hash-mode cookie"
        );
        let moved = v.replace("~canary.", "~stable.");
        assert_eq!(session.open(moved.as_bytes()), None, "variant changed");
    }

    proptest::proptest! {
        /// Changing any one byte of a signed pin or session value fails the check.
        #[test]
        fn any_single_byte_change_fails(
            at in proptest::prelude::any::<proptest::sample::Index>(),
            to in proptest::prelude::any::<u8>(),
        ) {
            let session = SessionCookie::new(signer());
            let cookie = IdentityCookie::new("id".into(), 60, "/", false, true, SameSite::Lax);
            let pins = PinCookie::new("pin".into(), "web", &attributes(), Some(signer()));
            let values = [
                value(&session.set_cookie(&cookie, "0123456789abcdef0123456789abcdef", "canary"), "id"),
                value(&pins.set_cookie("canary"), "pin"),
            ];
            for (k, v) in values.into_iter().enumerate() {
                let mut bytes = v.into_bytes();
                let i = at.index(bytes.len());
                proptest::prop_assume!(bytes[i] != to);
                bytes[i] = to;
                let verified = if k == 0 {
                    session.open(&bytes).is_some()
                } else {
                    pins.variant(&bytes).is_some()
                };
                proptest::prop_assert!(!verified);
            }
        }
    }
}
