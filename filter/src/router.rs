//! Finding the route for a request without scanning every route.
//!
//! Routes are indexed by host: exact names in one map, `*.suffix` wildcards in another keyed by
//! `.suffix`, and routes without hosts (or with `*`) in a list. A request's host is looked up
//! once in the exact map and once per label in the wildcard map; each candidate list is in
//! configuration order, so the first route of each list whose path prefixes fit is that list's
//! best, and the lowest of those is the first route in configuration order that fits.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::table::Route;

#[derive(Debug, Default)]
pub(crate) struct RouteIndex {
    exact: HashMap<String, Vec<usize>>,
    /// Keyed by the suffix with its leading dot: `*.example.com` → `.example.com`.
    wildcard: HashMap<String, Vec<usize>>,
    any_host: Vec<usize>,
}

impl RouteIndex {
    /// Builds the index from each route's host list, in configuration order (empty: any host).
    pub(crate) fn build<'a>(hosts_per_route: impl Iterator<Item = &'a [String]>) -> Self {
        let mut index = RouteIndex::default();
        for (i, hosts) in hosts_per_route.enumerate() {
            if hosts.is_empty() || hosts.iter().any(|h| h == "*") {
                index.any_host.push(i);
                continue;
            }
            for host in hosts {
                let host = host.to_ascii_lowercase();
                let (map, key) = match host.strip_prefix('*') {
                    Some(suffix) => (&mut index.wildcard, suffix.to_owned()),
                    None => (&mut index.exact, host),
                };
                let list = map.entry(key).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        index
    }

    /// The index of the first route, in configuration order, matching `authority` and `path`.
    pub(crate) fn find(&self, routes: &[Route], authority: &[u8], path: &[u8]) -> Option<usize> {
        let fits = |i: &usize| {
            routes.get(*i).is_some_and(|r| {
                r.path_prefixes.is_empty()
                    || r.path_prefixes
                        .iter()
                        .any(|p| path.starts_with(p.as_bytes()))
            })
        };
        let first_fit = |list: &Vec<usize>| list.iter().copied().find(fits);

        let mut best = first_fit(&self.any_host);
        let mut consider = |candidate: Option<usize>| {
            if let Some(c) = candidate {
                best = Some(best.map_or(c, |b| b.min(c)));
            }
        };
        if let Some(host) = host_of(authority) {
            consider(self.exact.get(host.as_ref()).and_then(first_fit));
            if !self.wildcard.is_empty() {
                // Every proper suffix starting at a dot, with at least one character before it.
                for (at, _) in host.match_indices('.').filter(|(at, _)| *at > 0) {
                    if let Some(suffix) = host.get(at..) {
                        consider(self.wildcard.get(suffix).and_then(first_fit));
                    }
                }
            }
        }
        best
    }
}

/// The lowercase host of an `:authority`, without its port. `None` if not UTF-8.
fn host_of(authority: &[u8]) -> Option<Cow<'_, str>> {
    let authority = std::str::from_utf8(authority).ok()?;
    let host = if authority.starts_with('[') {
        // An IPv6 literal: keep the brackets, drop the port after them.
        authority
            .find(']')
            .and_then(|end| authority.get(..=end))
            .unwrap_or(authority)
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

#[cfg(test)]
mod tests {
    use crate::config;

    fn table(routes: &str) -> crate::table::RoutingTable {
        let json = format!(r#"{{"routes": {routes}}}"#);
        config::parse(json.as_bytes()).unwrap()
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
                .index
                .find(&t.routes, authority.as_bytes(), path.as_bytes())
                .map(|i| t.routes[i].name.as_str());
            assert_eq!(got, *want, "{label}: {authority}{path}");
        }
    }

    #[test]
    fn no_match_passes_through() {
        let t = table(&format!(
            "[{}]",
            route(r#""reviews""#, r#""/api/""#, "reviews")
        ));
        for (authority, path) in [("reviews", "/"), ("ratings", "/api/"), ("", "")] {
            assert_eq!(
                t.index
                    .find(&t.routes, authority.as_bytes(), path.as_bytes()),
                None
            );
        }
        assert_eq!(
            t.index.find(&t.routes, b"\xff\xfe", b"/api/"),
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
        let got = t
            .index
            .find(&t.routes, b"svc-777.ns.svc.cluster.local:80", b"/");
        assert_eq!(got, Some(777));
    }
}
