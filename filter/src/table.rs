//! The compiled configuration: validated, indexed, ready for per-request use.
//!
//! Everything that can be checked or precomputed is done here, once, at configuration time:
//! names validated, header names lowercased, regexes compiled, weights turned into integers,
//! hosts indexed, `Set-Cookie` attributes rendered.

use std::cmp::Ordering;
use std::collections::HashMap;

use regex_lite::{Regex, RegexBuilder};

use crate::assign::{Weight, MAX_NAME_LEN};
use crate::config::{
    IdentityCookieConfig, KeyConfig, PluginConfig, RouteConfig, SameSite, StickinessConfig,
    TargetingRuleConfig, VariantConfig,
};
use crate::cookie::{self, IdentityCookie};
use crate::error::{json_path, ConfigError, ConfigErrors, PathStep};
use crate::router::RouteIndex;

pub const MAX_ROUTES: usize = 1024;
pub const MAX_VARIANTS: usize = 16;
/// Compiled size limit for one `matches` regex.
pub const MAX_REGEX_SIZE: usize = 256 * 1024;
/// Fewest characters of a seal: 22 of the base64url alphabet carry 132 bits.
pub const MIN_SEAL_LEN: usize = 22;
/// Fewest characters of a seal written in hexadecimal digits only: 32 carry 128 bits.
pub const MIN_HEX_SEAL_LEN: usize = 32;
/// Most characters of a seal: it travels in a header on every decided request.
pub const MAX_SEAL_LEN: usize = 128;
/// Identity cookie lifetime when `maxAge` is not set: 30 days.
pub const DEFAULT_COOKIE_MAX_AGE: u64 = 30 * 24 * 3600;

#[derive(Debug)]
pub struct RoutingTable {
    /// Lowercase header name the decision is written to.
    pub decision_header: String,
    pub debug_header: bool,
    /// `metrics.responses`: count responses and record `upstream_time` per variant.
    pub response_metrics: bool,
    pub routes: Vec<Route>,
    pub(crate) index: RouteIndex,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub path_prefixes: Vec<String>,
    pub variants: Vec<Variant>,
    pub targeting: Vec<TargetingRule>,
    pub stickiness: Stickiness,
    /// Every header and cookie the route reads, each once.
    pub sources: RouteSources,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub weight: Weight,
    /// What the filter writes into the decision header: `<name>.<seal>`, or the name alone
    /// when the configuration has no seal. Computed once, when the table is built.
    pub decision_value: String,
}

/// Shows the name and weight, never the seal inside the decision value.
impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

/// Checks a seal: [`MIN_SEAL_LEN`] to [`MAX_SEAL_LEN`] characters of the base64url alphabet
/// (`A-Z a-z 0-9 - _`), at least [`MIN_HEX_SEAL_LEN`] when they are all hexadecimal digits.
/// The reason never quotes the seal, which is a secret.
pub fn check_seal(seal: &str) -> Result<(), String> {
    const ALPHABET: &str = "characters of A-Z, a-z, 0-9, '-' and '_'";
    if !seal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "must be {MIN_SEAL_LEN} to {MAX_SEAL_LEN} {ALPHABET} (the seal is not shown)"
        ));
    }
    let len = seal.len();
    let hex = seal.bytes().all(|b| b.is_ascii_hexdigit());
    let min = if hex { MIN_HEX_SEAL_LEN } else { MIN_SEAL_LEN };
    if len < min {
        let what = if hex {
            "hexadecimal digits"
        } else {
            "base64url characters"
        };
        return Err(format!(
            "is too short: {len} {what} carry fewer than 128 bits; at least {min} are needed \
             (`canaryctl seal` makes one)"
        ));
    }
    if len > MAX_SEAL_LEN {
        return Err(format!(
            "is too long: {len} characters; at most {MAX_SEAL_LEN}"
        ));
    }
    Ok(())
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
}

/// Where a value is read from on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header, by lowercase name; its first value.
    Header(String),
    /// A cookie, by exact name, from any `cookie` header.
    Cookie(String),
}

/// The distinct headers and cookies one route reads: its targeting sources, identity keys and
/// identity cookie. A request's values for all of them are found in one pass over its headers,
/// and the `cookie` headers parsed once, however many rules read the same source.
#[derive(Debug, Default)]
pub struct RouteSources {
    sources: Vec<Source>,
    /// Bit `n % 64` is set for each header name of length `n`: most request headers are passed
    /// over on their length alone.
    header_lengths: u64,
    reads_cookies: bool,
}

/// A source's place among its route's [`RouteSources`], and its value's among a request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub usize);

impl RouteSources {
    /// The slot of `source`, added if the route does not read it yet.
    fn add(&mut self, source: &Source) -> Slot {
        if let Some(i) = self.sources.iter().position(|s| s == source) {
            return Slot(i);
        }
        match source {
            Source::Header(name) => self.header_lengths |= 1 << (name.len() % 64),
            Source::Cookie(_) => self.reads_cookies = true,
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

    /// The slot of header `name` (lowercase), if the route reads it.
    pub fn header(&self, name: &str) -> Option<Slot> {
        if self.header_lengths & (1 << (name.len() % 64)) == 0 {
            return None;
        }
        self.sources
            .iter()
            .position(|s| matches!(s, Source::Header(n) if n.len() == name.len() && n == name))
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
    fn new(mut values: Vec<Vec<u8>>) -> Self {
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
    /// Where the identity is looked for, in order: the keys', then the identity cookie's slot.
    pub identity: Vec<Slot>,
}

impl Route {
    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.name == name)
    }

    /// The variant an identity hashes to on this route (see [`crate::assign`]).
    pub fn assign(&self, identity: &[u8]) -> usize {
        crate::assign::assign(
            self.stickiness.salt.as_bytes(),
            identity,
            self.variants.iter().map(|v| (v.name.as_bytes(), v.weight)),
        )
    }
}

impl RoutingTable {
    /// The index of the first route, in configuration order, matching `authority` and `path`.
    pub(crate) fn route_for(&self, authority: &[u8], path: &[u8]) -> Option<usize> {
        let prefixes = |i: usize| self.routes.get(i).map(|r| r.path_prefixes.as_slice());
        self.index.find(prefixes, authority, path)
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }
}

impl TryFrom<&PluginConfig> for RoutingTable {
    type Error = ConfigErrors;

    /// Compiles a copy of the configuration, for callers that keep theirs.
    fn try_from(config: &PluginConfig) -> Result<Self, ConfigErrors> {
        RoutingTable::try_from(config.clone())
    }
}

impl TryFrom<PluginConfig> for RoutingTable {
    type Error = ConfigErrors;

    /// Compiles the configuration, moving its strings into the table rather than copying them.
    fn try_from(config: PluginConfig) -> Result<Self, ConfigErrors> {
        let PluginConfig {
            decision_header,
            debug_header,
            seal,
            metrics,
            routes: configs,
        } = config;
        let mut errors = Errors::default();
        let decision_header =
            header_name(&mut errors, &At::root("decisionHeader"), decision_header);
        if let Some(Err(reason)) = seal.as_deref().map(check_seal) {
            errors.push(&At::root("seal"), reason);
        }

        let at = At::root("routes");
        match configs.len() {
            0 => errors.push(&at, "must have at least one route"),
            n if n > MAX_ROUTES => errors.push(
                &at,
                format!("has {n} routes; at most {MAX_ROUTES} are allowed"),
            ),
            _ => {}
        }
        let mut duplicates = duplicates(&configs, |r| &r.name).into_iter().peekable();
        let mut routes = Vec::with_capacity(configs.len());
        let mut hosts_per_route = Vec::with_capacity(configs.len());
        for (i, mut route) in configs.into_iter().enumerate() {
            let at = at.index(i);
            check_name(&mut errors, &at.key("name"), &route.name);
            if let Some((_, first)) = duplicates.next_if(|(d, _)| *d == i) {
                errors.push(
                    &at.key("name"),
                    format!(
                        "duplicate route name {:?} (also routes[{first}])",
                        route.name
                    ),
                );
            }
            let hosts = route.matcher.as_mut().and_then(|m| m.hosts.take());
            if let Some(r) = compile_route(
                &mut errors,
                &at,
                route,
                hosts.as_deref(),
                &decision_header,
                seal.as_deref(),
            ) {
                routes.push(r);
            }
            hosts_per_route.push(hosts.unwrap_or_default());
        }
        errors.into_result()?;
        let index = RouteIndex::build(hosts_per_route);
        Ok(RoutingTable {
            decision_header,
            debug_header,
            response_metrics: metrics.responses,
            routes,
            index,
        })
    }
}

/// Compiles one route; its hosts, taken out of its `match`, are checked here and indexed by the
/// caller.
fn compile_route(
    errors: &mut Errors,
    at: &At<'_>,
    route: RouteConfig,
    hosts: Option<&[String]>,
    decision_header: &str,
    seal: Option<&str>,
) -> Option<Route> {
    let before = errors.len();
    let RouteConfig {
        name,
        matcher,
        variants,
        targeting: rules,
        stickiness,
    } = route;
    let at_match = at.key("match");
    if let Some(hosts) = hosts {
        let at = at_match.key("hosts");
        if hosts.is_empty() {
            errors.push(&at, "must not be empty (leave it out to match any host)");
        }
        for (j, host) in hosts.iter().enumerate() {
            if let Err(reason) = check_host(host) {
                errors.push(&at.index(j), reason);
            }
        }
    }
    let path_prefixes = matcher.and_then(|m| m.path_prefixes);
    if let Some(prefixes) = &path_prefixes {
        let at = at_match.key("pathPrefixes");
        if prefixes.is_empty() {
            errors.push(&at, "must not be empty (leave it out to match any path)");
        }
        for (j, prefix) in prefixes.iter().enumerate() {
            if !prefix.starts_with('/') {
                errors.push(&at.index(j), format!("{prefix:?} must start with '/'"));
            }
        }
    }

    let variants = compile_variants(errors, &at.key("variants"), variants, seal);
    let mut sources = RouteSources::default();
    let at_targeting = at.key("targeting");
    let mut targeting = Vec::with_capacity(rules.len());
    let mut duplicates = duplicates(&rules, |r| &r.name).into_iter().peekable();
    for (j, rule) in rules.into_iter().enumerate() {
        let at = at_targeting.index(j);
        // Reported after the rule's own errors.
        let duplicate = duplicates.next_if(|(d, _)| *d == j).map(|(_, first)| {
            format!(
                "duplicate rule name {:?} (also targeting[{first}])",
                rule.name
            )
        });
        if let Some(rule) =
            compile_rule(errors, &at, rule, &variants, decision_header, &mut sources)
        {
            targeting.push(rule);
        }
        if let Some(reason) = duplicate {
            errors.push(&at.key("name"), reason);
        }
    }
    let stickiness = compile_stickiness(
        errors,
        &at.key("stickiness"),
        stickiness.unwrap_or_default(),
        &name,
        decision_header,
        &mut sources,
    );

    (errors.len() == before).then(|| Route {
        name,
        path_prefixes: path_prefixes.unwrap_or_default(),
        variants,
        targeting,
        stickiness,
        sources,
    })
}

/// Every variant, in order (one with an invalid weight has weight 0 and an error recorded), so
/// that rules find variants at their configured positions.
fn compile_variants(
    errors: &mut Errors,
    at: &At<'_>,
    variants: Vec<VariantConfig>,
    seal: Option<&str>,
) -> Vec<Variant> {
    match variants.len() {
        0 => errors.push(at, "must have at least one variant"),
        n if n > MAX_VARIANTS => errors.push(
            at,
            format!("has {n} variants; at most {MAX_VARIANTS} are allowed"),
        ),
        _ => {}
    }
    let mut duplicates = duplicates(&variants, |v| &v.name).into_iter().peekable();
    let mut total: u64 = 0;
    let mut all_weights_valid = true;
    let mut compiled = Vec::with_capacity(variants.len());
    for (k, variant) in variants.into_iter().enumerate() {
        let at = at.index(k);
        check_name(errors, &at.key("name"), &variant.name);
        if let Some((_, first)) = duplicates.next_if(|(d, _)| *d == k) {
            errors.push(
                &at.key("name"),
                format!(
                    "duplicate variant name {:?} (also variants[{first}])",
                    variant.name
                ),
            );
        }
        let weight = match parse_weight(variant.weight) {
            Ok(weight) => {
                total += u64::from(weight.0);
                weight
            }
            Err(reason) => {
                all_weights_valid = false;
                errors.push(&at.key("weight"), reason);
                Weight(0)
            }
        };
        let decision_value = match seal {
            Some(seal) => [variant.name.as_str(), ".", seal].concat(),
            None => variant.name.clone(),
        };
        compiled.push(Variant {
            name: variant.name,
            weight,
            decision_value,
        });
    }
    if all_weights_valid && !compiled.is_empty() && total != u64::from(Weight::FULL.0) {
        errors.push(
            at,
            format!("weights must sum to 100, not {}", percent(total)),
        );
    }
    compiled
}

/// A percentage with at most three decimals, as thousandths of a percent.
pub fn parse_weight(weight: f64) -> Result<Weight, String> {
    if !(0.0..=100.0).contains(&weight) {
        return Err(format!(
            "must be between 0 and 100, not {}",
            decimal(weight)
        ));
    }
    let thousandths = (weight * 1000.0).round();
    if (weight * 1000.0 - thousandths).abs() > 1e-6 {
        return Err(format!(
            "{} has more than 3 decimals (the resolution is 0.001 %)",
            decimal(weight)
        ));
    }
    // In range by the check above: 0 ..= 100_000.
    Ok(Weight(thousandths as u32))
}

/// Thousandths of a percent as a percentage: `110`, `99.5`.
fn percent(thousandths: u64) -> String {
    let (whole, fraction) = (thousandths / 1000, thousandths % 1000);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:03}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// A number as the shortest decimal that reads back as the same `f64`: `130`, `33.3335`, and
/// `1e300` or `5e-324` for values too large or too small to write out.
pub fn decimal(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude >= 1e16 || (magnitude != 0.0 && magnitude < 1e-7) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

fn compile_rule(
    errors: &mut Errors,
    at: &At<'_>,
    rule: TargetingRuleConfig,
    variants: &[Variant],
    decision_header: &str,
    sources: &mut RouteSources,
) -> Option<TargetingRule> {
    let before = errors.len();
    let TargetingRuleConfig {
        name,
        header,
        cookie,
        equals,
        one_of,
        prefix,
        matches,
        present,
        variant,
    } = rule;
    check_name(errors, &at.key("name"), &name);
    let source = compile_source(errors, at, (header, cookie), decision_header, "target on");

    let count = [
        equals.is_some(),
        one_of.is_some(),
        prefix.is_some(),
        matches.is_some(),
        present.is_some(),
    ]
    .iter()
    .filter(|p| **p)
    .count();
    // With more than one predicate (an error), the last one is kept.
    let mut predicate = None;
    if let Some(v) = equals {
        predicate = Some(Predicate::Equals(v.into_bytes()));
    }
    if let Some(values) = one_of {
        if values.is_empty() {
            errors.push(&at.key("in"), "must list at least one value");
        }
        predicate = Some(Predicate::In(ValueSet::new(
            values.into_iter().map(String::into_bytes).collect(),
        )));
    }
    if let Some(v) = prefix {
        predicate = Some(Predicate::Prefix(v.into_bytes()));
    }
    if let Some(pattern) = matches {
        // Classes such as \d and \w are ASCII; `.` is any character. Matching takes time
        // linear in the value's length.
        match RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(MAX_REGEX_SIZE)
            .build()
        {
            Ok(regex) => predicate = Some(Predicate::Matches(regex)),
            Err(e) => errors.push(
                &at.key("matches"),
                format!("invalid regex: {}", one_line(&e.to_string())),
            ),
        }
    }
    if let Some(present) = present {
        predicate = Some(Predicate::Present(present));
    }
    match count {
        0 => errors.push(
            at,
            "needs a predicate: one of equals, in, prefix, matches, present",
        ),
        1 => {}
        _ => errors.push(
            at,
            "has more than one predicate; use exactly one of equals, in, prefix, matches, present",
        ),
    }

    let index = variants.iter().position(|v| v.name == variant);
    if index.is_none() {
        errors.push(&at.key("variant"), format!("unknown variant {variant:?}"));
    }
    if errors.len() != before {
        return None;
    }
    let source = source?;
    Some(TargetingRule {
        name,
        slot: sources.add(&source),
        source,
        predicate: predicate?,
        variant: index?,
    })
}

fn compile_stickiness(
    errors: &mut Errors,
    at: &At<'_>,
    stickiness: StickinessConfig,
    route_name: &str,
    decision_header: &str,
    sources: &mut RouteSources,
) -> Stickiness {
    let at_keys = at.key("keys");
    let keys: Vec<Source> = stickiness
        .keys
        .into_iter()
        .enumerate()
        .filter_map(|(j, key)| compile_key(errors, &at_keys.index(j), key, decision_header))
        .collect();
    let cookie = stickiness
        .cookie
        .map(|c| compile_cookie(errors, &at.key("cookie"), c));
    let mut identity: Vec<Slot> = keys.iter().map(|key| sources.add(key)).collect();
    if let Some(c) = &cookie {
        identity.push(sources.add(&Source::Cookie(c.name.clone())));
    }
    let salt = match stickiness.salt {
        Some(salt) if salt.is_empty() => {
            errors.push(
                &at.key("salt"),
                "must not be empty (leave it out to use the route name)",
            );
            salt
        }
        Some(salt) => salt,
        None => route_name.to_owned(),
    };
    Stickiness {
        keys,
        cookie,
        salt,
        identity,
    }
}

fn compile_key(
    errors: &mut Errors,
    at: &At<'_>,
    key: KeyConfig,
    decision_header: &str,
) -> Option<Source> {
    compile_source(
        errors,
        at,
        (key.header, key.cookie),
        decision_header,
        "use as an identity",
    )
}

/// A value's source, for a targeting rule or an identity key: exactly one of a header (not the
/// decision header, which the filter removes from every request) or a cookie.
fn compile_source(
    errors: &mut Errors,
    at: &At<'_>,
    (header, cookie): (Option<String>, Option<String>),
    decision_header: &str,
    purpose: &str,
) -> Option<Source> {
    match (header, cookie) {
        (Some(h), None) => {
            let name = header_name(errors, &at.key("header"), h);
            if name == decision_header {
                errors.push(
                    &at.key("header"),
                    format!("cannot {purpose} the decision header: the filter removes it from every request"),
                );
            }
            Some(Source::Header(name))
        }
        (None, Some(c)) => {
            if !cookie::is_valid_name(&c) {
                errors.push(
                    &at.key("cookie"),
                    format!("{c:?} is not a valid cookie name"),
                );
            }
            Some(Source::Cookie(c))
        }
        (None, None) => {
            errors.push(at, "needs a source: one of header, cookie");
            None
        }
        (Some(_), Some(_)) => {
            errors.push(at, "has both header and cookie; use exactly one");
            None
        }
    }
}

fn compile_cookie(errors: &mut Errors, at: &At<'_>, c: IdentityCookieConfig) -> IdentityCookie {
    if !cookie::is_valid_name(&c.name) {
        errors.push(
            &at.key("name"),
            format!("{:?} is not a valid cookie name", c.name),
        );
    }
    let max_age = c.max_age.unwrap_or(DEFAULT_COOKIE_MAX_AGE);
    if max_age == 0 {
        errors.push(
            &at.key("maxAge"),
            "must be at least 1 second (0 deletes the cookie)",
        );
    }
    let cookie_path = c.path.as_deref().unwrap_or("/");
    if !cookie_path.starts_with('/')
        || cookie_path
            .bytes()
            .any(|b| b == b';' || !(0x21..0x7f).contains(&b))
    {
        errors.push(
            &at.key("path"),
            format!(
                "{cookie_path:?} must start with '/' and hold no ';', spaces or control characters"
            ),
        );
    }
    let secure = c.secure.unwrap_or(false);
    let same_site = c.same_site.unwrap_or(SameSite::Lax);
    if same_site == SameSite::None && !secure {
        errors.push(
            &at.key("sameSite"),
            "None requires secure: true (browsers drop such cookies otherwise)",
        );
    }
    IdentityCookie::new(
        c.name,
        max_age,
        cookie_path,
        secure,
        c.http_only.unwrap_or(true),
        same_site,
    )
}

/// The items whose name appeared earlier in the list, each with the index of the latest earlier
/// one, in order. Short lists (a route's variants and rules) are scanned, which allocates
/// nothing when there is no duplicate; long ones (the routes) go through a hash map.
fn duplicates<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    if items.len() <= 16 {
        for (i, item) in items.iter().enumerate() {
            let earlier = items.get(..i).unwrap_or_default();
            if let Some(first) = earlier.iter().rposition(|e| name(e) == name(item)) {
                found.push((i, first));
            }
        }
    } else {
        let mut seen = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(first) = seen.insert(name(item), i) {
                found.push((i, first));
            }
        }
    }
    found
}

/// Route, variant and rule names: `[a-z0-9-]{1,63}`; they appear in metric names.
fn check_name(errors: &mut Errors, at: &At<'_>, name: &str) {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        errors.push(
            at,
            format!("{name:?} must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9 and '-'"),
        );
    }
}

/// A request header name, lowercased as Envoy presents it.
fn header_name(errors: &mut Errors, at: &At<'_>, mut name: String) -> String {
    if name.is_empty() || !name.bytes().all(cookie::is_token_byte) {
        errors.push(at, format!("{name:?} is not a valid HTTP header name"));
    }
    name.make_ascii_lowercase();
    name
}

fn check_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host == "*" {
        return Ok(());
    }
    if name.is_empty() {
        return Err(format!("{host:?} is not a host name"));
    }
    if name.contains('*') {
        return Err(format!(
            "{host:?}: a wildcard is allowed only as a leading '*.' or as '*' alone"
        ));
    }
    if name.contains(':') && !name.starts_with('[') {
        return Err(format!(
            "{host:?}: hosts are matched without the port; leave out ':port'"
        ));
    }
    if name
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b == b'/' || !b.is_ascii())
    {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where in the configuration compilation is: a chain of steps on the stack, from the key at the
/// top level down. It costs nothing to build; the path is written out
/// (`routes[3].variants[0].weight`) only when an error is recorded.
#[derive(Clone, Copy)]
struct At<'p> {
    parent: Option<&'p At<'p>>,
    step: PathStep<'static>,
}

impl<'p> At<'p> {
    fn root(key: &'static str) -> At<'static> {
        At {
            parent: None,
            step: PathStep::Key(key),
        }
    }

    fn key(&'p self, key: &'static str) -> At<'p> {
        At {
            parent: Some(self),
            step: PathStep::Key(key),
        }
    }

    fn index(&'p self, index: usize) -> At<'p> {
        At {
            parent: Some(self),
            step: PathStep::Index(index),
        }
    }

    fn path(&self) -> String {
        let mut steps = Vec::new();
        let mut at = Some(self);
        while let Some(a) = at {
            steps.push(a.step);
            at = a.parent;
        }
        json_path(steps.into_iter().rev())
    }
}

/// Errors collected in document order.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, at: &At<'_>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(at.path(), reason));
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_in_messages_read_as_written() {
        for (x, text) in [
            (130.0, "130"),
            (-1.0, "-1"),
            (0.0, "0"),
            (100.5, "100.5"),
            (33.3335, "33.3335"),
            (89.9995, "89.9995"),
            (0.0001, "0.0001"),
            (1e-7, "0.0000001"),
            (123456789012345.0, "123456789012345"),
            (1e300, "1e300"),
            (-1.5e-300, "-1.5e-300"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(decimal(x), text);
        }
        assert_eq!(
            parse_weight(130.0),
            Err("must be between 0 and 100, not 130".to_owned())
        );
        assert_eq!(
            parse_weight(33.3335),
            Err("33.3335 has more than 3 decimals (the resolution is 0.001 %)".to_owned())
        );
        assert_eq!(
            [
                percent(110_000),
                percent(99_500),
                percent(100_001),
                percent(0)
            ],
            ["110", "99.5", "100.001", "0"]
        );
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

    proptest! {
        /// The same number (to 15 digits in exponent form, for extreme values); for numbers
        /// written with a few decimals, what `{}` writes.
        #[test]
        fn decimal_reads_back(bits in any::<u64>(), whole in -1_000_000i64..1_000_000, decimals in 0u32..5) {
            let x = f64::from_bits(bits);
            let read: f64 = decimal(x).parse().unwrap_or(f64::NAN);
            if x == 0.0 || (1e-7..1e15).contains(&x.abs()) {
                prop_assert_eq!(read, x);
            } else if x.is_finite() {
                prop_assert!(((read - x) / x).abs() < 1e-14, "{} for {:e}", decimal(x), x);
            }
            let typed = format!("{whole}.{:0width$}", bits % 10u64.pow(decimals), width = decimals as usize);
            let x: f64 = typed.parse().unwrap();
            prop_assert_eq!(decimal(x), format!("{x}"));
        }
    }
}
