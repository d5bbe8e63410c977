//! Request cookies and the identity `Set-Cookie`.
//!
//! Parsing is lenient the way browsers and Envoy are: a request may carry several `cookie`
//! headers, pairs are separated by `;`, whitespace around names and values is ignored, a value
//! may be double-quoted, and pieces without `=` are skipped. The first pair with the name wins.
//!
//! A signed identity cookie carries `<identity>.<mac>`: the MAC is HMAC-SHA256 keyed with the
//! configured secret over the identity's bytes, written as 64 lowercase hexadecimal digits.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a signature as it appears in the cookie: 32 bytes in lowercase hex.
pub const SIGNATURE_LEN: usize = 64;

/// The identity cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// The value of cookie `name` in any of the `cookie` header values, first occurrence wins.
pub fn find<'a, I>(headers: I, name: &[u8]) -> Option<&'a [u8]>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    headers
        .into_iter()
        .flat_map(pairs)
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The `(name, value)` pairs of one `cookie` header value, in order.
pub fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|b| *b == b';').filter_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (key, value) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        Some((trim(key), unquote(trim(value))))
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

/// Whether `name` can be a cookie name (an RFC 6265 token).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_byte)
}

/// RFC 7230 `tchar`: the bytes allowed in header names and cookie names.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The keys of a signed identity cookie: one that signs, and every one accepted on a request
/// (the signing key first, then the previous ones).
#[derive(Clone)]
pub struct Signer {
    /// Keyed once at configuration time; a signature or a check starts from a clone.
    keys: Vec<HmacSha256>,
}

impl Signer {
    /// A signer with `secret`, accepting also what `previous` signed. `None` only if a key is
    /// refused, which HMAC never does.
    pub fn new<'s>(secret: &'s str, previous: impl IntoIterator<Item = &'s str>) -> Option<Self> {
        let keys = std::iter::once(secret)
            .chain(previous)
            .map(|key| HmacSha256::new_from_slice(key.as_bytes()).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Signer { keys })
    }

    /// The signature of `identity` with the signing key, in lowercase hex.
    pub fn sign(&self, identity: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.sign_parts(&[identity])
    }

    /// The signature of `parts` one after the other, in lowercase hex. A tag as the first
    /// part gives a MAC that no value signed under another tag shares: the variant cookies
    /// sign their values this way.
    pub fn sign_parts(&self, parts: &[&[u8]]) -> [u8; SIGNATURE_LEN] {
        let mut digits = [0; SIGNATURE_LEN];
        if let Some(key) = self.keys.first() {
            let mut key = key.clone();
            for part in parts {
                key.update(part);
            }
            let mac = key.finalize().into_bytes();
            // The buffer is exactly twice the MAC, so the encoding cannot fail.
            let _ = hex::encode_to_slice(mac, &mut digits);
        }
        digits
    }

    /// The identity in a cookie value `<identity>.<mac>` whose MAC verifies with one of the
    /// accepted keys, compared in constant time; `None` for any other value.
    pub fn verify<'v>(&self, value: &'v [u8]) -> Option<&'v [u8]> {
        self.verify_tagged(b"", value)
    }

    /// The payload of a value `<payload>.<mac>` whose MAC over `tag` and the payload verifies
    /// with one of the accepted keys, compared in constant time; `None` for any other value.
    pub fn verify_tagged<'v>(&self, tag: &[u8], value: &'v [u8]) -> Option<&'v [u8]> {
        let dot = value.len().checked_sub(SIGNATURE_LEN + 1)?;
        let (identity, signed) = value.split_at_checked(dot)?;
        let digits = signed.strip_prefix(b".")?;
        // Lowercase only, so that each signature has one spelling.
        if !digits
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let mut mac = [0; SIGNATURE_LEN / 2];
        hex::decode_to_slice(digits, &mut mac).ok()?;
        self.keys
            .iter()
            .any(|key| {
                key.clone()
                    .chain_update(tag)
                    .chain_update(identity)
                    .verify_slice(&mac)
                    .is_ok()
            })
            .then_some(identity)
    }
}

/// Shows how many keys are accepted, never a key.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("accepted_keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// The identity cookie's name and attributes, rendered once at configuration time.
#[derive(Debug, Clone)]
pub struct IdentityCookie {
    pub name: String,
    /// `; Max-Age=…; Path=…` and the flags, appended after `name=value`.
    attributes: String,
    /// Signs issued identities and checks those received; `None`: cookies are not signed.
    signer: Option<Signer>,
}

/// `Set-Cookie` values up to this length are rendered on the stack.
const SET_COOKIE_BUF: usize = 256;

impl IdentityCookie {
    pub fn new(
        name: String,
        max_age: u64,
        path: &str,
        secure: bool,
        http_only: bool,
        same_site: SameSite,
    ) -> Self {
        Self {
            name,
            attributes: attributes(max_age, path, secure, http_only, same_site),
            signer: None,
        }
    }

    /// The key that signs this cookie's values, if they are signed.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// The same cookie, its identities signed by `signer`.
    pub fn signed_by(self, signer: Signer) -> Self {
        Self {
            signer: Some(signer),
            ..self
        }
    }

    /// The identity a request's cookie value carries: the value itself when cookies are not
    /// signed; when they are, the identity of a value whose signature verifies, else `None`.
    pub fn identity<'v>(&self, value: &'v [u8]) -> Option<&'v [u8]> {
        match &self.signer {
            None => Some(value),
            Some(signer) => signer.verify(value),
        }
    }

    /// The `Set-Cookie` header value that hands out `identity`.
    pub fn set_cookie(&self, identity: &str) -> String {
        self.with_set_cookie(identity, |value| {
            String::from_utf8_lossy(value).into_owned()
        })
    }

    /// Calls `f` with the `Set-Cookie` header value that hands out `identity`, signed when the
    /// cookie is, rendered without allocating when it fits in a small buffer (it does unless
    /// the cookie path is long).
    pub fn with_set_cookie<R>(&self, identity: &str, f: impl FnOnce(&[u8]) -> R) -> R {
        let signature = self.signer.as_ref().map(|s| s.sign(identity.as_bytes()));
        let (dot, signature): (&[u8], &[u8]) = match &signature {
            Some(digits) => (b".", digits),
            None => (b"", b""),
        };
        self.with_set_cookie_value(&[identity.as_bytes(), dot, signature], f)
    }

    /// Calls `f` with the `Set-Cookie` header value of this cookie with the value made of
    /// `value`'s pieces, as written.
    pub fn with_set_cookie_value<R>(&self, value: &[&[u8]], f: impl FnOnce(&[u8]) -> R) -> R {
        with_set_cookie(&self.name, value, &self.attributes, f)
    }
}

/// The attributes of a cookie the filter sets, as the configuration gives them.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub max_age: u64,
    pub path: &'a str,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
}

/// The `; Max-Age=…; Path=…` and flags of a `Set-Cookie` value, appended after `name=value`.
pub fn attributes(
    max_age: u64,
    path: &str,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
) -> String {
    let mut attributes = format!("; Max-Age={max_age}; Path={path}");
    if secure {
        attributes.push_str("; Secure");
    }
    if http_only {
        attributes.push_str("; HttpOnly");
    }
    attributes.push_str(match same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    attributes
}

/// Calls `f` with `name=<value's pieces><attributes>`, rendered without allocating when it fits
/// in a small buffer.
pub fn with_set_cookie<R>(
    name: &str,
    value: &[&[u8]],
    attributes: &str,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let head: [&[u8]; 2] = [name.as_bytes(), b"="];
    let tail: [&[u8]; 1] = [attributes.as_bytes()];
    let parts = || head.iter().chain(value).chain(&tail);
    let len = parts().map(|p| p.len()).sum();
    let mut buf = [0; SET_COOKIE_BUF];
    match buf.get_mut(..len) {
        Some(rendered) => {
            let mut rest = &mut *rendered;
            for part in parts() {
                let Some((head, tail)) = rest.split_at_mut_checked(part.len()) else {
                    break;
                };
                head.copy_from_slice(part);
                rest = tail;
            }
            f(rendered)
        }
        None => f(&parts().copied().collect::<Vec<&[u8]>>().concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_in<'a>(headers: &[&'a str], name: &str) -> Option<&'a str> {
        find(headers.iter().map(|h| h.as_bytes()), name.as_bytes())
            .map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn finds_cookies() {
        let cases: &[(&str, &[&str], &str, Option<&str>)] = &[
            ("single", &["a=1"], "a", Some("1")),
            ("among others", &["a=1; b=2; c=3"], "b", Some("2")),
            ("no space", &["a=1;b=2"], "b", Some("2")),
            ("tabs and spaces", &["a=1 ;\t b = 2 "], "b", Some("2")),
            ("quoted", &["a=\"x y\""], "a", Some("x y")),
            ("second header", &["a=1", "b=2"], "b", Some("2")),
            (
                "first occurrence wins",
                &["b=1", "b=2; b=3"],
                "b",
                Some("1"),
            ),
            ("empty value", &["a="], "a", Some("")),
            ("value with =", &["a=x=y"], "a", Some("x=y")),
            ("absent", &["a=1"], "b", None),
            ("no headers", &[], "a", None),
            ("prefix of a name is not the name", &["ab=1"], "a", None),
            ("piece without =", &["junk; a=1"], "a", Some("1")),
            ("only separators", &[";;; ;"], "a", None),
            ("empty header", &[""], "a", None),
            ("case sensitive", &["A=1"], "a", None),
        ];
        for (label, headers, name, want) in cases {
            assert_eq!(find_in(headers, name), *want, "{label}");
        }
    }

    #[test]
    fn tolerates_non_utf8_bytes() {
        let headers: [&[u8]; 1] = [b"x=\xff\xfe; id=\xc3\x28"];
        assert_eq!(find(headers, b"id"), Some(&b"\xc3\x28"[..]));
        assert_eq!(find(headers, b"x"), Some(&b"\xff\xfe"[..]));
    }

    #[test]
    fn renders_set_cookie() {
        let all = IdentityCookie::new("canary_id".into(), 60, "/", true, true, SameSite::Lax);
        assert_eq!(
            all.set_cookie("abc"),
            "canary_id=abc; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        let plain = IdentityCookie::new("id".into(), 1, "/app", false, false, SameSite::Strict);
        assert_eq!(
            plain.set_cookie("z"),
            "id=z; Max-Age=1; Path=/app; SameSite=Strict"
        );
        let path = format!("/{}", "p".repeat(SET_COOKIE_BUF));
        let long = IdentityCookie::new("id".into(), 1, &path, false, false, SameSite::Strict);
        assert_eq!(
            long.set_cookie("z"),
            format!("id=z; Max-Age=1; Path={path}; SameSite=Strict"),
            "longer than the stack buffer"
        );
    }

    const SECRET: &str = "k7Qw9zR2mX4vB8nL1pT6yH3s";
    const PREVIOUS: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn signed() -> IdentityCookie {
        let signer = Signer::new(SECRET, [PREVIOUS]).unwrap();
        IdentityCookie::new("id".into(), 60, "/", true, true, SameSite::Lax).signed_by(signer)
    }

    #[test]
    fn renders_a_signed_set_cookie_that_verifies() {
        let cookie = signed();
        let header = cookie.set_cookie("abc");
        let value = header
            .strip_prefix("id=")
            .and_then(|rest| {
                rest.strip_suffix("; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax")
            })
            .unwrap();
        let (identity, mac) = value.split_once('.').unwrap();
        assert_eq!(identity, "abc");
        assert_eq!(mac.len(), SIGNATURE_LEN);
        assert!(
            mac.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{mac}"
        );
        assert_eq!(cookie.identity(value.as_bytes()), Some(&b"abc"[..]));
    }

    /// RFC 4231 test case 2: HMAC-SHA256 with key "Jefe", so that the signature is the standard
    /// one and can be computed by any HMAC implementation.
    #[test]
    fn signs_with_hmac_sha256() {
        let signer = Signer::new("Jefe", []).unwrap();
        assert_eq!(
            &signer.sign(b"what do ya want for nothing?"),
            b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn refuses_unsigned_foreign_and_malformed_values() {
        let cookie = signed();
        let other = Signer::new("an-unknown-secret-of-enough-length", []).unwrap();
        let mac = |signer: &Signer, identity: &str| {
            format!(
                "{identity}.{}",
                std::str::from_utf8(&signer.sign(identity.as_bytes())).unwrap()
            )
        };
        let good = mac(&Signer::new(SECRET, []).unwrap(), "abc");
        let cases = [
            ("unsigned", "abc".to_owned()),
            ("empty", String::new()),
            ("foreign secret", mac(&other, "abc")),
            ("uppercase hex", format!("abc.{}", good[4..].to_uppercase())),
            ("no dot", good.replace('.', "")),
            ("other separator", good.replace('.', "-")),
            ("truncated", good[..good.len() - 1].to_owned()),
            ("extended", format!("{good}0")),
            ("another identity", good.replace("abc", "abd")),
        ];
        for (label, value) in cases {
            assert_eq!(cookie.identity(value.as_bytes()), None, "{label}: {value}");
        }
        assert_eq!(cookie.identity(good.as_bytes()), Some(&b"abc"[..]));
        let unsigned = IdentityCookie::new("id".into(), 60, "/", true, true, SameSite::Lax);
        assert_eq!(
            unsigned.identity(good.as_bytes()),
            Some(good.as_bytes()),
            "kept whole"
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let shown = format!("{:?}", signed());
        assert!(
            !shown.contains(SECRET) && !shown.contains(PREVIOUS),
            "{shown}"
        );
        assert!(shown.contains("accepted_keys: 2"), "{shown}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn value(signer: &Signer, identity: &[u8]) -> Vec<u8> {
            [identity, b".", &signer.sign(identity)].concat()
        }

        proptest! {
            /// Changing any one byte of a signed value, identity or signature, fails the check.
            #[test]
            fn any_single_byte_change_fails(
                identity in "[0-9a-f]{32}",
                at in any::<prop::sample::Index>(),
                to in any::<u8>(),
            ) {
                let signer = Signer::new(SECRET, [PREVIOUS]).unwrap();
                let mut tampered = value(&signer, identity.as_bytes());
                let i = at.index(tampered.len());
                prop_assume!(tampered[i] != to);
                tampered[i] = to;
                prop_assert_eq!(signer.verify(&tampered), None);
            }

            /// A value signed with the signing key or a previous one verifies, with the identity
            /// it carries.
            #[test]
            fn accepted_keys_verify(identity in "[ -~]{1,64}") {
                let signer = Signer::new(SECRET, [PREVIOUS]).unwrap();
                let before_rotation = Signer::new(PREVIOUS, []).unwrap();
                for signed in [value(&signer, identity.as_bytes()), value(&before_rotation, identity.as_bytes())] {
                    prop_assert_eq!(signer.verify(&signed), Some(identity.as_bytes()));
                }
            }

            /// A value signed with any other key does not verify.
            #[test]
            fn unknown_keys_do_not_verify(identity in "[0-9a-f]{32}", key in "[A-Za-z0-9_-]{22,64}") {
                prop_assume!(key != SECRET && key != PREVIOUS);
                let signer = Signer::new(SECRET, [PREVIOUS]).unwrap();
                let unknown = Signer::new(&key, []).unwrap();
                let foreign = value(&unknown, identity.as_bytes());
                prop_assert_eq!(signer.verify(&foreign), None);
            }
        }
    }

    #[test]
    fn validates_names() {
        assert!(is_valid_name("canary_id"));
        assert!(is_valid_name("__Host-id"));
        for bad in ["", "a b", "a;b", "a=b", "a,b", "é"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
