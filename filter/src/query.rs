//! The query string of a request's `:path`, as targeting rules read it.
//!
//! The query is what follows the first `?` of `:path`, up to a `#` (a fragment is not part of
//! the query; clients do not send one, but a `:path` may carry it). It is decoded by the WHATWG
//! `application/x-www-form-urlencoded` rules: pairs are separated by `&`, a name from its value
//! by the first `=` (a pair without `=` has an empty value, an empty pair is skipped), `+` is a
//! space, `%XX` is the byte XX, an invalid escape is kept as written, and bytes that are not
//! UTF-8 once decoded become U+FFFD. Names are compared after decoding, exactly (case matters);
//! the first occurrence of a name wins.

use std::borrow::Cow;

/// The query of a `:path`: after its first `?`, up to its first `#`; empty when there is none.
pub fn of(path: &[u8]) -> &[u8] {
    let Some(start) = path.iter().position(|b| *b == b'?') else {
        return &[];
    };
    let query = path.get(start + 1..).unwrap_or_default();
    let end = query.iter().position(|b| *b == b'#').unwrap_or(query.len());
    query.get(..end).unwrap_or_default()
}

/// The decoded `(name, value)` pairs of the query of `path`, in order.
pub fn pairs(path: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(of(path))
}

/// The decoded value of the first parameter named `name` in the query of `path`.
pub fn find<'p>(path: &'p [u8], name: &str) -> Option<Cow<'p, str>> {
    pairs(path).find_map(|(n, value)| (n == name).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_parameters_decoded() {
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("single", "/p?canary=always", "canary", Some("always")),
            (
                "among others",
                "/p?a=1&canary=never&b=2",
                "canary",
                Some("never"),
            ),
            ("first occurrence wins", "/?c=1&c=2", "c", Some("1")),
            ("plus is a space", "/?c=a+b", "c", Some("a b")),
            ("percent escape", "/?c=a%20b%2Bc", "c", Some("a b+c")),
            ("encoded name", "/?ca%6Eary=x", "canary", Some("x")),
            ("name with a plus", "/?my+key=1", "my key", Some("1")),
            ("invalid escape kept", "/?c=100%&d=%zz%4", "c", Some("100%")),
            ("invalid escapes kept", "/?d=%zz%4", "d", Some("%zz%4")),
            ("not UTF-8 once decoded", "/?c=%FF", "c", Some("\u{FFFD}")),
            ("UTF-8 decoded", "/?c=%C3%A9", "c", Some("é")),
            ("no equals sign", "/?canary&x=1", "canary", Some("")),
            ("empty value", "/?canary=", "canary", Some("")),
            ("value with =", "/?c=a=b", "c", Some("a=b")),
            ("fragment is not the query", "/?a=1#c=2", "c", None),
            ("fragment ends a value", "/?c=1#x", "c", Some("1")),
            ("question mark in a value", "/?c=a?b", "c", Some("a?b")),
            ("empty pairs skipped", "/?&&c=1&", "c", Some("1")),
            ("case sensitive", "/?Canary=1", "canary", None),
            (
                "prefix of a name is not the name",
                "/?canaryx=1",
                "canary",
                None,
            ),
            ("no query", "/p", "c", None),
            ("empty query", "/p?", "c", None),
            ("empty path", "", "c", None),
        ];
        for (label, path, name, want) in cases {
            assert_eq!(
                find(path.as_bytes(), name).as_deref(),
                *want,
                "{label}: {path}"
            );
        }
    }

    #[test]
    fn tolerates_bytes_that_are_not_utf8() {
        assert_eq!(
            find(b"/?x=\xff&c=\xc3\x28", "c").as_deref(),
            Some("\u{FFFD}(")
        );
    }
}
