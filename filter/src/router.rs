//! Finding the route for a request without scanning every route.
//!
//! Routes are indexed by host: exact names in one map, `*.suffix` wildcards in another keyed by
//! `.suffix`, and routes without hosts (or with `*`) in a list. A request's host is looked up
//! once in the exact map and once per label in the wildcard map; each candidate list is in
//! configuration order, so the first route of each list whose path prefixes fit is that list's
//! best, and the lowest of those is the first route in configuration order that fits.

use std::collections::HashMap;

/// Hosts (lowercase bytes) to the routes naming them, in configuration order.
/// Fx, a fast unkeyed hash, suits host names: the map is built from the configuration and only
/// looked up per request, so a request cannot grow its probe sequences, and a keyed hash
/// (std's SipHash) would buy nothing here.
type HostMap = HashMap<Box<[u8]>, Vec<usize>, rustc_hash::FxBuildHasher>;

#[derive(Debug, Default)]
pub(crate) struct RouteIndex {
    exact: HostMap,
    /// Keyed by the suffix with its leading dot: `*.example.com` → `.example.com`.
    wildcard: HostMap,
    any_host: Vec<usize>,
}

impl RouteIndex {
    /// Builds the index from each route's host list, in configuration order (empty: any host).
    /// The host names become the keys, lowercased in place.
    pub(crate) fn build(hosts_per_route: Vec<Vec<String>>) -> Self {
        let mut index = RouteIndex::default();
        index
            .exact
            .reserve(hosts_per_route.iter().map(Vec::len).sum());
        for (i, hosts) in hosts_per_route.into_iter().enumerate() {
            if hosts.is_empty() || hosts.iter().any(|h| h == "*") {
                index.any_host.push(i);
                continue;
            }
            for host in hosts {
                let mut host = host.into_bytes();
                host.make_ascii_lowercase();
                let (map, key) = match host.strip_prefix(b"*") {
                    Some(suffix) => (&mut index.wildcard, suffix.into()),
                    None => (&mut index.exact, host.into_boxed_slice()),
                };
                let list = map.entry(key).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        index
    }

    /// Whether route `i` is the first of those that match any host.
    pub(crate) fn takes_any_host(&self, i: usize) -> bool {
        self.any_host.first() == Some(&i)
    }

    /// The index of the first route, in configuration order, matching `authority` and `path`;
    /// `path_prefixes(i)` is route `i`'s path prefixes (none: any path).
    pub(crate) fn find<'r>(
        &self,
        path_prefixes: impl Fn(usize) -> Option<&'r [String]>,
        authority: &[u8],
        path: &[u8],
    ) -> Option<usize> {
        let fits = |i: &usize| {
            path_prefixes(*i).is_some_and(|prefixes| {
                prefixes.is_empty() || prefixes.iter().any(|p| path.starts_with(p.as_bytes()))
            })
        };
        let first_fit = |list: &Vec<usize>| list.iter().copied().find(fits);

        let mut best = if self.any_host.is_empty() {
            None
        } else {
            first_fit(&self.any_host)
        };
        if self.exact.is_empty() && self.wildcard.is_empty() {
            return best;
        }
        let mut consider = |candidate: Option<usize>| {
            if let Some(c) = candidate {
                best = Some(best.map_or(c, |b| b.min(c)));
            }
        };
        with_host(authority, |host| {
            consider(self.exact.get(host).and_then(first_fit));
            if !self.wildcard.is_empty() {
                // Every proper suffix starting at a dot, with at least one character before it.
                let dots = host.iter().enumerate().skip(1).filter(|(_, b)| **b == b'.');
                for (at, _) in dots {
                    if let Some(suffix) = host.get(at..) {
                        consider(self.wildcard.get(suffix).and_then(first_fit));
                    }
                }
            }
        });
        best
    }
}

/// Room for the longest DNS name (253 characters); longer hosts are lowercased on the heap.
const HOST_BUF: usize = 256;

/// Calls `f` with the lowercase host of an `:authority`, without its port, unless the authority
/// is not UTF-8. Lowercasing copies the host to the stack, only when it has uppercase letters.
fn with_host<R>(authority: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    if !authority.is_ascii() {
        std::str::from_utf8(authority).ok()?;
    }
    let (host, upper) = if authority.first() == Some(&b'[') {
        // An IPv6 literal: keep the brackets, drop the port after them.
        let host = authority
            .iter()
            .position(|b| *b == b']')
            .and_then(|end| authority.get(..=end))
            .unwrap_or(authority);
        (host, host.iter().any(u8::is_ascii_uppercase))
    } else {
        let (end, upper) = scan_host(authority);
        (authority.get(..end).unwrap_or(authority), upper)
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if !upper {
        return Some(f(host));
    }
    let mut buf = [0; HOST_BUF];
    Some(match buf.get_mut(..host.len()) {
        Some(lower) => {
            lower.copy_from_slice(host);
            lower.make_ascii_lowercase();
            f(lower)
        }
        None => f(&host.to_ascii_lowercase()),
    })
}

/// Where the host of an `authority` ends (at the first `:`, or its end) and whether the host
/// has an ASCII uppercase letter, eight bytes at a time.
fn scan_host(authority: &[u8]) -> (usize, bool) {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = !LOW7;
    const fn ones(b: u8) -> u64 {
        u64::from_le_bytes([b; 8])
    }
    let mut upper = false;
    let mut scan = |at: usize, word: [u8; 8]| {
        let word = u64::from_le_bytes(word);
        // Per byte, with no carry between bytes: b7 + 0x3f has its top bit set iff b7 >= 'A',
        // b7 + 0x25 iff b7 > 'Z'; a byte with its own top bit set is not ASCII.
        let b7 = word & LOW7;
        let uppercase = (b7 + ones(0x80 - b'A')) & !(b7 + ones(0x7f - b'Z')) & !word & HIGH;
        // The lowest byte flagged here is the first ':' exactly (flags above it may be false).
        let x = word ^ ones(b':');
        let colon = x.wrapping_sub(ones(1)) & !x & HIGH;
        if colon == 0 {
            upper |= uppercase != 0;
            return None;
        }
        let offset = colon.trailing_zeros() / 8;
        let before = (1u64 << (offset * 8)) - 1;
        upper |= uppercase & before != 0;
        Some(at + offset as usize)
    };
    let mut chunks = authority.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = <[u8; 8]>::try_from(chunk).unwrap_or_default();
        if let Some(end) = scan(at, word) {
            return (end, upper);
        }
        at += 8;
    }
    // The rest, padded with zero bytes, which are neither ':' nor letters.
    let mut word = [0; 8];
    word.iter_mut()
        .zip(chunks.remainder())
        .for_each(|(w, b)| *w = *b);
    let end = scan(at, word).unwrap_or(authority.len());
    (end, upper)
}

#[cfg(test)]
mod tests {

    fn table(routes: &str) -> crate::table::RoutingTable {
        let json = format!(r#"{{"routes": {routes}}}"#);
        crate::parse(json.as_bytes()).unwrap()
    }

    fn route(hosts: &str, prefixes: &str, name: &str) -> String {
        let mut m = Vec::new();
        if !hosts.is_empty() {
            m.push(format!(r#""hosts": [{hosts}]"#));
        }
        if !prefixes.is_empty() {
            m.push(format!(r#""pathPrefixes": [{prefixes}]"#));
        }
        format!(
            r#"{{"name": "{name}", "match": {{{}}}, "variants": [{{"name": "a", "weight": 100}}]}}"#,
            m.join(",")
        )
    }

    #[test]
    fn first_matching_route_in_configuration_order() {
        let t = table(&format!(
            "[{}, {}, {}, {}, {}]",
            route(r#""*.example.com""#, r#""/api/""#, "wild-api"),
            route(r#""shop.example.com""#, "", "shop"),
            route(r#""*.example.com""#, "", "wild"),
            route("", r#""/static/""#, "static"),
            route(r#""*""#, "", "fallback"),
        ));
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            (
                "wildcard before exact",
                "shop.example.com",
                "/api/x",
                Some("wild-api"),
            ),
            ("exact", "shop.example.com", "/cart", Some("shop")),
            (
                "case and port ignored",
                "SHOP.Example.COM:8443",
                "/cart",
                Some("shop"),
            ),
            ("trailing dot", "shop.example.com.", "/cart", Some("shop")),
            ("wildcard", "a.example.com", "/", Some("wild")),
            ("nested subdomain", "a.b.example.com", "/", Some("wild")),
            (
                "wildcard needs a label",
                "example.com",
                "/",
                Some("fallback"),
            ),
            (
                "any host with prefix",
                "other",
                "/static/a.css",
                Some("static"),
            ),
            ("catch-all", "other", "/", Some("fallback")),
            ("ipv6 with port", "[::1]:8080", "/", Some("fallback")),
        ];
        for (label, authority, path, want) in cases {
            let got = t
                .route_for(authority.as_bytes(), path.as_bytes())
                .map(|i| t.routes[i].name.as_str());
            assert_eq!(got, *want, "{label}: {authority}{path}");
        }
    }

    #[test]
    fn scans_to_the_port_and_finds_uppercase_before_it() {
        let bytes = [
            (b'A', true),
            (b'Z', true),
            (b'@', false),
            (b'[', false),
            (b'a', false),
            (0xc1, false),
            (0xda, false),
            (0xff, false),
        ];
        for len in 0..20 {
            for at in 0..len {
                for (c, upper) in bytes {
                    let mut host = vec![b'x'; len];
                    host[at] = c;
                    let label = format!("{c:#x} at {at} of {len}");
                    assert_eq!(super::scan_host(&host), (len, upper), "{label}");
                    for colon in 0..len {
                        let mut authority = host.clone();
                        authority[colon] = b':';
                        authority.extend_from_slice(b":8A");
                        let want = (colon, at < colon && upper);
                        assert_eq!(
                            super::scan_host(&authority),
                            want,
                            "{label}, ':' at {colon}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn no_match_passes_through() {
        let t = table(&format!(
            "[{}]",
            route(r#""reviews""#, r#""/api/""#, "reviews")
        ));
        for (authority, path) in [("reviews", "/"), ("ratings", "/api/"), ("", "")] {
            assert_eq!(t.route_for(authority.as_bytes(), path.as_bytes()), None);
        }
        assert_eq!(
            t.route_for(b"\xff\xfe", b"/api/"),
            None,
            "non-UTF-8 authority"
        );
    }

    #[test]
    fn exact_hosts_are_found_among_many_routes() {
        let routes: Vec<String> = (0..1000)
            .map(|i| {
                route(
                    &format!(r#""svc-{i}.ns.svc.cluster.local""#),
                    "",
                    &format!("r{i}"),
                )
            })
            .collect();
        let t = table(&format!("[{}]", routes.join(",")));
        let got = t.route_for(b"svc-777.ns.svc.cluster.local:80", b"/");
        assert_eq!(got, Some(777));
    }
}
