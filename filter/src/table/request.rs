//! The request as the decision reads it.

use std::fmt;

use super::route::{RouteSources, Slot};

/// A request's headers as the filter holds them once it has read them from the host in one
/// call: lowercase names, in the order received, a name possibly repeated.
///
/// They are kept as one buffer in proxy-wasm's serialised header map, the form in which Envoy
/// hands the whole map to a wasm module, and read in place: holding a request's headers costs
/// one allocation, not two per header, and no header is copied or checked for UTF-8. The map
/// is the number of headers (a little-endian `u32`), then each header's name length and value
/// length (`u32` each), then each name and each value followed by a NUL byte.
///
/// A malformed map is never an error: the headers are those read before the first that does
/// not fit the format, and none if the count and lengths at its head do not fit the buffer.
#[derive(Clone, Default)]
pub struct RequestHeaders {
    map: Vec<u8>,
}

pub(super) const COOKIE: &str = "cookie";

/// Bytes of the map's header count, and of each header's two lengths.
const COUNT_BYTES: usize = 4;
const LENGTHS_BYTES: usize = 8;

impl RequestHeaders {
    /// The headers in `map`, proxy-wasm's serialised header map as the host returned it.
    pub fn from_serialized_map(map: Vec<u8>) -> Self {
        RequestHeaders { map }
    }

    /// The headers `pairs`, in order (names lowercase), serialised into one map: for the host
    /// double, the dynamic module and callers outside a host, such as canaryctl.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Self {
        Self::from_headers(pairs.iter().map(|(n, v)| (n.as_ref(), v.as_ref())))
    }

    /// The headers `headers` yields, in order (names lowercase), serialised into one map with
    /// one allocation. `headers` is gone through three times, so it should be cheap to clone,
    /// like an iterator over a slice.
    pub fn from_headers<'h>(headers: impl Iterator<Item = (&'h [u8], &'h [u8])> + Clone) -> Self {
        let (count, fields) = headers.clone().fold((0, 0), |(count, fields), (n, v)| {
            (count + 1, fields + n.len() + v.len() + 2)
        });
        let mut map = Vec::with_capacity(COUNT_BYTES + LENGTHS_BYTES * count + fields);
        map.extend_from_slice(&wire_len(count).to_le_bytes());
        for (name, value) in headers.clone() {
            map.extend_from_slice(&wire_len(name.len()).to_le_bytes());
            map.extend_from_slice(&wire_len(value.len()).to_le_bytes());
        }
        for (name, value) in headers {
            for field in [name, value] {
                map.extend_from_slice(field);
                map.push(0);
            }
        }
        RequestHeaders { map }
    }

    /// Every header as (name, value), in order.
    pub fn iter(&self) -> Headers<'_> {
        let empty = Headers {
            lengths: &[],
            fields: &[],
        };
        let Some((count, rest)) = self.map.split_first_chunk::<COUNT_BYTES>() else {
            return empty;
        };
        let lengths = usize::try_from(u32::from_le_bytes(*count))
            .ok()
            .and_then(|count| count.checked_mul(LENGTHS_BYTES));
        match lengths.and_then(|n| rest.split_at_checked(n)) {
            Some((lengths, fields)) => Headers { lengths, fields },
            None => empty,
        }
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        // Comparing lengths first: most names differ in length, and the byte comparison is a
        // call.
        let name = name.as_bytes();
        self.iter()
            .find(|(n, _)| n.len() == name.len() && *n == name)
            .map(|(_, value)| value)
    }

    /// The value of header `name` (lowercase) when the request carries exactly one.
    pub fn only(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        let mut values = self
            .iter()
            .filter(|(n, _)| n.len() == name.len() && *n == name);
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
        for (name, value) in self.iter() {
            let is = |pseudo: &str| name.len() == pseudo.len() && name == pseudo.as_bytes();
            let found = if is(":authority") {
                &mut authority
            } else if is(":path") {
                &mut path
            } else {
                continue;
            };
            found.get_or_insert(value);
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
        for (name, value) in self.iter() {
            if name.len() == COOKIE.len() && name == COOKIE.as_bytes() && sources.reads_cookies() {
                for (cookie, value) in crate::cookie::pairs(value) {
                    found(sources.cookie(cookie), value);
                }
            }
            found(sources.header(name), value);
        }
    }
}

/// A length as the map writes it. Nothing the filter serialises comes near 4 GiB; a length
/// that did would be written as `u32::MAX`, and the map read as far as that header.
fn wire_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Two maps are equal when they hold the same headers in the same order.
impl PartialEq for RequestHeaders {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for RequestHeaders {}

impl fmt::Debug for RequestHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lossy = |bytes| String::from_utf8_lossy(bytes);
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (lossy(n), lossy(v))))
            .finish()
    }
}

/// The headers of a [`RequestHeaders`], read from its map as they are asked for.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    /// The name and value lengths of the headers not read yet.
    lengths: &'a [u8],
    /// Their names and values, each followed by a NUL.
    fields: &'a [u8],
}

impl<'a> Headers<'a> {
    fn read(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let (lengths, rest) = self.lengths.split_first_chunk::<LENGTHS_BYTES>()?;
        let [n0, n1, n2, n3, v0, v1, v2, v3] = *lengths;
        let name_len = usize::try_from(u32::from_le_bytes([n0, n1, n2, n3])).ok()?;
        let value_len = usize::try_from(u32::from_le_bytes([v0, v1, v2, v3])).ok()?;
        let name = field(&mut self.fields, name_len)?;
        let value = field(&mut self.fields, value_len)?;
        self.lengths = rest;
        Some((name, value))
    }
}

/// The next `len` bytes of `fields` and the NUL after them, taken off its front.
fn field<'a>(fields: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let (field, rest) = fields.split_at_checked(len)?;
    let (&0, rest) = rest.split_first()? else {
        return None;
    };
    *fields = rest;
    Some(field)
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.read();
        if header.is_none() {
            // A header that does not fit ends the map: nothing after it is framed reliably.
            self.lengths = &[];
        }
        header
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.lengths.len() / LENGTHS_BYTES))
    }
}

impl std::iter::FusedIterator for Headers<'_> {}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn pairs(headers: &RequestHeaders) -> Pairs {
        headers
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    }

    /// proxy-wasm's own example of the format (its `hostcalls::utils` tests), written out by
    /// hand: two headers, then `:method` NUL `GET` NUL `:path` NUL `/bytes/1` NUL.
    const TWO: &[u8] = b"\x02\x00\x00\x00\
        \x07\x00\x00\x00\x03\x00\x00\x00\
        \x05\x00\x00\x00\x08\x00\x00\x00\
        :method\x00GET\x00:path\x00/bytes/1\x00";

    #[test]
    fn reads_the_map_the_host_serialised() {
        let headers = RequestHeaders::from_serialized_map(TWO.to_vec());
        let read: Vec<_> = headers.iter().collect();
        assert_eq!(
            read,
            [(&b":method"[..], &b"GET"[..]), (b":path", b"/bytes/1")]
        );
        assert_eq!(headers.path(), b"/bytes/1");
        assert_eq!(headers.header(":method"), Some(&b"GET"[..]));
        assert_eq!(headers.header(":authority"), None);
    }

    #[test]
    fn from_pairs_writes_the_same_map() {
        let headers = RequestHeaders::from_pairs(&[(":method", "GET"), (":path", "/bytes/1")]);
        assert_eq!(headers.map, TWO);
    }

    #[test]
    fn empty_names_values_and_repeated_headers() {
        let headers = RequestHeaders::from_pairs(&[
            ("", "no name"),
            ("x-a", ""),
            ("x-a", "second"),
            (":authority", "shop"),
            (":authority", "other"),
        ]);
        assert_eq!(headers.iter().count(), 5);
        assert_eq!(headers.header(""), Some(&b"no name"[..]));
        assert_eq!(headers.header("x-a"), Some(&b""[..]), "the first value");
        assert_eq!(headers.authority_and_path(), (&b"shop"[..], &b""[..]));
    }

    #[test]
    fn values_are_bytes_and_may_hold_nul() {
        let headers = RequestHeaders::from_pairs(&[("x-bin", &b"\xff\x00\xfe"[..])]);
        assert_eq!(headers.header("x-bin"), Some(&b"\xff\x00\xfe"[..]));
    }

    #[test]
    fn a_malformed_map_gives_the_headers_before_the_fault() {
        let cases: &[(&str, &[u8], usize)] = &[
            ("empty buffer", b"", 0),
            ("count cut short", b"\x02\x00", 0),
            ("no headers", b"\x00\x00\x00\x00", 0),
            (
                "count beyond the lengths",
                b"\x03\x00\x00\x00\x01\x00\x00\x00",
                0,
            ),
            ("count of u32::MAX", b"\xff\xff\xff\xff", 0),
            ("fields cut short", &TWO[..TWO.len() - 4], 1),
            ("last NUL missing", &TWO[..TWO.len() - 1], 1),
            ("fields missing", &TWO[..20], 0),
        ];
        for (what, map, want) in cases {
            let headers = RequestHeaders::from_serialized_map(map.to_vec());
            assert_eq!(headers.iter().count(), *want, "{what}");
        }

        let mut misframed = TWO.to_vec();
        misframed[4] = 6; // `:method` declared one byte short: no NUL where it ends.
        let headers = RequestHeaders::from_serialized_map(misframed);
        assert_eq!(
            headers.iter().count(),
            0,
            "a misframed first header ends the map"
        );

        let mut too_long = TWO.to_vec();
        too_long[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let headers = RequestHeaders::from_serialized_map(too_long);
        assert_eq!(pairs(&headers), [(b":method".to_vec(), b"GET".to_vec())]);
        assert_eq!(
            headers.path(),
            b"",
            "the header that does not fit is not read"
        );
    }

    #[test]
    fn equal_when_the_headers_are() {
        let mut trailing = TWO.to_vec();
        trailing.extend_from_slice(b"junk");
        assert_eq!(
            RequestHeaders::from_serialized_map(trailing),
            RequestHeaders::from_serialized_map(TWO.to_vec())
        );
        assert_ne!(
            RequestHeaders::from_pairs(&[("a", "1")]),
            RequestHeaders::from_pairs(&[("a", "2")])
        );
        assert_eq!(
            RequestHeaders::default(),
            RequestHeaders::from_pairs::<&str, &str>(&[])
        );
        assert_eq!(
            format!("{:?}", RequestHeaders::from_pairs(&[("a", b"\xff")])),
            "[(\"a\", \"\u{fffd}\")]"
        );
    }

    fn header_pairs() -> impl Strategy<Value = Pairs> {
        let field = || prop::collection::vec(any::<u8>(), 0..12);
        prop::collection::vec((field(), field()), 0..8)
    }

    proptest! {
        #[test]
        fn pairs_read_back_as_written(written in header_pairs()) {
            let headers = RequestHeaders::from_pairs(&written);
            prop_assert_eq!(pairs(&headers), written);
        }

        /// Whatever the host hands over, reading it returns (no panic), and what it reads is a
        /// prefix of the headers that were written when the map is a cut-short or corrupted
        /// copy of a real one.
        #[test]
        fn any_bytes_are_read_without_panic(map in prop::collection::vec(any::<u8>(), 0..96)) {
            let headers = RequestHeaders::from_serialized_map(map.clone());
            let read = pairs(&headers);
            // A header takes at least its two lengths and two NULs.
            prop_assert!(read.is_empty() || 4 + 10 * read.len() <= map.len());
            let _ = headers.header("cookie");
            let _ = headers.authority_and_path();
            let again = RequestHeaders::from_pairs(&read);
            prop_assert_eq!(pairs(&again), read, "what was read serialises back");
        }

        #[test]
        fn a_cut_short_map_reads_a_prefix(written in header_pairs(), cut in any::<prop::sample::Index>()) {
            let map = RequestHeaders::from_pairs(&written).map;
            let cut = cut.index(map.len() + 1);
            let read = pairs(&RequestHeaders::from_serialized_map(map[..cut].to_vec()));
            prop_assert!(written.starts_with(&read), "{read:?} of {written:?}");
            if cut == map.len() {
                prop_assert_eq!(read, written);
            }
        }

        #[test]
        fn a_corrupted_map_reads_without_panic(
            written in header_pairs(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut map = RequestHeaders::from_pairs(&written).map;
            let at = at.index(map.len());
            map[at] = byte;
            let len = map.len();
            let read = RequestHeaders::from_serialized_map(map).iter().count();
            prop_assert!(read == 0 || 4 + 10 * read <= len);
        }
    }
}
