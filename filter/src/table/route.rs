//! The compiled routes: their variants, targeting rules and stickiness, and the sources a
//! route reads from a request.

use std::cmp::Ordering;

use regex_lite::Regex;

use super::lane::Lanes;
use super::ramp::{Ramp, Weights};
use crate::assign::Weight;
use crate::carried::{PinCookie, SessionCookie};
use crate::cookie::IdentityCookie;

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub path_prefixes: Vec<String>,
    pub variants: Vec<Variant>,
    pub targeting: Vec<TargetingRule>,
    pub stickiness: Stickiness,
    /// Every header, cookie and query parameter the route reads, each once.
    pub sources: RouteSources,
    /// The variants' weights change over time; without it they are the configured weights.
    pub ramp: Option<Ramp>,
    /// Set when the route trusts incoming decisions (`trustIncoming`).
    pub lanes: Option<Lanes>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub weight: Weight,
    /// What the filter writes into the decision header: `<name>.<seal>`, or the name alone
    /// when the configuration has no seal. Computed once, when the table is built.
    pub decision_value: String,
    pub id: VariantId,
}

/// A variant's place among all the table's variants, in configuration order: where what is
/// kept per variant outside the table (its metrics) is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantId(pub usize);

/// Shows the name and weight, never the seal inside the decision value.
impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct TargetingRule {
    pub name: String,
    pub source: Source,
    /// Where the source's value is among the route's [`RouteSources`].
    pub slot: Slot,
    pub predicate: Predicate,
    /// Index into the route's variants.
    pub variant: usize,
    /// What the rule does to the pin cookie when it decides.
    pub pin: Option<PinUpdate>,
}

/// What a decision does to the client's pin cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinUpdate {
    /// Pin the variant decided.
    Set,
    /// Remove the pin.
    Clear,
}

/// Where a value is read from on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header, by lowercase name; its first value.
    Header(String),
    /// A cookie, by exact name, from any `cookie` header.
    Cookie(String),
    /// A query parameter of `:path`, by decoded name; its first occurrence, decoded (see
    /// [`crate::query`]).
    Query(String),
}

/// The distinct headers, cookies and query parameters one route reads: its targeting sources,
/// identity keys and identity cookie. A request's values for all of them are found in one pass
/// over its headers, the `cookie` headers parsed once and the query string decoded once (only
/// for a route that reads it), however many rules read the same source.
#[derive(Debug, Default)]
pub struct RouteSources {
    sources: Vec<Source>,
    /// Bit `n % 64` is set for each header name of length `n`: most request headers are passed
    /// over on their length alone.
    header_lengths: u64,
    reads_cookies: bool,
    reads_query: bool,
}

/// A source's place among its route's [`RouteSources`], and its value's among a request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub usize);

impl RouteSources {
    /// The slot of `source`, added if the route does not read it yet.
    pub(super) fn add(&mut self, source: &Source) -> Slot {
        if let Some(i) = self.sources.iter().position(|s| s == source) {
            return Slot(i);
        }
        match source {
            Source::Header(name) => self.header_lengths |= 1 << (name.len() % 64),
            Source::Cookie(_) => self.reads_cookies = true,
            Source::Query(_) => self.reads_query = true,
        }
        self.sources.push(source.clone());
        Slot(self.sources.len() - 1)
    }

    /// The sources, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.sources.iter()
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    pub fn reads_cookies(&self) -> bool {
        self.reads_cookies
    }

    pub fn reads_query(&self) -> bool {
        self.reads_query
    }

    /// The slot of header `name` (lowercase), if the route reads it.
    pub fn header(&self, name: &[u8]) -> Option<Slot> {
        if self.header_lengths & (1 << (name.len() % 64)) == 0 {
            return None;
        }
        self.sources
            .iter()
            .position(
                |s| matches!(s, Source::Header(n) if n.len() == name.len() && n.as_bytes() == name),
            )
            .map(Slot)
    }

    /// The slot of cookie `name`, if the route reads it.
    pub fn cookie(&self, name: &[u8]) -> Option<Slot> {
        self.sources
            .iter()
            .position(
                |s| matches!(s, Source::Cookie(n) if n.len() == name.len() && n.as_bytes() == name),
            )
            .map(Slot)
    }

    /// The slot of query parameter `name` (decoded), if the route reads it.
    pub fn query(&self, name: &str) -> Option<Slot> {
        self.sources
            .iter()
            .position(|s| matches!(s, Source::Query(n) if n == name))
            .map(Slot)
    }
}

#[derive(Debug)]
pub enum Predicate {
    Equals(Vec<u8>),
    In(ValueSet),
    Prefix(Vec<u8>),
    /// Anchored: the whole value must match.
    Matches(Regex),
    Present(bool),
}

impl Predicate {
    /// Whether the predicate holds for the value read (`None`: the source is absent).
    pub fn holds(&self, value: Option<&[u8]>) -> bool {
        match (self, value) {
            (Predicate::Present(want), value) => value.is_some() == *want,
            (_, None) => false,
            (Predicate::Equals(want), Some(v)) => v == want.as_slice(),
            (Predicate::In(set), Some(v)) => set.contains(v),
            (Predicate::Prefix(prefix), Some(v)) => v.starts_with(prefix),
            // Header values are bytes; a value that is not UTF-8 matches no regex.
            (Predicate::Matches(regex), Some(v)) => {
                std::str::from_utf8(v).is_ok_and(|v| regex.is_match(v))
            }
        }
    }
}

/// The values of an `in` predicate, sorted by length and then bytes: a lookup is a binary
/// search that mostly compares lengths, with no hashing of the request's value.
#[derive(Debug)]
pub struct ValueSet(Vec<Vec<u8>>);

impl ValueSet {
    pub(super) fn new(mut values: Vec<Vec<u8>>) -> Self {
        values.sort_by(|a, b| by_length_then_bytes(a, b));
        values.dedup();
        ValueSet(values)
    }

    pub fn contains(&self, value: &[u8]) -> bool {
        self.0
            .binary_search_by(|v| by_length_then_bytes(v, value))
            .is_ok()
    }
}

fn by_length_then_bytes(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[derive(Debug)]
pub struct Stickiness {
    pub keys: Vec<Source>,
    pub cookie: Option<IdentityCookie>,
    pub salt: String,
    /// Where the keys' values are, in the keys' order.
    pub key_slots: Vec<Slot>,
    /// Where the identity cookie's value is, when there is an identity cookie.
    pub cookie_slot: Option<Slot>,
    /// In session mode, the values of the identity cookie: it carries the variant served.
    pub session: Option<SessionCookie>,
    /// On a route with pin or unpin rules or a `pin` configuration.
    pub pins: Option<Pins>,
}

/// A route's pins: the cookie, where a request's value of it is, and the variants it may pin.
#[derive(Debug)]
pub struct Pins {
    pub cookie: PinCookie,
    pub slot: Slot,
    /// By variant index: whether a rule with `pin: true` targets the variant.
    pub pinnable: Vec<bool>,
}

impl Pins {
    /// The variant a request's pin cookie value pins, if the value verifies (where pins are
    /// signed) and names a variant that a pin rule targets; `None` for a pin to be cleared.
    pub fn variant(&self, variants: &[Variant], value: &[u8]) -> Option<usize> {
        let name = self.cookie.variant(value)?;
        let k = variants.iter().position(|v| v.name.as_bytes() == name)?;
        self.pinnable.get(k).copied()?.then_some(k)
    }
}

impl Route {
    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.name == name)
    }

    /// The variant an identity hashes to on this route at the configured weights (see
    /// [`crate::assign`]): the weights in force on a route without a ramp, and before a ramp's
    /// start.
    pub fn assign(&self, identity: &[u8]) -> usize {
        crate::assign::assign(
            self.stickiness.salt.as_bytes(),
            identity,
            self.variants.iter().map(|v| (v.name.as_bytes(), v.weight)),
        )
    }

    /// The variant an identity hashes to at `now_ms` (Unix milliseconds), with the weights of
    /// [`Route::weights_at`].
    pub fn assign_at(&self, identity: &[u8], now_ms: u64) -> usize {
        let Some(ramp) = &self.ramp else {
            return self.assign(identity);
        };
        let weights = ramp.weights_at(&self.variants, now_ms);
        crate::assign::assign(
            self.stickiness.salt.as_bytes(),
            identity,
            self.variants
                .iter()
                .zip(weights)
                .map(|(v, w)| (v.name.as_bytes(), w)),
        )
    }

    /// Every variant's weight at `now_ms`, in variant order: the ramp's weights, or the
    /// configured ones.
    pub fn weights_at(&self, now_ms: u64) -> Weights {
        match &self.ramp {
            Some(ramp) => ramp.weights_at(&self.variants, now_ms),
            None => {
                let mut weights = [Weight(0); super::MAX_VARIANTS];
                for (weight, variant) in weights.iter_mut().zip(&self.variants) {
                    *weight = variant.weight;
                }
                weights
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_numbered_across_the_table_in_configuration_order() {
        let t = crate::parse(
            br#"{"routes":[
              {"name":"a","match":{"hosts":["a"]},"variants":[{"name":"x","weight":50},{"name":"y","weight":50}]},
              {"name":"b","variants":[{"name":"x","weight":100}]}
            ]}"#,
        )
        .unwrap();
        let ids: Vec<(&str, &str, usize)> = t
            .routes
            .iter()
            .flat_map(|r| {
                r.variants
                    .iter()
                    .map(|v| (r.name.as_str(), v.name.as_str(), v.id.0))
            })
            .collect();
        assert_eq!(ids, [("a", "x", 0), ("a", "y", 1), ("b", "x", 2)]);
    }

    #[test]
    fn value_sets_find_exactly_their_values() {
        let values = ["staff", "beta", "dogfood", "beta", "", "b", "staff2"];
        let set = ValueSet::new(values.iter().map(|v| v.as_bytes().to_vec()).collect());
        for v in values {
            assert!(set.contains(v.as_bytes()), "{v:?}");
        }
        for v in [
            "Staff",
            "bet",
            "betaa",
            "dogfooD",
            "c",
            "staff3",
            "x".repeat(40).as_str(),
        ] {
            assert!(!set.contains(v.as_bytes()), "{v:?}");
        }
    }
}
