//! The compiled configuration: validated, indexed, ready for per-request use.
//!
//! Everything that can be checked or precomputed is done here, once, at configuration time:
//! names validated, header names lowercased, regexes compiled, weights turned into integers,
//! hosts indexed, `Set-Cookie` attributes rendered.

use std::collections::{HashMap, HashSet};

use regex_lite::{Regex, RegexBuilder};

use crate::assign::Weight;
use crate::config::{
    IdentityCookieConfig, KeyConfig, PluginConfig, RouteConfig, SameSite, StickinessConfig,
    TargetingRuleConfig, VariantConfig,
};
use crate::cookie::{self, IdentityCookie};
use crate::error::{ConfigError, ConfigErrors};
use crate::router::RouteIndex;

pub const MAX_ROUTES: usize = 1024;
pub const MAX_VARIANTS: usize = 16;
pub const MAX_NAME_LEN: usize = 63;
/// Compiled size limit for one `matches` regex.
pub const MAX_REGEX_SIZE: usize = 256 * 1024;
/// Identity cookie lifetime when `maxAge` is not set: 30 days.
pub const DEFAULT_COOKIE_MAX_AGE: u64 = 30 * 24 * 3600;

#[derive(Debug)]
pub struct RoutingTable {
    /// Lowercase header name the decision is written to.
    pub decision_header: String,
    pub debug_header: bool,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub weight: Weight,
}

#[derive(Debug)]
pub struct TargetingRule {
    pub name: String,
    pub source: Source,
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

#[derive(Debug)]
pub enum Predicate {
    Equals(Vec<u8>),
    In(HashSet<Vec<u8>>),
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

#[derive(Debug)]
pub struct Stickiness {
    pub keys: Vec<Source>,
    pub cookie: Option<IdentityCookie>,
    pub salt: String,
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
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }
}

impl TryFrom<&PluginConfig> for RoutingTable {
    type Error = ConfigErrors;

    fn try_from(config: &PluginConfig) -> Result<Self, ConfigErrors> {
        let mut errors = Errors::default();
        let decision_header = header_name(&mut errors, "decisionHeader", &config.decision_header);

        match config.routes.len() {
            0 => errors.push("routes", "must have at least one route"),
            n if n > MAX_ROUTES => errors.push(
                "routes",
                format!("has {n} routes; at most {MAX_ROUTES} are allowed"),
            ),
            _ => {}
        }
        let mut seen = HashMap::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            let path = format!("routes[{i}]");
            check_name(&mut errors, &format!("{path}.name"), &route.name);
            if let Some(first) = seen.insert(route.name.as_str(), i) {
                errors.push(
                    format!("{path}.name"),
                    format!(
                        "duplicate route name {:?} (also routes[{first}])",
                        route.name
                    ),
                );
            }
            if let Some(r) = compile_route(&mut errors, &path, route, &decision_header) {
                routes.push(r);
            }
        }
        errors.into_result()?;
        let index = RouteIndex::build(config.routes.iter().map(|r| {
            r.matcher
                .as_ref()
                .and_then(|m| m.hosts.as_deref())
                .unwrap_or_default()
        }));
        Ok(RoutingTable {
            decision_header,
            debug_header: config.debug_header,
            routes,
            index,
        })
    }
}

fn compile_route(
    errors: &mut Errors,
    path: &str,
    route: &RouteConfig,
    decision_header: &str,
) -> Option<Route> {
    let before = errors.len();
    let matcher = route.matcher.clone().unwrap_or_default();
    if let Some(hosts) = &matcher.hosts {
        let p = format!("{path}.match.hosts");
        if hosts.is_empty() {
            errors.push(&p, "must not be empty (leave it out to match any host)");
        }
        for (j, host) in hosts.iter().enumerate() {
            if let Err(reason) = check_host(host) {
                errors.push(format!("{p}[{j}]"), reason);
            }
        }
    }
    if let Some(prefixes) = &matcher.path_prefixes {
        let p = format!("{path}.match.pathPrefixes");
        if prefixes.is_empty() {
            errors.push(&p, "must not be empty (leave it out to match any path)");
        }
        for (j, prefix) in prefixes.iter().enumerate() {
            if !prefix.starts_with('/') {
                errors.push(
                    format!("{p}[{j}]"),
                    format!("{prefix:?} must start with '/'"),
                );
            }
        }
    }

    let variants = compile_variants(errors, path, &route.variants);
    let targeting = route
        .targeting
        .iter()
        .enumerate()
        .filter_map(|(j, rule)| {
            let p = format!("{path}.targeting[{j}]");
            compile_rule(errors, &p, rule, &route.variants, decision_header)
        })
        .collect::<Vec<_>>();
    let mut rule_names = HashMap::new();
    for (j, rule) in route.targeting.iter().enumerate() {
        if let Some(first) = rule_names.insert(rule.name.as_str(), j) {
            errors.push(
                format!("{path}.targeting[{j}].name"),
                format!(
                    "duplicate rule name {:?} (also targeting[{first}])",
                    rule.name
                ),
            );
        }
    }
    let default = StickinessConfig::default();
    let stickiness = compile_stickiness(
        errors,
        &format!("{path}.stickiness"),
        route.stickiness.as_ref().unwrap_or(&default),
        &route.name,
        decision_header,
    );

    (errors.len() == before).then(|| Route {
        name: route.name.clone(),
        path_prefixes: matcher.path_prefixes.unwrap_or_default(),
        variants,
        targeting,
        stickiness,
    })
}

fn compile_variants(errors: &mut Errors, path: &str, variants: &[VariantConfig]) -> Vec<Variant> {
    let p = format!("{path}.variants");
    match variants.len() {
        0 => errors.push(&p, "must have at least one variant"),
        n if n > MAX_VARIANTS => errors.push(
            &p,
            format!("has {n} variants; at most {MAX_VARIANTS} are allowed"),
        ),
        _ => {}
    }
    let mut seen = HashMap::new();
    let mut total: u64 = 0;
    let mut all_weights_valid = true;
    let mut compiled = Vec::with_capacity(variants.len());
    for (k, variant) in variants.iter().enumerate() {
        let vp = format!("{p}[{k}]");
        check_name(errors, &format!("{vp}.name"), &variant.name);
        if let Some(first) = seen.insert(variant.name.as_str(), k) {
            errors.push(
                format!("{vp}.name"),
                format!(
                    "duplicate variant name {:?} (also variants[{first}])",
                    variant.name
                ),
            );
        }
        match parse_weight(variant.weight) {
            Ok(weight) => {
                total += u64::from(weight.0);
                compiled.push(Variant {
                    name: variant.name.clone(),
                    weight,
                });
            }
            Err(reason) => {
                all_weights_valid = false;
                errors.push(format!("{vp}.weight"), reason);
            }
        }
    }
    if all_weights_valid && !variants.is_empty() && total != u64::from(Weight::FULL.0) {
        errors.push(
            &p,
            format!(
                "weights must sum to 100, not {}",
                Weight(u32::try_from(total).unwrap_or(u32::MAX)).percent()
            ),
        );
    }
    compiled
}

/// A percentage with at most three decimals, as thousandths of a percent.
pub fn parse_weight(weight: f64) -> Result<Weight, String> {
    if !(0.0..=100.0).contains(&weight) {
        return Err(format!("must be between 0 and 100, not {weight}"));
    }
    let thousandths = (weight * 1000.0).round();
    if (weight * 1000.0 - thousandths).abs() > 1e-6 {
        return Err(format!(
            "{weight} has more than 3 decimals (the resolution is 0.001 %)"
        ));
    }
    // In range by the check above: 0 ..= 100_000.
    Ok(Weight(thousandths as u32))
}

fn compile_rule(
    errors: &mut Errors,
    path: &str,
    rule: &TargetingRuleConfig,
    variants: &[VariantConfig],
    decision_header: &str,
) -> Option<TargetingRule> {
    let before = errors.len();
    check_name(errors, &format!("{path}.name"), &rule.name);
    let source = compile_source(
        errors,
        path,
        (rule.header.as_ref(), rule.cookie.as_ref()),
        decision_header,
        "target on",
    );

    let mut predicates = Vec::new();
    if let Some(v) = &rule.equals {
        predicates.push(Predicate::Equals(v.as_bytes().to_vec()));
    }
    if let Some(values) = &rule.one_of {
        if values.is_empty() {
            errors.push(format!("{path}.in"), "must list at least one value");
        }
        predicates.push(Predicate::In(
            values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        ));
    }
    if let Some(v) = &rule.prefix {
        predicates.push(Predicate::Prefix(v.as_bytes().to_vec()));
    }
    if let Some(pattern) = &rule.matches {
        // Classes such as \d and \w are ASCII; `.` is any character. Matching takes time
        // linear in the value's length.
        match RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(MAX_REGEX_SIZE)
            .build()
        {
            Ok(regex) => predicates.push(Predicate::Matches(regex)),
            Err(e) => errors.push(
                format!("{path}.matches"),
                format!("invalid regex: {}", one_line(&e.to_string())),
            ),
        }
    }
    if let Some(present) = rule.present {
        predicates.push(Predicate::Present(present));
    }
    let count = [
        rule.equals.is_some(),
        rule.one_of.is_some(),
        rule.prefix.is_some(),
        rule.matches.is_some(),
        rule.present.is_some(),
    ]
    .iter()
    .filter(|p| **p)
    .count();
    match count {
        0 => errors.push(
            path,
            "needs a predicate: one of equals, in, prefix, matches, present",
        ),
        1 => {}
        _ => errors.push(
            path,
            "has more than one predicate; use exactly one of equals, in, prefix, matches, present",
        ),
    }

    let variant = variants.iter().position(|v| v.name == rule.variant);
    if variant.is_none() {
        errors.push(
            format!("{path}.variant"),
            format!("unknown variant {:?}", rule.variant),
        );
    }
    if errors.len() != before {
        return None;
    }
    Some(TargetingRule {
        name: rule.name.clone(),
        source: source?,
        predicate: predicates.pop()?,
        variant: variant?,
    })
}

fn compile_stickiness(
    errors: &mut Errors,
    path: &str,
    stickiness: &StickinessConfig,
    route_name: &str,
    decision_header: &str,
) -> Stickiness {
    let keys = stickiness
        .keys
        .iter()
        .enumerate()
        .filter_map(|(j, key)| {
            compile_key(errors, &format!("{path}.keys[{j}]"), key, decision_header)
        })
        .collect();
    let cookie = stickiness
        .cookie
        .as_ref()
        .map(|c| compile_cookie(errors, &format!("{path}.cookie"), c));
    let salt = match &stickiness.salt {
        Some(salt) if salt.is_empty() => {
            errors.push(
                format!("{path}.salt"),
                "must not be empty (leave it out to use the route name)",
            );
            String::new()
        }
        Some(salt) => salt.clone(),
        None => route_name.to_owned(),
    };
    Stickiness { keys, cookie, salt }
}

fn compile_key(
    errors: &mut Errors,
    path: &str,
    key: &KeyConfig,
    decision_header: &str,
) -> Option<Source> {
    compile_source(
        errors,
        path,
        (key.header.as_ref(), key.cookie.as_ref()),
        decision_header,
        "use as an identity",
    )
}

/// A value's source, for a targeting rule or an identity key: exactly one of a header (not the
/// decision header, which the filter removes from every request) or a cookie.
fn compile_source(
    errors: &mut Errors,
    path: &str,
    (header, cookie): (Option<&String>, Option<&String>),
    decision_header: &str,
    purpose: &str,
) -> Option<Source> {
    match (header, cookie) {
        (Some(h), None) => {
            let name = header_name(errors, &format!("{path}.header"), h);
            if name == decision_header {
                errors.push(
                    format!("{path}.header"),
                    format!("cannot {purpose} the decision header: the filter removes it from every request"),
                );
            }
            Some(Source::Header(name))
        }
        (None, Some(c)) => {
            if !cookie::is_valid_name(c) {
                errors.push(
                    format!("{path}.cookie"),
                    format!("{c:?} is not a valid cookie name"),
                );
            }
            Some(Source::Cookie(c.clone()))
        }
        (None, None) => {
            errors.push(path, "needs a source: one of header, cookie");
            None
        }
        (Some(_), Some(_)) => {
            errors.push(path, "has both header and cookie; use exactly one");
            None
        }
    }
}

fn compile_cookie(errors: &mut Errors, path: &str, c: &IdentityCookieConfig) -> IdentityCookie {
    if !cookie::is_valid_name(&c.name) {
        errors.push(
            format!("{path}.name"),
            format!("{:?} is not a valid cookie name", c.name),
        );
    }
    let max_age = c.max_age.unwrap_or(DEFAULT_COOKIE_MAX_AGE);
    if max_age == 0 {
        errors.push(
            format!("{path}.maxAge"),
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
            format!("{path}.path"),
            format!(
                "{cookie_path:?} must start with '/' and hold no ';', spaces or control characters"
            ),
        );
    }
    let secure = c.secure.unwrap_or(false);
    let same_site = c.same_site.unwrap_or(SameSite::Lax);
    if same_site == SameSite::None && !secure {
        errors.push(
            format!("{path}.sameSite"),
            "None requires secure: true (browsers drop such cookies otherwise)",
        );
    }
    IdentityCookie::new(
        c.name.clone(),
        max_age,
        cookie_path,
        secure,
        c.http_only.unwrap_or(true),
        same_site,
    )
}

/// Route, variant and rule names: `[a-z0-9-]{1,63}`; they appear in metric names.
fn check_name(errors: &mut Errors, path: &str, name: &str) {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        errors.push(
            path,
            format!("{name:?} must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9 and '-'"),
        );
    }
}

/// A request header name, lowercased as Envoy presents it.
fn header_name(errors: &mut Errors, path: &str, name: &str) -> String {
    if name.is_empty() || !name.bytes().all(cookie::is_token_byte) {
        errors.push(path, format!("{name:?} is not a valid HTTP header name"));
    }
    name.to_ascii_lowercase()
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

/// Errors collected in document order.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(path, reason));
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
