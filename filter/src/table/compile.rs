//! Compiling a [`PluginConfig`] into a [`RoutingTable`], every error recorded at its JSON
//! path.

use regex_lite::RegexBuilder;

use super::lane::Lanes;
use super::ramp::{parse_time, Ramp};
use super::route::{
    PinUpdate, Pins, Predicate, Route, RouteSources, Slot, Source, Stickiness, TargetingRule,
    ValueSet, Variant, VariantId,
};
use super::validate::{
    check_host, check_name, check_seal, check_secret, duplicates, header_name, one_line,
    parse_weight, percent, At, Errors,
};
use super::{
    RoutingTable, DEFAULT_COOKIE_MAX_AGE, DEFAULT_PIN_COOKIE_PREFIX, DEFAULT_PIN_MAX_AGE,
    MAX_PREVIOUS_SECRETS, MAX_REGEX_SIZE, MAX_ROUTES, MAX_VARIANTS,
};
use crate::assign::Weight;
use crate::carried::{PinCookie, SessionCookie};
use crate::config::{
    IdentityCookieConfig, KeyConfig, PluginConfig, RampConfig, RouteConfig, SameSite,
    StickinessConfig, StickinessMode, TargetingRuleConfig, VariantConfig,
};
use crate::cookie::{self, Attributes, IdentityCookie, Signer};
use crate::duration::parse_duration;
use crate::error::ConfigErrors;
use crate::router::RouteIndex;

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
        let variants = routes.iter_mut().flat_map(|r| r.variants.iter_mut());
        for (id, variant) in variants.enumerate() {
            variant.id = VariantId(id);
        }
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
        ramp,
        trust_incoming,
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
    let ramp = ramp.and_then(|r| compile_ramp(errors, &at.key("ramp"), r, &variants));
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
    let uses_pins = targeting.iter().any(|r| r.pin.is_some());
    let mut stickiness = compile_stickiness(
        errors,
        &at.key("stickiness"),
        stickiness.unwrap_or_default(),
        &name,
        uses_pins,
        decision_header,
        &mut sources,
    );
    let lanes = trust_incoming
        .then(|| {
            let at = at.key("trustIncoming");
            Lanes::compile(
                errors,
                &at,
                decision_header,
                seal,
                variants.len(),
                &targeting,
            )
        })
        .flatten();
    if let Some(pins) = &mut stickiness.pins {
        pins.pinnable = vec![false; variants.len()];
        let pinned = targeting.iter().filter(|r| r.pin == Some(PinUpdate::Set));
        for rule in pinned {
            if let Some(pinnable) = pins.pinnable.get_mut(rule.variant) {
                *pinnable = true;
            }
        }
    }

    (errors.len() == before).then(|| Route {
        name,
        path_prefixes: path_prefixes.unwrap_or_default(),
        variants,
        targeting,
        stickiness,
        sources,
        ramp,
        lanes,
    })
}

/// A ramp of one of `variants` other than the baseline, starting from that variant's configured
/// weight.
fn compile_ramp(
    errors: &mut Errors,
    at: &At<'_>,
    ramp: RampConfig,
    variants: &[Variant],
) -> Option<Ramp> {
    let before = errors.len();
    let variant = match variants.iter().position(|v| v.name == ramp.variant) {
        Some(0) => {
            errors.push(
                &at.key("variant"),
                format!(
                    "{:?} is the baseline; a ramp moves weight between the baseline and another variant",
                    ramp.variant
                ),
            );
            None
        }
        Some(k) => Some(k),
        None => {
            let known: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
            errors.push(
                &at.key("variant"),
                format!(
                    "unknown variant {:?} (variants: {})",
                    ramp.variant,
                    known.join(", ")
                ),
            );
            None
        }
    };
    let weight = |errors: &mut Errors, key: &'static str, value: f64| {
        parse_weight(value)
            .map_err(|reason| errors.push(&at.key(key), reason))
            .ok()
    };
    let from = weight(errors, "from", ramp.from);
    let to = weight(errors, "to", ramp.to);
    let configured = variant.and_then(|k| variants.get(k));
    if let (Some(from), Some(configured)) = (from, configured) {
        if from != configured.weight {
            errors.push(
                &at.key("from"),
                format!(
                    "is {} but variant {:?} has weight {}; a ramp starts from the variant's configured weight",
                    percent(u64::from(from.0)),
                    configured.name,
                    percent(u64::from(configured.weight.0)),
                ),
            );
        }
    }
    if from.is_some() && from == to {
        errors.push(&at.key("to"), "equals from; a ramp must change the weight");
    }
    let start_ms = parse_time(&ramp.start)
        .map_err(|reason| errors.push(&at.key("start"), reason))
        .ok();
    let duration_ms = match parse_duration(&ramp.duration) {
        Ok(d) if d.as_millis() >= 1 => u64::try_from(d.as_millis()).ok(),
        Ok(_) => {
            errors.push(&at.key("duration"), "must be at least 1ms");
            None
        }
        Err(reason) => {
            errors.push(&at.key("duration"), reason);
            None
        }
    };
    if errors.len() != before {
        return None;
    }
    Some(Ramp {
        variant: variant?,
        from: from?,
        to: to?,
        start_ms: start_ms?,
        duration_ms: duration_ms?,
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
            // Numbered across the table once every route is compiled.
            id: VariantId(0),
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
        query,
        equals,
        one_of,
        prefix,
        matches,
        present,
        variant,
        pin,
        unpin,
    } = rule;
    check_name(errors, &at.key("name"), &name);
    if pin && unpin {
        errors.push(at, "has both pin and unpin; use at most one");
    }
    let source = compile_source(
        errors,
        at,
        [
            ("header", header.map(Source::Header)),
            ("cookie", cookie.map(Source::Cookie)),
            ("query", query.map(Source::Query)),
        ],
        decision_header,
        "target on",
    );

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
        pin: match (pin, unpin) {
            (true, _) => Some(PinUpdate::Set),
            (false, true) => Some(PinUpdate::Clear),
            (false, false) => None,
        },
    })
}

/// The route's stickiness; `uses_pins` when one of its rules pins or unpins. The pins' variants
/// are the caller's to mark, from the compiled rules.
fn compile_stickiness(
    errors: &mut Errors,
    at: &At<'_>,
    stickiness: StickinessConfig,
    route_name: &str,
    uses_pins: bool,
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
    let key_slots: Vec<Slot> = keys.iter().map(|key| sources.add(key)).collect();
    let cookie_slot = cookie
        .as_ref()
        .map(|c| sources.add(&Source::Cookie(c.name.clone())));
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
    let signer = cookie.as_ref().and_then(IdentityCookie::signer);
    let session = match stickiness.mode.unwrap_or_default() {
        StickinessMode::Hash => None,
        StickinessMode::Session => {
            let at = at.key("mode");
            match (&cookie, signer) {
                (None, _) => errors.push(
                    &at,
                    "\"session\" needs stickiness.cookie: the identity cookie carries the variant served",
                ),
                (Some(_), None) => errors.push(
                    &at,
                    "\"session\" needs stickiness.cookie.secret: the variant the cookie carries must be signed",
                ),
                (Some(_), Some(_)) => {}
            }
            signer.cloned().map(SessionCookie::new)
        }
    };
    let pins = (uses_pins || stickiness.pin.is_some()).then(|| {
        let pin = stickiness.pin.unwrap_or_default();
        let at = at.key("pin");
        let name = match pin.cookie {
            Some(name) => {
                if !cookie::is_valid_name(&name) {
                    errors.push(
                        &at.key("cookie"),
                        format!("{name:?} is not a valid cookie name"),
                    );
                }
                name
            }
            // A valid name, where the route's name is.
            None => [DEFAULT_PIN_COOKIE_PREFIX, route_name].concat(),
        };
        if cookie.as_ref().is_some_and(|c| c.name == name) {
            errors.push(
                &at.key("cookie"),
                format!("{name:?} is the identity cookie's name; the pin cookie needs its own"),
            );
        }
        let attributes = compile_attributes(
            errors,
            &at,
            Attributes {
                max_age: pin.max_age.unwrap_or(DEFAULT_PIN_MAX_AGE),
                path: pin.path.as_deref().unwrap_or("/"),
                secure: pin.secure.unwrap_or(false),
                http_only: pin.http_only.unwrap_or(true),
                same_site: pin.same_site.unwrap_or(SameSite::Lax),
            },
        );
        let slot = sources.add(&Source::Cookie(name.clone()));
        Pins {
            cookie: PinCookie::new(name, route_name, &attributes, signer.cloned()),
            slot,
            pinnable: Vec::new(),
        }
    });
    Stickiness {
        keys,
        cookie,
        salt,
        key_slots,
        cookie_slot,
        session,
        pins,
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
        [
            ("header", key.header.map(Source::Header)),
            ("cookie", key.cookie.map(Source::Cookie)),
        ],
        decision_header,
        "use as an identity",
    )
}

/// A value's source, for a targeting rule or an identity key: exactly one of the `allowed`
/// sources, each under its JSON field name, is given: a header (not the decision header, which
/// the filter removes from every request), a cookie or a query parameter.
fn compile_source<const N: usize>(
    errors: &mut Errors,
    at: &At<'_>,
    allowed: [(&'static str, Option<Source>); N],
    decision_header: &str,
    purpose: &str,
) -> Option<Source> {
    let kinds = allowed.each_ref().map(|(kind, _)| *kind);
    let mut given = allowed
        .into_iter()
        .filter_map(|(kind, source)| Some((kind, source?)));
    let Some((kind, source)) = given.next() else {
        errors.push(at, format!("needs a source: one of {}", kinds.join(", ")));
        return None;
    };
    let others: Vec<&str> = given.map(|(kind, _)| kind).collect();
    if let Some((last, middle)) = others.split_last() {
        let listed = if middle.is_empty() {
            format!("both {kind} and {last}")
        } else {
            format!("{kind}, {} and {last}", middle.join(", "))
        };
        errors.push(at, format!("has {listed}; use exactly one"));
        return None;
    }
    let at = at.key(kind);
    match source {
        Source::Header(name) => {
            let name = header_name(errors, &at, name);
            if name == decision_header {
                errors.push(
                    &at,
                    format!("cannot {purpose} the decision header: the filter removes it from every request"),
                );
            }
            Some(Source::Header(name))
        }
        Source::Cookie(name) => {
            if !cookie::is_valid_name(&name) {
                errors.push(&at, format!("{name:?} is not a valid cookie name"));
            }
            Some(Source::Cookie(name))
        }
        Source::Query(name) => {
            if name.is_empty() {
                errors.push(&at, "must name a query parameter");
            }
            Some(Source::Query(name))
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
    let attributes = compile_attributes(
        errors,
        at,
        Attributes {
            max_age: c.max_age.unwrap_or(DEFAULT_COOKIE_MAX_AGE),
            path: c.path.as_deref().unwrap_or("/"),
            secure: c.secure.unwrap_or(false),
            http_only: c.http_only.unwrap_or(true),
            same_site: c.same_site.unwrap_or(SameSite::Lax),
        },
    );
    let cookie = IdentityCookie::new(
        c.name,
        attributes.max_age,
        attributes.path,
        attributes.secure,
        attributes.http_only,
        attributes.same_site,
    );
    match compile_signer(errors, at, c.secret.as_deref(), &c.previous_secrets) {
        Some(signer) => cookie.signed_by(signer),
        None => cookie,
    }
}

/// The attributes of a cookie the filter sets, each checked at its field under `at`.
fn compile_attributes<'c>(
    errors: &mut Errors,
    at: &At<'_>,
    attributes: Attributes<'c>,
) -> Attributes<'c> {
    if attributes.max_age == 0 {
        errors.push(
            &at.key("maxAge"),
            "must be at least 1 second (0 deletes the cookie)",
        );
    }
    let path = attributes.path;
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b == b';' || !(0x21..0x7f).contains(&b))
    {
        errors.push(
            &at.key("path"),
            format!("{path:?} must start with '/' and hold no ';', spaces or control characters"),
        );
    }
    if attributes.same_site == SameSite::None && !attributes.secure {
        errors.push(
            &at.key("sameSite"),
            "None requires secure: true (browsers drop such cookies otherwise)",
        );
    }
    attributes
}

/// The signer of `secret` and `previous` secrets, each checked as a seal is; no error ever
/// quotes one.
fn compile_signer(
    errors: &mut Errors,
    at: &At<'_>,
    secret: Option<&str>,
    previous: &[String],
) -> Option<Signer> {
    let at_previous = at.key("previousSecrets");
    if previous.len() > MAX_PREVIOUS_SECRETS {
        errors.push(
            &at_previous,
            format!(
                "has {} secrets; at most {MAX_PREVIOUS_SECRETS} are allowed",
                previous.len()
            ),
        );
    }
    let Some(secret) = secret else {
        if !previous.is_empty() {
            errors.push(
                &at_previous,
                "needs secret: previous secrets only verify cookies signed before the secret was rotated",
            );
        }
        return None;
    };
    if let Err(reason) = check_secret(secret) {
        errors.push(&at.key("secret"), reason);
    }
    for (k, key) in previous.iter().enumerate() {
        let at = at_previous.index(k);
        if let Err(reason) = check_secret(key) {
            errors.push(&at, reason);
        } else if key == secret {
            errors.push(&at, "is the same as secret (the secret is not shown)");
        } else if let Some(first) = previous.iter().take(k).position(|p| p == key) {
            errors.push(
                &at,
                format!("is the same as previousSecrets[{first}] (the secret is not shown)"),
            );
        }
    }
    Signer::new(secret, previous.iter().map(String::as_str))
}
