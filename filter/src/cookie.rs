//! Request cookies and the identity `Set-Cookie`.
//!
//! Parsing is lenient the way browsers and Envoy are: a request may carry several `cookie`
//! headers, pairs are separated by `;`, whitespace around names and values is ignored, a value
//! may be double-quoted, and pieces without `=` are skipped. The first pair with the name wins.

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

/// The identity cookie's name and attributes, rendered once at configuration time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCookie {
    pub name: String,
    /// `; Max-Age=…; Path=…` and the flags, appended after `name=value`.
    attributes: String,
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
        Self { name, attributes }
    }

    /// The `Set-Cookie` header value that hands out `identity`.
    pub fn set_cookie(&self, identity: &str) -> String {
        self.with_set_cookie(identity, |value| {
            String::from_utf8_lossy(value).into_owned()
        })
    }

    /// Calls `f` with the `Set-Cookie` header value that hands out `identity`, rendered without
    /// allocating when it fits in a small buffer (it does unless the cookie path is long).
    pub fn with_set_cookie<R>(&self, identity: &str, f: impl FnOnce(&[u8]) -> R) -> R {
        let parts = [
            self.name.as_bytes(),
            b"=",
            identity.as_bytes(),
            self.attributes.as_bytes(),
        ];
        let len = parts.iter().map(|p| p.len()).sum();
        let mut buf = [0; SET_COOKIE_BUF];
        match buf.get_mut(..len) {
            Some(value) => {
                let mut rest = &mut *value;
                for part in parts {
                    let Some((head, tail)) = rest.split_at_mut_checked(part.len()) else {
                        break;
                    };
                    head.copy_from_slice(part);
                    rest = tail;
                }
                f(value)
            }
            None => f(&parts.concat()),
        }
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

    #[test]
    fn validates_names() {
        assert!(is_valid_name("canary_id"));
        assert!(is_valid_name("__Host-id"));
        for bad in ["", "a b", "a;b", "a=b", "a,b", "é"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
