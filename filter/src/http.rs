//! The filter's behaviour on a stream, written against [`Host`] so that it runs the same in
//! Envoy and under the test double.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::rc::Rc;

use crate::config;
use crate::decide::{Decision, Reason, RequestHeaders, RequestView};
use crate::host::{Host, LogLevel};
use crate::metrics::{class_of, Metric, Metrics};
use crate::table::RoutingTable;

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

    fn count(&self, host: &impl Host, decision: &Decision, metric: Metric) {
        self.metrics
            .increment(host, &self.table, decision.route, decision.variant, metric);
    }
}

/// One HTTP stream.
pub struct Stream {
    plugin: Rc<Plugin>,
    context_id: u32,
    decision: Option<Decision>,
    started_ms: u64,
}

impl Stream {
    pub fn new(plugin: Rc<Plugin>, context_id: u32) -> Self {
        Stream {
            plugin,
            context_id,
            decision: None,
            started_ms: 0,
        }
    }

    pub fn on_request_headers(&mut self, host: &impl Host) {
        let plugin = Rc::clone(&self.plugin);
        let header = plugin.table.decision_header.as_str();
        let request = HostRequest {
            host,
            headers: OnceCell::new(),
        };
        let client_sent = request.header(header).is_some();
        if client_sent {
            host.set_request_header(header, None);
        }

        let decision = plugin.table.decide(&request, |buf| host.random(buf));
        let Some(decision) = decision else {
            if client_sent {
                host.clear_route_cache();
            }
            return;
        };
        let Some(variant) = plugin
            .table
            .routes
            .get(decision.route)
            .and_then(|r| r.variants.get(decision.variant))
        else {
            return;
        };
        host.set_request_header(header, Some(variant.decision_value.as_bytes()));
        host.clear_route_cache();
        plugin.count(host, &decision, Metric::Decision(decision.reason));
        let table = &plugin.table;
        if table.response_metrics {
            self.started_ms = host.now_millis();
        }
        // Kept only when the response needs it, so that otherwise the response makes no host
        // call at all.
        if table.response_metrics || table.debug_header || decision.issue_identity.is_some() {
            self.decision = Some(decision);
        }
    }

    pub fn on_response_headers(&mut self, host: &impl Host) {
        let Some(decision) = self.decision.take() else {
            return;
        };
        let plugin = &self.plugin;
        let Some(route) = plugin.table.routes.get(decision.route) else {
            return;
        };
        if let (Some(identity), Some(cookie)) = (&decision.issue_identity, &route.stickiness.cookie)
        {
            cookie.with_set_cookie(identity, |value| {
                host.add_response_header("set-cookie", value);
            });
        }
        if plugin.table.debug_header {
            let variant = route
                .variants
                .get(decision.variant)
                .map_or("", |v| v.name.as_str());
            let (colon, rule) = match decision.reason {
                Reason::Rule(i) => (":", route.targeting.get(i).map_or("", |r| r.name.as_str())),
                _ => ("", ""),
            };
            let parts = [
                route.name.as_str(),
                ";",
                variant,
                ";",
                decision.reason.label(),
                colon,
                rule,
            ];
            host.add_response_header(DEBUG_HEADER, parts.concat().as_bytes());
        }
        if !plugin.table.response_metrics {
            return;
        }
        let status = host
            .response_header(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
        match status.and_then(class_of) {
            Some(class) => plugin.count(host, &decision, Metric::Response(class)),
            None => host.log(
                LogLevel::Debug,
                &format!(
                    "[canary {}] response status {status:?} not counted",
                    self.context_id
                ),
            ),
        }
        let elapsed = host.now_millis().saturating_sub(self.started_ms);
        plugin.metrics.record(
            host,
            &plugin.table,
            decision.route,
            decision.variant,
            Metric::UpstreamTime,
            elapsed,
        );
    }
}

/// A request seen while no configuration was ever accepted: nothing is decided, but a decision
/// header the client sent (under the default name, the only one known yet) is removed all the
/// same, every value of it, so that no route can be chosen with it.
pub fn strip_unconfigured(host: &impl Host) {
    let header = config::DEFAULT_DECISION_HEADER;
    if host
        .request_headers()
        .iter()
        .any(|(name, _)| name == header)
    {
        host.set_request_header(header, None);
        host.clear_route_cache();
    }
}

/// The request as the decision core sees it.
///
/// Its headers are read from the host in one call, the first time one is asked for: a call
/// into the host costs more than scanning a dozen headers, and a request is decided from
/// several (`:authority`, `:path`, the decision header, identity keys, targeting sources).
struct HostRequest<'h, H> {
    host: &'h H,
    headers: OnceCell<RequestHeaders>,
}

impl<H: Host> HostRequest<'_, H> {
    fn held_headers(&self) -> &RequestHeaders {
        self.headers
            .get_or_init(|| RequestHeaders(self.host.request_headers()))
    }
}

impl<H: Host> RequestView for HostRequest<'_, H> {
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.held_headers().header(name)
    }

    fn cookie(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.held_headers().cookie(name)
    }

    fn headers(&self) -> Option<&RequestHeaders> {
        Some(self.held_headers())
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
        let d = p.table.decide(&host, |_| false).unwrap();
        let want = &p.table.routes[0].variants[d.variant].name;
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
