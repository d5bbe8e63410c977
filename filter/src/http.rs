//! The filter's behaviour on a stream, written against [`Host`] so that it runs the same in
//! Envoy and under the test double.

use std::rc::Rc;

use crate::config;
use crate::host::{Host, LogLevel};
use crate::metrics::{class_of, Metric, Metrics};
use crate::table::{Decision, PinUpdate, Reason, RoutingTable, Variant, VariantId};

/// Response header carrying the decision when `debugHeader` is on.
pub const DEBUG_HEADER: &str = "x-canary-decision";

/// A configuration in force: the routing table and its metrics.
#[derive(Debug)]
pub struct Plugin {
    pub table: RoutingTable,
    metrics: Metrics,
}

impl Plugin {
    pub fn new(table: RoutingTable) -> Self {
        let metrics = Metrics::new(&table);
        Plugin { table, metrics }
    }

    /// Parses a configuration delivered by the host. Every error is logged on its own line,
    /// with its JSON path, and `None` returned so that the host rejects the update.
    pub fn configure(host: &impl Host, context_id: u32, bytes: Option<&[u8]>) -> Option<Plugin> {
        match crate::parse(bytes.unwrap_or_default()) {
            Ok(table) => {
                let routes = table.routes.len();
                host.log(
                    LogLevel::Info,
                    &format!("[canary {context_id}] configuration accepted: {routes} route(s)"),
                );
                Some(Plugin::new(table))
            }
            Err(errors) => {
                for error in errors.iter() {
                    host.log(
                        LogLevel::Error,
                        &format!("[canary {context_id}] configuration rejected: {error}"),
                    );
                }
                None
            }
        }
    }
}

impl Plugin {
    /// Decides a request that no response follows, as the dynamic module's route cluster
    /// specifier does: the decision and its counter, and nothing written to the request. What a
    /// decision asks of the response is dropped, so the configuration must have no
    /// [`RoutingTable::response_needs`]. `None` when no route matches.
    pub fn decide_request(&self, host: &impl Host) -> Option<&Variant> {
        let request = host.request_headers();
        let decision = self
            .table
            .decide(&request, || host.now_millis(), |buf| host.random(buf))?;
        self.metrics
            .increment(host, decision.variant.id, Metric::Decision(decision.reason));
        Some(decision.variant)
    }
}

/// One HTTP stream.
pub struct Stream {
    plugin: Rc<Plugin>,
    context_id: u32,
    /// The request's decision, as the response needs it.
    decided: Option<Decided>,
    started_ms: u64,
}

/// What the response needs of the request's decision, worked out when it was made: the stream
/// holds its configuration by `Rc` and cannot keep a borrow of the route and variant, and the
/// response then looks nothing up.
struct Decided {
    variant: VariantId,
    /// The `Set-Cookie` value handing out an identity.
    set_cookie: Option<Vec<u8>>,
    /// The `Set-Cookie` value that sets or clears the pin cookie.
    pin_cookie: Option<Vec<u8>>,
    /// The [`DEBUG_HEADER`] value, when `debugHeader` is on.
    debug: Option<String>,
}

impl Decided {
    fn new(table: &RoutingTable, decision: &Decision<'_>) -> Self {
        let Decision {
            route,
            variant,
            reason,
            issue_identity,
            pin,
        } = decision;
        let stickiness = &route.stickiness;
        let set_cookie = match (issue_identity, &stickiness.cookie, &stickiness.session) {
            (Some(identity), Some(cookie), Some(session)) => {
                Some(session.set_cookie(cookie, identity, &variant.name))
            }
            (Some(identity), Some(cookie), None) => {
                Some(cookie.with_set_cookie(identity, <[u8]>::to_vec))
            }
            _ => None,
        };
        let pin_cookie = match (pin, &stickiness.pins) {
            (Some(PinUpdate::Set), Some(pins)) => Some(pins.cookie.set_cookie(&variant.name)),
            (Some(PinUpdate::Clear), Some(pins)) => Some(pins.cookie.clear_cookie().to_vec()),
            _ => None,
        };
        let debug = table.debug_header.then(|| {
            let (colon, rule) = match reason {
                Reason::Rule(i) => (":", route.targeting.get(*i).map_or("", |r| r.name.as_str())),
                _ => ("", ""),
            };
            let parts = [
                route.name.as_str(),
                ";",
                variant.name.as_str(),
                ";",
                reason.label(),
                colon,
                rule,
            ];
            parts.concat()
        });
        Decided {
            variant: variant.id,
            set_cookie,
            pin_cookie,
            debug,
        }
    }
}

impl Stream {
    pub fn new(plugin: Rc<Plugin>, context_id: u32) -> Self {
        Stream {
            plugin,
            context_id,
            decided: None,
            started_ms: 0,
        }
    }

    pub fn on_request_headers(&mut self, host: &impl Host) {
        let plugin = Rc::clone(&self.plugin);
        let header = plugin.table.decision_header.as_str();
        // Read from the host in one call: a call into the host costs more than scanning a dozen
        // headers, and a request is decided from several (`:authority`, `:path`, the decision
        // header, identity keys, targeting sources).
        let request = host.request_headers();
        let client_sent = request.header(header).is_some();
        let decision = plugin
            .table
            .decide(&request, || host.now_millis(), |buf| host.random(buf));
        // A lane kept is the header's only value already: the header, and so the route, stay.
        let lane = decision.is_some_and(|d| d.reason == Reason::Lane);
        if client_sent && !lane {
            host.set_request_header(header, None);
        }
        let Some(decision) = decision else {
            if client_sent {
                host.clear_route_cache();
            }
            return;
        };
        if !lane {
            host.set_request_header(header, Some(decision.variant.decision_value.as_bytes()));
            host.clear_route_cache();
        }
        plugin
            .metrics
            .increment(host, decision.variant.id, Metric::Decision(decision.reason));
        let table = &plugin.table;
        if table.response_metrics {
            self.started_ms = host.now_millis();
        }
        // Kept only when the response needs it, so that otherwise the response makes no host
        // call at all.
        if table.response_metrics
            || table.debug_header
            || decision.issue_identity.is_some()
            || decision.pin.is_some()
        {
            self.decided = Some(Decided::new(table, &decision));
        }
    }

    pub fn on_response_headers(&mut self, host: &impl Host) {
        let Some(decided) = self.decided.take() else {
            return;
        };
        for value in [&decided.set_cookie, &decided.pin_cookie]
            .into_iter()
            .flatten()
        {
            host.add_response_header("set-cookie", value);
        }
        if let Some(value) = &decided.debug {
            host.add_response_header(DEBUG_HEADER, value.as_bytes());
        }
        if !self.plugin.table.response_metrics {
            return;
        }
        let metrics = &self.plugin.metrics;
        let status = host
            .response_header(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
        match status.and_then(class_of) {
            Some(class) => metrics.increment(host, decided.variant, Metric::Response(class)),
            None => host.log(
                LogLevel::Debug,
                &format!(
                    "[canary {}] response status {status:?} not counted",
                    self.context_id
                ),
            ),
        }
        let elapsed = host.now_millis().saturating_sub(self.started_ms);
        metrics.record(host, decided.variant, Metric::UpstreamTime, elapsed);
    }
}

/// A request seen while no configuration was ever accepted: nothing is decided, but a decision
/// header the client sent (under the default name, the only one known yet) is removed all the
/// same, every value of it, so that no route can be chosen with it.
pub fn strip_unconfigured(host: &impl Host) {
    let header = config::DEFAULT_DECISION_HEADER;
    if host.request_headers().header(header).is_some() {
        host.set_request_header(header, None);
        host.clear_route_cache();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockHost;

    const CONFIG: &str = r#"{
      "debugHeader": true,
      "routes": [{
        "name": "web",
        "variants": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
        "targeting": [ { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" } ],
        "stickiness": {
          "keys": [ { "header": "x-user-id" } ],
          "cookie": { "name": "canary_id", "maxAge": 60, "secure": true }
        }
      }, {
        "name": "api",
        "match": { "hosts": ["api.example.com"] },
        "variants": [ { "name": "v1", "weight": 100 } ]
      }]
    }"#;

    fn plugin(host: &MockHost) -> Rc<Plugin> {
        Rc::new(Plugin::configure(host, 1, Some(CONFIG.as_bytes())).expect("valid config"))
    }

    fn run(host: &MockHost, plugin: &Rc<Plugin>) {
        let mut stream = Stream::new(Rc::clone(plugin), 2);
        stream.on_request_headers(host);
        host.set_response_header(":status", "200");
        host.advance_millis(7);
        stream.on_response_headers(host);
    }

    #[test]
    fn a_request_decided_without_a_response_is_counted_and_left_as_it_came() {
        let config = r#"{"routes": [{"name": "web",
            "variants": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
            "targeting": [ { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" } ],
            "stickiness": { "keys": [ { "header": "x-user-id" } ] }}]}"#;
        // One host for every request, as one worker: the plugin defines each metric once.
        let host = MockHost::request(&[
            (":authority", "shop"),
            (":path", "/"),
            ("x-canary-variant", "canary"),
        ]);
        let plugin = Plugin::configure(&host, 1, Some(config.as_bytes())).expect("valid");
        let mut counted: Vec<(String, u64)> = Vec::new();
        for user in (0..40).map(|i| format!("u{i}")) {
            host.set_request_header("x-user-id", Some(user.as_bytes()));
            let want = plugin
                .table
                .decide(&host.request_headers(), || 0, |_| false)
                .map(|d| d.variant.name.clone());
            let got = plugin.decide_request(&host).map(|v| v.name.clone());
            assert_eq!(got, want, "{user}");
            let name = format!(
                "canary.route.web.variant.{}.decision.hash",
                got.unwrap_or_default()
            );
            match counted.iter_mut().find(|(n, _)| *n == name) {
                Some((_, n)) => *n += 1,
                None => counted.push((name, 1)),
            }
        }
        assert_eq!(counted.len(), 2, "both variants decided: {counted:?}");
        for (name, n) in &counted {
            assert_eq!(host.counter(name), Some(*n), "{name}");
        }
        // The request is left as it came: the decision header the client sent, no route match
        // asked for.
        assert_eq!(host.request_values("x-canary-variant"), ["canary"]);
        assert_eq!(host.route_cache_cleared(), 0);
        host.set_request_header("x-canary", Some(b"always"));
        let got = plugin.decide_request(&host).map(|v| v.name.as_str());
        assert_eq!(got, Some("canary"));
        assert_eq!(
            host.counter("canary.route.web.variant.canary.decision.rule"),
            Some(1)
        );
    }

    #[test]
    fn client_sent_decision_header_is_replaced() {
        let host = MockHost::request(&[
            (":authority", "shop"),
            (":path", "/"),
            ("x-canary-variant", "canary"),
            ("x-canary-variant", "canary"),
            ("x-user-id", "u1"),
        ]);
        let p = plugin(&host);
        run(&host, &p);
        let request = host.request_headers();
        let want = &p
            .table
            .decide(&request, || 0, |_| false)
            .unwrap()
            .variant
            .name;
        assert_eq!(host.request_values("x-canary-variant"), vec![want.clone()]);
        assert!(host.route_cache_cleared() >= 1);
    }

    #[test]
    fn decision_header_removed_even_when_no_route_matches() {
        let host = MockHost::request(&[
            (":authority", "nothing.example.com"),
            (":path", "/"),
            ("x-canary-variant", "canary"),
        ]);
        let only_api = Rc::new(Plugin::configure(&host, 1, Some(
            br#"{"routes":[{"name":"api","match":{"hosts":["api"]},"variants":[{"name":"v1","weight":100}]}]}"#,
        )).unwrap());
        run(&host, &only_api);
        assert!(
            host.request_values("x-canary-variant").is_empty(),
            "removed although unmatched"
        );
        assert_eq!(host.route_cache_cleared(), 1);
        assert!(
            host.counters().is_empty(),
            "nothing counted for an unmatched request"
        );
    }

    const SEAL: &str = "Zx3_kQ9-aB7cD1eF2gH4iJ";

    #[test]
    fn a_sealed_decision_carries_the_seal_and_metrics_and_debug_header_do_not() {
        let host = MockHost::request(&[
            (":authority", "shop"),
            (":path", "/"),
            ("x-canary", "always"),
            ("x-canary-variant", "canary"),
            ("x-canary-variant", &format!("canary.{SEAL}")),
        ]);
        let sealed = CONFIG.replacen('{', &format!("{{\"seal\": \"{SEAL}\","), 1);
        let p = Rc::new(Plugin::configure(&host, 1, Some(sealed.as_bytes())).unwrap());
        run(&host, &p);
        assert_eq!(
            host.request_values("x-canary-variant"),
            [format!("canary.{SEAL}")],
            "both client values replaced by the one sealed value"
        );
        assert_eq!(
            host.response_values(DEBUG_HEADER),
            ["web;canary;rule:qa"],
            "the debug header names the bare variant"
        );
        for (name, _) in host.counters() {
            assert!(!name.contains(SEAL), "{name}");
        }
        assert_eq!(
            host.counter("canary.route.web.variant.canary.decision.rule"),
            Some(1)
        );
        for level in [LogLevel::Debug, LogLevel::Info, LogLevel::Error] {
            for line in host.logs(level) {
                assert!(!line.contains(SEAL), "{line}");
            }
        }
        assert!(
            !format!("{:?}", p.table).contains(SEAL),
            "Debug output of the table hides the seal"
        );
    }

    /// A lane kept leaves the header as it came, its only value, and is counted as `lane`; a
    /// forged one is replaced by the decision as on any route.
    #[test]
    fn a_lane_kept_leaves_the_header_as_it_came() {
        let trusting = CONFIG
            .replacen('{', &format!("{{\"seal\": \"{SEAL}\","), 1)
            .replacen(
                r#""name": "web","#,
                r#""name": "web", "trustIncoming": true,"#,
                1,
            );
        let sealed = format!("canary.{SEAL}");
        let host = MockHost::request(&[
            (":authority", "shop"),
            (":path", "/"),
            ("x-canary-variant", &sealed),
        ]);
        let p = Rc::new(Plugin::configure(&host, 1, Some(trusting.as_bytes())).unwrap());
        run(&host, &p);
        assert_eq!(host.request_values("x-canary-variant"), [sealed]);
        assert_eq!(host.route_cache_cleared(), 0, "the header did not change");
        assert_eq!(host.response_values(DEBUG_HEADER), ["web;canary;lane"]);
        assert!(
            host.response_values("set-cookie").is_empty(),
            "a lane issues no identity cookie"
        );
        assert_eq!(
            host.counters(),
            [(
                "canary.route.web.variant.canary.decision.lane".to_owned(),
                1
            )]
        );

        let forged = MockHost::request(&[
            (":authority", "shop"),
            (":path", "/"),
            ("x-user-id", "u1"),
            ("x-canary-variant", "canary"),
        ]);
        run(&forged, &p);
        let unforged =
            MockHost::request(&[(":authority", "shop"), (":path", "/"), ("x-user-id", "u1")]);
        let request = unforged.request_headers();
        let want = p.table.decide(&request, || 0, |_| false).unwrap();
        assert_eq!(want.reason, Reason::Hash);
        assert_eq!(
            forged.request_values("x-canary-variant"),
            [want.variant.decision_value.as_str()]
        );
    }

    #[test]
    fn without_configuration_the_decision_header_is_removed() {
        let host = MockHost::request(&[
            (":authority", "shop"),
            ("x-canary-variant", "canary"),
            ("x-canary-variant", "v2"),
            ("x-other", "kept"),
        ]);
        strip_unconfigured(&host);
        assert!(host.request_values("x-canary-variant").is_empty());
        assert_eq!(host.request_values("x-other"), ["kept"]);
        assert_eq!(host.route_cache_cleared(), 1);

        let untouched = MockHost::request(&[(":authority", "shop")]);
        strip_unconfigured(&untouched);
        assert_eq!(untouched.route_cache_cleared(), 0, "nothing to remove");
    }

    #[test]
    fn identity_cookie_is_added_next_to_upstream_set_cookie() {
        let host = MockHost::request(&[(":authority", "shop"), (":path", "/")]);
        host.set_response_header("set-cookie", "upstream=1");
        let p = plugin(&host);
        run(&host, &p);
        let cookies = host.response_values("set-cookie");
        assert_eq!(cookies.len(), 2, "{cookies:?}");
        assert_eq!(cookies[0], "upstream=1");
        let ours = &cookies[1];
        assert!(ours.starts_with("canary_id="), "{ours}");
        assert!(
            ours.ends_with("; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax"),
            "{ours}"
        );
        let id = ours
            .trim_start_matches("canary_id=")
            .split(';')
            .next()
            .unwrap();
        assert_eq!(id.len(), 32, "128 bits as hex: {id}");
        let decision = host.response_values(DEBUG_HEADER);
        assert!(
            decision[0].starts_with("web;") && decision[0].ends_with(";new"),
            "{decision:?}"
        );
    }

    #[test]
    fn a_request_with_identity_gets_no_cookie() {
        for header in [("x-user-id", "u1"), ("cookie", "canary_id=abc")] {
            let host = MockHost::request(&[(":authority", "shop"), (":path", "/"), header]);
            let p = plugin(&host);
            run(&host, &p);
            assert!(host.response_values("set-cookie").is_empty(), "{header:?}");
            assert!(
                host.response_values(DEBUG_HEADER)[0].ends_with(";hash"),
                "{header:?}"
            );
        }
    }

    #[test]
    fn response_metrics_are_off_by_default() {
        let host = MockHost::request(&[
            (":authority", "shop"),
            (":path", "/"),
            ("x-canary", "always"),
        ]);
        let quiet = CONFIG.replacen(r#""debugHeader": true,"#, "", 1);
        let p = Rc::new(Plugin::configure(&host, 1, Some(quiet.as_bytes())).unwrap());
        run(&host, &p);
        assert_eq!(
            host.counters(),
            [(
                "canary.route.web.variant.canary.decision.rule".to_owned(),
                1
            )],
            "the decision counted, and no response"
        );
        assert!(host
            .histogram("canary.route.web.variant.canary.upstream_time")
            .is_empty());
        assert!(host.response_values(DEBUG_HEADER).is_empty());
    }

    #[test]
    fn counts_decisions_responses_and_upstream_time() {
        let host = MockHost::request(&[
            (":authority", "shop"),
            (":path", "/"),
            ("x-canary", "always"),
        ]);
        let with_responses = CONFIG.replacen('{', r#"{"metrics": {"responses": true},"#, 1);
        let p = Rc::new(Plugin::configure(&host, 1, Some(with_responses.as_bytes())).unwrap());
        run(&host, &p);
        run(&host, &p);
        assert_eq!(
            host.counter("canary.route.web.variant.canary.decision.rule"),
            Some(2)
        );
        assert_eq!(
            host.counter("canary.route.web.variant.canary.response.2xx"),
            Some(2)
        );
        assert_eq!(
            host.histogram("canary.route.web.variant.canary.upstream_time"),
            vec![7, 7]
        );
        assert_eq!(
            host.response_values(DEBUG_HEADER).last().unwrap(),
            "web;canary;rule:qa"
        );
    }

    #[test]
    fn a_later_route_counts_under_its_own_names() {
        let host = MockHost::request(&[(":authority", "api.example.com"), (":path", "/")]);
        let config = br#"{"debugHeader": true, "metrics": {"responses": true}, "routes": [
          {"name": "web", "match": {"hosts": ["shop"]},
           "variants": [{"name": "stable", "weight": 50}, {"name": "canary", "weight": 50}]},
          {"name": "api", "variants": [{"name": "v1", "weight": 100}]}
        ]}"#;
        let p = Rc::new(Plugin::configure(&host, 1, Some(config)).expect("valid config"));
        run(&host, &p);
        assert_eq!(
            host.counters(),
            [
                ("canary.route.api.variant.v1.decision.new".to_owned(), 1),
                ("canary.route.api.variant.v1.response.2xx".to_owned(), 1),
            ]
        );
        assert_eq!(
            host.histogram("canary.route.api.variant.v1.upstream_time"),
            vec![7]
        );
        assert_eq!(host.response_values(DEBUG_HEADER), ["api;v1;new"]);
    }

    #[test]
    fn counters_carry_over_a_configuration_update() {
        let host = MockHost::request(&[
            (":authority", "shop"),
            (":path", "/"),
            ("x-canary", "always"),
        ]);
        run(&host, &plugin(&host));
        run(&host, &plugin(&host));
        assert_eq!(
            host.counter("canary.route.web.variant.canary.decision.rule"),
            Some(2)
        );
    }

    #[test]
    fn invalid_configuration_logs_each_error_with_its_path() {
        let host = MockHost::default();
        let bad = br#"{"routes":[{"name":"r","variants":[{"name":"a","weight":60},{"name":"B","weight":30}]}]}"#;
        assert!(Plugin::configure(&host, 1, Some(bad)).is_none());
        let errors = host.logs(LogLevel::Error);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("routes[0].variants[1].name"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("routes[0].variants: weights must sum to 100, not 90"),
            "{errors:?}"
        );
        assert!(
            Plugin::configure(&host, 1, None).is_none(),
            "no configuration at all"
        );
    }

    #[test]
    fn non_utf8_headers_do_not_disturb_the_decision() {
        let host = MockHost::request_bytes(&[
            (":authority", b"shop"),
            (":path", b"/"),
            ("x-user-id", b"\xff\xfe\x00"),
            ("cookie", b"\xff=\xff; canary_id=\xc3\x28"),
            ("x-canary", b"\xff"),
        ]);
        let p = plugin(&host);
        run(&host, &p);
        assert!(host.response_values(DEBUG_HEADER)[0].ends_with(";hash"));
    }
}
