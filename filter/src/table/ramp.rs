//! A route's ramp: one variant's weight moving linearly from `from` to `to` over a window of
//! time, and every variant's weight at a given time.
//!
//! The weights at a time are a pure function of the configuration and that time, so every
//! sidecar computes the same weights from its own clock, and they agree within the clock skew
//! between them (plus one thousandth of a percent of rounding). Nothing is pushed while a ramp
//! runs.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[cfg(test)]
use super::route::Route;
use super::route::Variant;
use super::MAX_VARIANTS;
use crate::assign::Weight;

/// Every variant's weight at one time, in variant order; entries past the route's variants are 0.
pub type Weights = [Weight; MAX_VARIANTS];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ramp {
    /// Index of the ramping variant among the route's variants; never 0, the baseline.
    pub variant: usize,
    /// The variant's weight until `start`: its configured weight.
    pub from: Weight,
    /// The variant's weight from `start + duration` on.
    pub to: Weight,
    /// Unix time of the start, in milliseconds.
    pub start_ms: i64,
    /// At least 1.
    pub duration_ms: u64,
}

impl Ramp {
    /// Unix time of the end, in milliseconds.
    pub fn end_ms(&self) -> i64 {
        self.start_ms
            .saturating_add(i64::try_from(self.duration_ms).unwrap_or(i64::MAX))
    }

    /// The ramping variant's weight at `now_ms` (Unix milliseconds): `from` until the start,
    /// `to` from the end on, and in between `from + (to − from) × elapsed / duration` rounded
    /// toward `from`, so it never passes `to` and moves one way only.
    pub fn weight_at(&self, now_ms: u64) -> Weight {
        let elapsed = i128::from(now_ms) - i128::from(self.start_ms);
        let duration = i128::from(self.duration_ms.max(1));
        let (from, to) = (i128::from(self.from.0), i128::from(self.to.0));
        let weight = if elapsed <= 0 {
            from
        } else if elapsed >= duration {
            to
        } else {
            from + (to - from) * elapsed / duration
        };
        // Between `from` and `to`, so it fits.
        Weight(u32::try_from(weight).unwrap_or(self.to.0))
    }

    /// Every variant's weight at `now_ms`, from the configured weights (in which the ramping
    /// variant has `from`). Weight the ramping variant gains is taken from the baseline first
    /// and, once the baseline is at 0, from the next variants in order; weight it gives up goes
    /// to the baseline. The weights always sum to what the configured ones sum to, 100 %.
    pub fn weights_at(&self, variants: &[Variant], now_ms: u64) -> Weights {
        let mut weights = [Weight(0); MAX_VARIANTS];
        for (weight, variant) in weights.iter_mut().zip(variants) {
            *weight = variant.weight;
        }
        let ramped = self.weight_at(now_ms);
        let Some(slot) = weights.get_mut(self.variant) else {
            return weights;
        };
        let before = std::mem::replace(slot, ramped).0;
        if ramped.0 >= before {
            let mut wanted = ramped.0 - before;
            let others = weights
                .iter_mut()
                .enumerate()
                .filter(|(k, _)| *k != self.variant);
            for (_, weight) in others {
                let taken = wanted.min(weight.0);
                weight.0 -= taken;
                wanted -= taken;
            }
        } else if let Some(baseline) = weights.first_mut() {
            baseline.0 += before - ramped.0;
        }
        weights
    }
}

/// An RFC 3339 time (`2026-12-07T12:00:00Z`, `2026-12-07T13:00:00+01:00`) as Unix milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let time = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        format!("{text:?} is not an RFC 3339 time such as 2026-12-07T12:00:00Z: {e}")
    })?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoutingTable;
    use proptest::prelude::*;

    /// 2026-12-07T12:00:00Z.
    const START: u64 = 1_796_644_800_000;

    fn config(variants: &str, ramp: &str) -> String {
        format!(r#"{{"routes":[{{"name":"r","variants":[{variants}],"ramp":{ramp}}}]}}"#)
    }

    fn table(variants: &str, ramp: &str) -> RoutingTable {
        crate::parse(config(variants, ramp).as_bytes()).unwrap()
    }

    fn errors(variants: &str, ramp: &str) -> Vec<String> {
        match crate::parse(config(variants, ramp).as_bytes()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    const TWO: &str = r#"{"name":"stable","weight":100},{"name":"canary","weight":0}"#;

    fn percents(weights: &Weights, n: usize) -> Vec<u32> {
        weights.iter().take(n).map(|w| w.0).collect()
    }

    #[test]
    fn a_ramp_is_compiled_with_its_times_in_milliseconds() {
        let t = table(
            TWO,
            r#"{"variant":"canary","from":0,"to":50,"start":"2026-12-07T12:00:00Z","duration":"2h"}"#,
        );
        assert_eq!(
            t.routes[0].ramp,
            Some(Ramp {
                variant: 1,
                from: Weight(0),
                to: Weight(50_000),
                start_ms: START as i64,
                duration_ms: 7_200_000,
            })
        );
        let offset = table(
            TWO,
            r#"{"variant":"canary","from":0,"to":50,"start":"2026-12-07T13:00:00.250+01:00","duration":"1.5s"}"#,
        );
        let ramp = offset.routes[0].ramp.as_ref().unwrap();
        assert_eq!(
            (ramp.start_ms, ramp.duration_ms),
            (START as i64 + 250, 1_500)
        );
        assert_eq!(ramp.end_ms(), START as i64 + 1_750);
    }

    #[test]
    fn a_ramp_moves_weight_from_the_baseline_then_the_next_variants() {
        let t = table(
            r#"{"name":"a","weight":20},{"name":"b","weight":10},{"name":"c","weight":30},{"name":"d","weight":40}"#,
            r#"{"variant":"c","from":30,"to":90,"start":"2026-12-07T12:00:00Z","duration":"60s"}"#,
        );
        let at = |seconds: u64| percents(&t.routes[0].weights_at(START + seconds * 1000), 4);
        let cases = [
            (
                "before the start: as configured",
                0,
                [20_000, 10_000, 30_000, 40_000],
            ),
            (
                "a sixth in: from the baseline",
                10,
                [10_000, 10_000, 40_000, 40_000],
            ),
            ("the baseline at 0", 20, [0, 10_000, 50_000, 40_000]),
            ("then from b", 25, [0, 5_000, 55_000, 40_000]),
            ("then from d", 40, [0, 0, 70_000, 30_000]),
            ("at the end", 60, [0, 0, 90_000, 10_000]),
            ("after the end", 6_000, [0, 0, 90_000, 10_000]),
        ];
        for (label, seconds, want) in cases {
            assert_eq!(at(seconds), want, "{label}");
        }
        assert_eq!(
            percents(&t.routes[0].weights_at(0), 4),
            [20_000, 10_000, 30_000, 40_000],
            "long before the start"
        );
    }

    #[test]
    fn a_ramp_down_gives_its_weight_to_the_baseline() {
        let t = table(
            r#"{"name":"a","weight":20},{"name":"b","weight":60},{"name":"c","weight":20}"#,
            r#"{"variant":"b","from":60,"to":10,"start":"2026-12-07T12:00:00Z","duration":"100s"}"#,
        );
        let at = |seconds: u64| percents(&t.routes[0].weights_at(START + seconds * 1000), 3);
        assert_eq!(at(0), [20_000, 60_000, 20_000]);
        assert_eq!(at(50), [45_000, 35_000, 20_000]);
        assert_eq!(at(100), [70_000, 10_000, 20_000]);
    }

    #[test]
    fn the_weight_between_the_ends_rounds_toward_from() {
        let ramp = Ramp {
            variant: 1,
            from: Weight(0),
            to: Weight(10),
            start_ms: 0,
            duration_ms: 3,
        };
        let weights: Vec<u32> = (0..5).map(|t| ramp.weight_at(t).0).collect();
        assert_eq!(weights, [0, 3, 6, 10, 10]);
        let down = Ramp {
            from: Weight(10),
            to: Weight(0),
            ..ramp
        };
        let weights: Vec<u32> = (0..5).map(|t| down.weight_at(t).0).collect();
        assert_eq!(weights, [10, 7, 4, 0, 0]);
    }

    #[test]
    fn every_ramp_error_is_reported_at_its_path() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                TWO,
                r#"{"variant":"green","from":0,"to":50,"start":"2026-12-07T12:00:00Z","duration":"1h"}"#,
                &["routes[0].ramp.variant: unknown variant \"green\" (variants: stable, canary)"],
            ),
            (
                TWO,
                r#"{"variant":"stable","from":100,"to":50,"start":"2026-12-07T12:00:00Z","duration":"1h"}"#,
                &["routes[0].ramp.variant: \"stable\" is the baseline; a ramp moves weight between the baseline and another variant"],
            ),
            (
                TWO,
                r#"{"variant":"canary","from":-1,"to":100.0001,"start":"2026-12-07T12:00:00Z","duration":"1h"}"#,
                &[
                    "routes[0].ramp.from: must be between 0 and 100, not -1",
                    "routes[0].ramp.to: must be between 0 and 100, not 100.0001",
                ],
            ),
            (
                TWO,
                r#"{"variant":"canary","from":0,"to":12.3456,"start":"2026-12-07T12:00:00Z","duration":"1h"}"#,
                &["routes[0].ramp.to: 12.3456 has more than 3 decimals (the resolution is 0.001 %)"],
            ),
            (
                TWO,
                r#"{"variant":"canary","from":10,"to":50,"start":"2026-12-07T12:00:00Z","duration":"1h"}"#,
                &["routes[0].ramp.from: is 10 but variant \"canary\" has weight 0; a ramp starts from the variant's configured weight"],
            ),
            (
                TWO,
                r#"{"variant":"canary","from":0,"to":0,"start":"2026-12-07T12:00:00Z","duration":"1h"}"#,
                &["routes[0].ramp.to: equals from; a ramp must change the weight"],
            ),
            (
                TWO,
                r#"{"variant":"canary","from":0,"to":50,"start":"2026-12-07 12:00","duration":"0s"}"#,
                &[
                    "routes[0].ramp.start: \"2026-12-07 12:00\" is not an RFC 3339 time such as 2026-12-07T12:00:00Z: a character literal was not valid",
                    "routes[0].ramp.duration: \"0s\" must be more than zero",
                ],
            ),
            (
                TWO,
                r#"{"variant":"canary","from":0,"to":50,"start":"2026-12-07T12:00:00Z","duration":"2d"}"#,
                &["routes[0].ramp.duration: \"2d\": unknown unit \"d\" (ms, s, m or h)"],
            ),
            (
                TWO,
                r#"{"variant":"canary","from":0,"to":50,"start":"2026-12-07T12:00:00Z","duration":"0.1ms"}"#,
                &["routes[0].ramp.duration: must be at least 1ms"],
            ),
            (
                TWO,
                r#"{"variant":"canary","from":0,"to":50,"start":"2026-12-07T12:00:00Z","duration":"1h","step":1}"#,
                &["routes[0].ramp.step: unknown field `step`, expected one of `variant`, `from`, `to`, `start`, `duration`"],
            ),
            (
                TWO,
                r#"{"variant":"canary","from":0,"to":50,"duration":"1h"}"#,
                &["routes[0].ramp: missing field `start`"],
            ),
        ];
        for (variants, ramp, want) in cases {
            assert_eq!(errors(variants, ramp), *want, "{ramp}");
        }
    }

    /// `decide` reads the clock only for a route with a ramp, and decides by the weights at
    /// that time.
    #[test]
    fn decide_reads_the_clock_only_on_a_ramping_route() {
        let t = crate::parse(
            br#"{"routes":[
              {"name":"plain","match":{"hosts":["plain"]},"variants":[{"name":"stable","weight":100}],
               "stickiness":{"keys":[{"header":"x-user"}]}},
              {"name":"ramped","variants":[{"name":"stable","weight":100},{"name":"canary","weight":0}],
               "stickiness":{"keys":[{"header":"x-user"}]},
               "ramp":{"variant":"canary","from":0,"to":100,"start":"2026-12-07T12:00:00Z","duration":"10s"}}]}"#,
        )
        .unwrap();
        let request = |host: &str| {
            crate::RequestHeaders::from_pairs(&[
                (":authority", host),
                (":path", "/"),
                ("x-user", "alice"),
            ])
        };
        let reads = std::cell::Cell::new(0);
        let variant = |host: &str, now: u64| {
            let clock = || {
                reads.set(reads.get() + 1);
                now
            };
            let d = t.decide(&request(host), clock, |_| false).unwrap();
            d.variant.name.clone()
        };
        assert_eq!(variant("plain", START), "stable");
        assert_eq!(reads.get(), 0, "no clock read on a route without a ramp");
        assert_eq!(variant("other", START - 1), "stable", "before the start");
        assert_eq!(
            variant("other", START + 10_000),
            "canary",
            "at the end: 100 %"
        );
        assert_eq!(
            reads.get(),
            2,
            "one clock read per decision on the ramping route"
        );
    }

    fn variants(weights: &[u32]) -> Vec<Variant> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Variant {
                name: format!("v{i}"),
                weight: Weight(*w),
                decision_value: format!("v{i}"),
                id: super::super::VariantId(i),
            })
            .collect()
    }

    /// Weights for `n` variants in thousandths, summing to 100 %.
    fn configured(n: usize) -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::vec(1u32..=100, n).prop_map(|raw| {
            let total: u32 = raw.iter().sum();
            let mut scaled: Vec<u32> = raw.iter().map(|w| w * 100_000 / total).collect();
            scaled[0] += 100_000 - scaled.iter().sum::<u32>();
            scaled
        })
    }

    /// A route's weights and a ramp of one of its variants other than the baseline.
    fn ramped() -> impl Strategy<Value = (Vec<Variant>, Ramp)> {
        (2usize..=6)
            .prop_flat_map(|n| (configured(n), 1..n, 0u32..=100_000, 1u64..=10_000_000))
            .prop_map(|(weights, variant, to, duration_ms)| {
                let ramp = Ramp {
                    variant,
                    from: Weight(weights[variant]),
                    to: Weight(to),
                    start_ms: START as i64,
                    duration_ms,
                };
                (variants(&weights), ramp)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// At every time the weights sum to 100 %; at the start they are the configured ones,
        /// from the end on the ramping variant has exactly `to`; as time passes the ramping
        /// variant's weight moves only toward `to`, and when it grows no other variant's weight
        /// grows.
        #[test]
        fn weights_sum_to_100_and_move_one_way((variants, ramp) in ramped(), times in proptest::collection::vec(0u64..=12_000_000, 1..20)) {
            let n = variants.len();
            let total = |w: &Weights| w.iter().map(|w| u64::from(w.0)).sum::<u64>();
            let start = ramp.weights_at(&variants, START);
            prop_assert_eq!(percents(&start, n), variants.iter().map(|v| v.weight.0).collect::<Vec<_>>());
            let end = ramp.weights_at(&variants, START + ramp.duration_ms);
            prop_assert_eq!(end[ramp.variant], ramp.to);
            prop_assert_eq!(total(&end), 100_000);
            let mut times: Vec<u64> = times.into_iter().map(|t| START - 1_000_000 + t).collect();
            times.sort_unstable();
            let mut previous = ramp.weights_at(&variants, START - 1_000_000);
            for t in times {
                let now = ramp.weights_at(&variants, t);
                prop_assert_eq!(total(&now), 100_000, "at {}", t);
                prop_assert!(now.iter().skip(n).all(|w| w.0 == 0));
                let (was, is) = (previous[ramp.variant].0, now[ramp.variant].0);
                if ramp.to > ramp.from {
                    prop_assert!(was <= is && is <= ramp.to.0, "ramping weight {was} -> {is} at {t}");
                    for k in (0..n).filter(|k| *k != ramp.variant) {
                        prop_assert!(now[k] <= previous[k], "variant {k} grew at {t}");
                    }
                } else {
                    prop_assert!(was >= is && is >= ramp.to.0, "ramping weight {was} -> {is} at {t}");
                }
                previous = now;
            }
        }

        /// Minimal disruption as time passes: a user on a growing ramp's variant at one time is
        /// on it at every later time.
        #[test]
        fn nobody_leaves_a_growing_ramp((variants, ramp) in ramped(), t1 in 0u64..=12_000_000, gap in 0u64..=12_000_000, salt in "[a-z]{1,8}") {
            prop_assume!(ramp.to > ramp.from);
            let route = Route { ramp: Some(ramp.clone()), ..route(variants, &salt) };
            let (t1, t2) = (START - 1_000_000 + t1, START - 1_000_000 + t1 + gap);
            for u in 0..300 {
                let id = format!("user-{u}");
                let was = route.assign_at(id.as_bytes(), t1);
                let now = route.assign_at(id.as_bytes(), t2);
                prop_assert!(was != ramp.variant || now == ramp.variant,
                    "user {id} left variant {} between {t1} and {t2}: {was} -> {now}", ramp.variant);
            }
        }
    }

    fn route(variants: Vec<Variant>, salt: &str) -> Route {
        Route {
            name: "r".to_owned(),
            path_prefixes: Vec::new(),
            variants,
            targeting: Vec::new(),
            stickiness: super::super::Stickiness {
                keys: Vec::new(),
                cookie: None,
                salt: salt.to_owned(),
                key_slots: Vec::new(),
                cookie_slot: None,
                session: None,
                pins: None,
            },
            sources: super::super::RouteSources::default(),
            ramp: None,
            lanes: None,
        }
    }
}
