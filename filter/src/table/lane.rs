//! Mesh lanes: a decision made by an upstream hop, kept on a route with `trustIncoming`.
//!
//! An application that copies the decision header of its inbound request onto its outbound
//! calls, as it does tracing headers, carries the variant its caller's filter chose to the
//! filter of the next hop. There, on a route that trusts incoming decisions, the variant is
//! kept, so that one user sees the same variant of every service along a call chain. It is kept
//! only when the value is one a filter with the same seal writes: the decision header's first
//! and only value, exactly `<variant>.<seal>`, with this configuration's seal (compared in
//! constant time), naming a variant that the route could choose itself. Any other value, a bare
//! name, another or retired seal, an unknown variant or two values, is recomputed and replaced
//! like any client-sent decision header.

use std::fmt;

use subtle::ConstantTimeEq;

use super::request::RequestHeaders;
use super::route::{Route, TargetingRule};
use super::validate::{At, Errors};

/// What a route with `trustIncoming` needs to recognise a lane, set up once when the table is
/// built.
pub struct Lanes {
    /// The decision header (lowercase), where a lane arrives.
    header: String,
    /// The configuration's seal: the only one a lane may carry.
    seal: Vec<u8>,
    /// By variant index: whether one of the route's targeting rules names the variant.
    targeted: Vec<bool>,
}

impl Lanes {
    /// The lanes of a route whose `trustIncoming` is set, at `at`: a configuration without a
    /// seal has none, since a bare variant name is what any client can send.
    pub(super) fn compile(
        errors: &mut Errors,
        at: &At<'_>,
        decision_header: &str,
        seal: Option<&str>,
        variants: usize,
        targeting: &[TargetingRule],
    ) -> Option<Lanes> {
        let Some(seal) = seal else {
            errors.push(
                at,
                "needs seal: an incoming decision is kept only when it carries the \
                 configuration's seal, never as a bare variant name",
            );
            return None;
        };
        let targeted = (0..variants)
            .map(|k| targeting.iter().any(|rule| rule.variant == k))
            .collect();
        Some(Lanes {
            header: decision_header.to_owned(),
            seal: seal.as_bytes().to_vec(),
            targeted,
        })
    }

    /// The lane a request carries: the decision header's value, when it has exactly one.
    pub(super) fn incoming<'r>(&self, request: &'r RequestHeaders) -> Option<&'r [u8]> {
        request.only(&self.header)
    }

    /// The index of the variant of `route` that `value` keeps: `value` is exactly
    /// `<variant>.<seal>` with this configuration's seal, and the variant is one the route
    /// could choose itself, named by one of its targeting rules or with a weight above 0. On a
    /// route with a ramp the weight is the one in force at `now_millis`, which is read only then.
    pub(super) fn kept(
        &self,
        route: &Route,
        value: &[u8],
        now_millis: impl FnOnce() -> u64,
    ) -> Option<usize> {
        // Variant names and seals hold no '.', so the first one ends the name.
        let dot = value.iter().position(|b| *b == b'.')?;
        let (name, dot_seal) = value.split_at_checked(dot)?;
        let seal = dot_seal.get(1..)?;
        // In constant time: how long the comparison takes tells nothing of how much of the
        // seal a forged value got right.
        if !bool::from(seal.ct_eq(&self.seal)) {
            return None;
        }
        let k = route
            .variants
            .iter()
            .position(|v| v.name.as_bytes() == name)?;
        if self.targeted.get(k).copied().unwrap_or(false) {
            return Some(k);
        }
        let weight = match route.ramp {
            Some(_) => route.weights_at(now_millis()).get(k).copied(),
            None => route.variants.get(k).map(|v| v.weight),
        };
        weight.is_some_and(|w| w.0 > 0).then_some(k)
    }
}

/// Shows the header and the variants rules name, never the seal.
impl fmt::Debug for Lanes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lanes")
            .field("header", &self.header)
            .field("targeted", &self.targeted)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Reason, RequestHeaders, IDENTITY_BYTES};

    const SEAL: &str = "Lane-seal_0123456789abcdef";

    /// The hop: stable, canary and a rule-only `beta` (weight 0, named by the `qa` rule), and
    /// `gone` at weight 0 that no rule names, as after an abort.
    fn config() -> String {
        format!(
            r#"{{"seal":"{SEAL}","routes":[{{"name":"b","trustIncoming":true,
            "variants":[{{"name":"stable","weight":50}},{{"name":"canary","weight":50}},
                        {{"name":"beta","weight":0}},{{"name":"gone","weight":0}}],
            "targeting":[{{"name":"qa","header":"x-canary","equals":"always","variant":"beta"}}],
            "stickiness":{{"keys":[{{"header":"x-user-id"}}],"cookie":{{"name":"id"}}}}}}]}}"#
        )
    }

    fn request(user: Option<&str>, lane: &[&str], extra: &[(&str, &str)]) -> RequestHeaders {
        let mut headers = vec![(":authority", "b"), (":path", "/")];
        headers.extend(user.map(|u| ("x-user-id", u)));
        headers.extend(lane.iter().map(|v| ("x-canary-variant", *v)));
        headers.extend_from_slice(extra);
        RequestHeaders::from_pairs(&headers)
    }

    fn random(bytes: &mut [u8; IDENTITY_BYTES]) -> bool {
        bytes.fill(3);
        true
    }

    fn decide(table: &crate::RoutingTable, request: &RequestHeaders) -> (String, Reason, bool) {
        let d = table.decide(request, || 0, random).expect("a route");
        (d.variant.name.clone(), d.reason, d.issue_identity.is_some())
    }

    /// A user whose own hash on the route is `variant`.
    fn user_on(table: &crate::RoutingTable, variant: &str) -> String {
        let route = &table.routes[0];
        (0..200)
            .map(|i| format!("user-{i}"))
            .find(|u| route.variants[route.assign(u.as_bytes())].name == variant)
            .expect("a user on each half")
    }

    #[test]
    fn a_sealed_lane_is_kept_whatever_the_users_own_hash() {
        let table = crate::parse(config().as_bytes()).unwrap();
        let sealed = |v: &str| format!("{v}.{SEAL}");
        for (own, lane) in [("stable", "canary"), ("canary", "stable")] {
            let user = user_on(&table, own);
            assert_eq!(
                decide(&table, &request(Some(&user), &[&sealed(lane)], &[])),
                (lane.to_owned(), Reason::Lane, false),
                "{user}, whose own variant is {own}"
            );
        }
        assert_eq!(
            decide(&table, &request(None, &[&sealed("canary")], &[])),
            ("canary".to_owned(), Reason::Lane, false),
            "an anonymous lane is kept and issues no identity cookie"
        );
        assert_eq!(
            decide(&table, &request(None, &[&sealed("beta")], &[])),
            ("beta".to_owned(), Reason::Lane, false),
            "a variant at weight 0 that a targeting rule names"
        );
    }

    #[test]
    fn any_other_value_is_recomputed() {
        let table = crate::parse(config().as_bytes()).unwrap();
        let user = user_on(&table, "stable");
        let other_length = format!("canary.{SEAL}0");
        let shorter = format!("canary.{}", &SEAL[1..]);
        let same_length = format!("canary.{}", SEAL.replace('L', "M"));
        let unknown = format!("v3.{SEAL}");
        let gone = format!("gone.{SEAL}");
        let upper = format!("CANARY.{SEAL}");
        let sealed = format!("canary.{SEAL}");
        let padded = format!(" canary.{SEAL}");
        let cases: [(&str, Vec<&str>); 12] = [
            ("bare name", vec!["canary"]),
            ("wrong seal of the same length", vec![&same_length]),
            ("seal one character longer", vec![&other_length]),
            ("seal one character shorter", vec![&shorter]),
            ("the seal alone", vec![SEAL]),
            ("unknown variant", vec![&unknown]),
            ("a variant at weight 0 that no rule names", vec![&gone]),
            ("upper case", vec![&upper]),
            ("two values", vec![&sealed, &sealed]),
            ("a bare value, then the sealed one", vec!["stable", &sealed]),
            ("padded", vec![&padded]),
            ("empty", vec![""]),
        ];
        for (label, lane) in cases {
            assert_eq!(
                decide(&table, &request(Some(&user), &lane, &[])),
                ("stable".to_owned(), Reason::Hash, false),
                "{label}"
            );
        }
        let (_, reason, issued) = decide(&table, &request(None, &["canary"], &[]));
        assert_eq!(
            (reason, issued),
            (Reason::New, true),
            "without an identity, a forged lane gets a new identity as any request does"
        );
    }

    #[test]
    fn targeting_rules_come_before_a_lane() {
        let table = crate::parse(config().as_bytes()).unwrap();
        let lane = format!("canary.{SEAL}");
        assert_eq!(
            decide(
                &table,
                &request(Some("u"), &[&lane], &[("x-canary", "always")])
            ),
            ("beta".to_owned(), Reason::Rule(0), false)
        );
    }

    #[test]
    fn a_route_that_does_not_trust_incoming_decisions_recomputes_a_sealed_value() {
        let untrusting = config().replace(r#""trustIncoming":true,"#, "");
        let table = crate::parse(untrusting.as_bytes()).unwrap();
        assert!(table.routes[0].lanes.is_none());
        let user = user_on(&table, "stable");
        assert_eq!(
            decide(
                &table,
                &request(Some(&user), &[&format!("canary.{SEAL}")], &[])
            ),
            ("stable".to_owned(), Reason::Hash, false)
        );
    }

    /// On a route with a ramp, a variant is kept while its weight in force is above 0, read from
    /// the clock only for the lane.
    #[test]
    fn on_a_ramp_the_weight_in_force_decides() {
        let ramped = config().replace(
            r#""targeting""#,
            r#""ramp":{"variant":"gone","from":0,"to":50,"start":"2026-01-01T00:00:00Z",
               "duration":"100s"},"targeting""#,
        );
        let table = crate::parse(ramped.as_bytes()).unwrap();
        let start = 1_767_225_600_000;
        let lane = format!("gone.{SEAL}");
        let request = request(Some("u"), &[&lane], &[]);
        let at = |now: u64| {
            let d = table.decide(&request, || now, random).unwrap();
            (d.variant.name.clone(), d.reason)
        };
        assert_ne!(at(start).1, Reason::Lane, "weight 0 before the ramp starts");
        assert_eq!(at(start + 50_000), ("gone".to_owned(), Reason::Lane));
    }

    #[test]
    fn trust_incoming_needs_a_seal() {
        let unsealed = config().replace(&format!(r#""seal":"{SEAL}""#), r#""debugHeader":false"#);
        let errors = crate::parse(unsealed.as_bytes()).unwrap_err().to_string();
        assert_eq!(
            errors,
            "routes[0].trustIncoming: needs seal: an incoming decision is kept only when it \
             carries the configuration's seal, never as a bare variant name"
        );
        let table = crate::parse(config().as_bytes()).unwrap();
        assert!(!format!("{table:?}").contains(SEAL), "Debug hides the seal");
    }
}
