//! Weight changes for `set-weight`, `promote` and `abort`: the pure arithmetic on a route's
//! variants, and the edit of the typed plugin configuration that carries the result.
//!
//! The edit touches only the weights of one route's variants, and ends a ramp on the route.
//! Checking the result is the
//! caller's job: it goes through the filter's own parser.

use canary_filter::table::parse_weight;
use canary_filter::{PluginConfig, Weight};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightError {
    #[error("{0:?} is not VARIANT=PERCENT (e.g. canary=30)")]
    Syntax(String),
    #[error("{assignment:?}: the weight {reason}")]
    Percent { assignment: String, reason: String },
    #[error("variant {0:?} is named more than once")]
    NamedTwice(String),
    #[error("no route named {route:?} (routes: {known})")]
    UnknownRoute { route: String, known: String },
    #[error("route {route:?} has no variant named {variant:?} (variants: {known})")]
    UnknownVariant {
        route: String,
        variant: String,
        known: String,
    },
    #[error(
        "the weights given sum to {total} %; when the baseline {baseline:?} is named too they must sum to 100"
    )]
    NotHundred { baseline: String, total: String },
    #[error("the weights given sum to {total} %, leaving the baseline {baseline:?} below 0")]
    BaselineBelowZero { baseline: String, total: String },
    #[error("{path}: {reason}")]
    Shape { path: String, reason: String },
}

/// One variant of a route as the live configuration has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantWeight {
    pub name: String,
    pub weight: Weight,
}

/// One route's variants, the first being the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteWeights {
    pub name: String,
    pub variants: Vec<VariantWeight>,
}

/// What an operator asks for on one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The variants named get these weights; the others keep theirs, and the baseline takes
    /// the remainder unless it is named too.
    Set(Vec<(String, Weight)>),
    /// The variant gets all the traffic, the others none.
    Promote(String),
    /// The baseline gets all the traffic.
    Abort,
}

/// Parses `VARIANT=PERCENT` (e.g. `canary=30`, `canary=12.5`).
pub fn parse_assignment(text: &str) -> Result<(String, Weight), WeightError> {
    let (name, percent) = text
        .split_once('=')
        .filter(|(name, percent)| !name.trim().is_empty() && !percent.trim().is_empty())
        .ok_or_else(|| WeightError::Syntax(text.to_owned()))?;
    let percent = percent.trim().trim_end_matches('%').trim();
    let value: f64 = percent.parse().map_err(|_| WeightError::Percent {
        assignment: text.to_owned(),
        reason: format!("{percent:?} is not a number"),
    })?;
    let weight = parse_weight(value).map_err(|reason| WeightError::Percent {
        assignment: text.to_owned(),
        reason,
    })?;
    Ok((name.trim().to_owned(), weight))
}

impl Change {
    /// The route's new weights, in variant order.
    pub fn weights(&self, route: &RouteWeights) -> Result<Vec<Weight>, WeightError> {
        let index = |variant: &str| {
            route
                .variants
                .iter()
                .position(|v| v.name == variant)
                .ok_or_else(|| WeightError::UnknownVariant {
                    route: route.name.clone(),
                    variant: variant.to_owned(),
                    known: names(route.variants.iter().map(|v| v.name.as_str())),
                })
        };
        let Some(baseline) = route.variants.first() else {
            return Err(WeightError::Shape {
                path: route.name.clone(),
                reason: "the route has no variants".to_owned(),
            });
        };
        match self {
            Change::Abort => Ok(only(route.variants.len(), 0)),
            Change::Promote(variant) => Ok(only(route.variants.len(), index(variant)?)),
            Change::Set(assignments) => {
                let mut weights: Vec<Weight> = route.variants.iter().map(|v| v.weight).collect();
                let mut named = vec![false; weights.len()];
                for (variant, weight) in assignments {
                    let i = index(variant)?;
                    if std::mem::replace(&mut named[i], true) {
                        return Err(WeightError::NamedTwice(variant.clone()));
                    }
                    weights[i] = *weight;
                }
                let others: u64 = weights.iter().skip(1).map(|w| u64::from(w.0)).sum();
                let full = u64::from(Weight::FULL.0);
                if named[0] {
                    let total = others + u64::from(weights[0].0);
                    if total != full {
                        return Err(WeightError::NotHundred {
                            baseline: baseline.name.clone(),
                            total: thousandths_text(total),
                        });
                    }
                } else {
                    let remainder =
                        full.checked_sub(others)
                            .ok_or_else(|| WeightError::BaselineBelowZero {
                                baseline: baseline.name.clone(),
                                total: thousandths_text(others),
                            })?;
                    // At most FULL, so it fits.
                    weights[0] = Weight(u32::try_from(remainder).unwrap_or(u32::MAX));
                }
                Ok(weights)
            }
        }
    }

    /// Applies the change to `route` in the plugin configuration: only the weights of that
    /// route's variants change, and a ramp on the route is ended (see [`Change::apply_at`]).
    pub fn apply(&self, config: &mut PluginConfig, route: &str) -> Result<(), WeightError> {
        self.apply_at(config, route, crate::ramps::now_millis())
    }

    /// [`Change::apply`] at `now_ms` (Unix milliseconds). On a route with a ramp, the change
    /// starts from the weights in force at `now_ms` and removes the ramp: weights set by hand
    /// (an abort among them) hold from then on, and nobody moves but the users the change moves.
    pub fn apply_at(
        &self,
        config: &mut PluginConfig,
        route: &str,
        now_ms: u64,
    ) -> Result<(), WeightError> {
        let routes = read_routes(config)?;
        let mut current = find_route(&routes, route)?.clone();
        if let Some(ramp) = crate::ramps::views(config, now_ms).remove(route) {
            for (variant, weight) in current.variants.iter_mut().zip(ramp.now) {
                variant.weight = weight;
            }
        }
        let weights = self.weights(&current)?;
        if let Some(live) = config.routes.iter_mut().find(|r| r.name == route) {
            for (variant, weight) in live.variants.iter_mut().zip(weights) {
                variant.weight = weight.percent();
            }
            live.ramp = None;
        }
        Ok(())
    }
}

/// Every route's variants and weights, read from the plugin configuration.
pub fn read_routes(config: &PluginConfig) -> Result<Vec<RouteWeights>, WeightError> {
    config
        .routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let variants = route
                .variants
                .iter()
                .enumerate()
                .map(|(k, variant)| {
                    let weight = parse_weight(variant.weight).map_err(|reason| {
                        shape(format!("routes[{i}].variants[{k}].weight"), reason)
                    })?;
                    Ok(VariantWeight {
                        name: variant.name.clone(),
                        weight,
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(RouteWeights {
                name: route.name.clone(),
                variants,
            })
        })
        .collect()
}

/// The route named `route`, or an error listing the routes there are.
pub fn find_route<'a>(
    routes: &'a [RouteWeights],
    route: &str,
) -> Result<&'a RouteWeights, WeightError> {
    routes
        .iter()
        .find(|r| r.name == route)
        .ok_or_else(|| WeightError::UnknownRoute {
            route: route.to_owned(),
            known: names(routes.iter().map(|r| r.name.as_str())),
        })
}

/// A weight as JSON: an integer when whole (`30`, not `30.0`), else at most three decimals.
pub fn weight_json(weight: Weight) -> Value {
    if weight.0.is_multiple_of(1000) {
        Value::from(weight.0 / 1000)
    } else {
        Value::from(weight.percent())
    }
}

/// A weight as text, as it is written in the configuration: `30`, `12.5`, `0.001`.
pub fn weight_text(weight: Weight) -> String {
    thousandths_text(u64::from(weight.0))
}

fn thousandths_text(thousandths: u64) -> String {
    let (whole, fraction) = (thousandths / 1000, thousandths % 1000);
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

fn only(len: usize, winner: usize) -> Vec<Weight> {
    (0..len)
        .map(|i| if i == winner { Weight::FULL } else { Weight(0) })
        .collect()
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

fn shape(path: impl Into<String>, reason: impl Into<String>) -> WeightError {
    WeightError::Shape {
        path: path.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(weights: &[(&str, u32)]) -> RouteWeights {
        RouteWeights {
            name: "reviews".to_owned(),
            variants: weights
                .iter()
                .map(|(name, w)| VariantWeight {
                    name: (*name).to_owned(),
                    weight: Weight(*w * 1000),
                })
                .collect(),
        }
    }

    fn set(assignments: &[&str]) -> Change {
        Change::Set(
            assignments
                .iter()
                .map(|a| parse_assignment(a).expect("valid assignment"))
                .collect(),
        )
    }

    fn percents(weights: Vec<Weight>) -> Vec<String> {
        weights.into_iter().map(weight_text).collect()
    }

    #[test]
    fn set_weight_table() {
        let three = route(&[("stable", 80), ("canary", 10), ("blue", 10)]);
        type Case<'a> = (&'a str, &'a [&'a str], Result<&'a [&'a str], &'a str>);
        let cases: &[Case] = &[
            (
                "baseline takes the remainder",
                &["canary=30"],
                Ok(&["60", "30", "10"]),
            ),
            (
                "two named",
                &["canary=30", "blue=20"],
                Ok(&["50", "30", "20"]),
            ),
            ("decimals", &["canary=12.5"], Ok(&["77.5", "12.5", "10"])),
            (
                "thousandths",
                &["canary=0.001"],
                Ok(&["89.999", "0.001", "10"]),
            ),
            ("to zero", &["canary=0", "blue=0"], Ok(&["100", "0", "0"])),
            (
                "baseline named, sums to 100",
                &["stable=50", "canary=25", "blue=25"],
                Ok(&["50", "25", "25"]),
            ),
            (
                "baseline named, others kept",
                &["stable=70", "canary=20"],
                Ok(&["70", "20", "10"]),
            ),
            (
                "baseline named, not 100",
                &["stable=50", "canary=30"],
                Err("must sum to 100"),
            ),
            ("baseline below zero", &["canary=95"], Err("below 0")),
            ("exactly all", &["canary=90"], Ok(&["0", "90", "10"])),
            (
                "unknown variant",
                &["green=5"],
                Err("no variant named \"green\""),
            ),
            (
                "named twice",
                &["canary=5", "canary=6"],
                Err("more than once"),
            ),
        ];
        for (label, assignments, want) in cases {
            let got = set(assignments).weights(&three).map(percents);
            match want {
                Ok(want) => assert_eq!(
                    got,
                    Ok(want.iter().map(|s| s.to_string()).collect()),
                    "{label}"
                ),
                Err(fragment) => {
                    let error = got.expect_err(label).to_string();
                    assert!(error.contains(fragment), "{label}: {error}");
                }
            }
        }
    }

    /// A change to a ramping route starts from the weights in force and ends the ramp.
    #[test]
    fn a_change_ends_a_ramp_from_the_weights_in_force() {
        let ramped = config(json!({"routes": [{"name": "reviews", "variants": [
            {"name": "stable", "weight": 80}, {"name": "canary", "weight": 0},
            {"name": "blue", "weight": 20}],
            "ramp": {"variant": "canary", "from": 0, "to": 50,
                     "start": "2026-12-07T12:00:00Z", "duration": "2h"}}]}));
        let after = |change: Change, at: &str| {
            let mut live = ramped.clone();
            let at = crate::ramps::parse_at(at).unwrap();
            change.apply_at(&mut live, "reviews", at).unwrap();
            let route = &live.routes[0];
            let weights: Vec<f64> = route.variants.iter().map(|v| v.weight).collect();
            (weights, route.ramp.is_some())
        };
        let hour_in = "2026-12-07T13:00:00Z";
        let cases = [
            ("abort", Change::Abort, hour_in, [100.0, 0.0, 0.0]),
            (
                "canary kept at its 25 % now",
                set(&["blue=10"]),
                hour_in,
                [65.0, 25.0, 10.0],
            ),
            (
                "promote",
                Change::Promote("canary".into()),
                hour_in,
                [0.0, 100.0, 0.0],
            ),
            (
                "before the start",
                set(&["blue=10"]),
                "2026-12-07T11:00:00Z",
                [90.0, 0.0, 10.0],
            ),
        ];
        for (label, change, at, want) in cases {
            assert_eq!(after(change, at), (want.to_vec(), false), "{label}");
        }
    }

    #[test]
    fn promote_and_abort() {
        let r = route(&[("stable", 70), ("canary", 20), ("blue", 10)]);
        assert_eq!(
            percents(Change::Promote("canary".into()).weights(&r).unwrap()),
            ["0", "100", "0"]
        );
        assert_eq!(
            percents(Change::Promote("stable".into()).weights(&r).unwrap()),
            ["100", "0", "0"]
        );
        assert_eq!(
            percents(Change::Abort.weights(&r).unwrap()),
            ["100", "0", "0"]
        );
        let error = Change::Promote("green".into()).weights(&r).unwrap_err();
        assert!(
            error.to_string().contains("variants: stable, canary, blue"),
            "{error}"
        );
    }

    #[test]
    fn assignment_syntax() {
        assert_eq!(
            parse_assignment("canary=30"),
            Ok(("canary".into(), Weight(30_000)))
        );
        assert_eq!(
            parse_assignment("canary=30%"),
            Ok(("canary".into(), Weight(30_000)))
        );
        assert_eq!(
            parse_assignment("canary=33.333"),
            Ok(("canary".into(), Weight(33_333)))
        );
        for bad in [
            "canary",
            "canary=",
            "=30",
            "canary=abc",
            "canary=101",
            "canary=-1",
            "canary=1.0001",
        ] {
            assert!(parse_assignment(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn weights_are_written_with_at_most_three_decimals() {
        assert_eq!(weight_json(Weight(30_000)).to_string(), "30");
        assert_eq!(weight_json(Weight(12_500)).to_string(), "12.5");
        assert_eq!(weight_json(Weight(33_333)).to_string(), "33.333");
        assert_eq!(weight_json(Weight(1)).to_string(), "0.001");
        assert_eq!(weight_json(Weight(0)).to_string(), "0");
        assert_eq!(weight_text(Weight(66_667)), "66.667");
        assert_eq!(weight_text(Weight(100_000)), "100");
    }

    fn config(document: Value) -> PluginConfig {
        canary_filter::config::decode(document.to_string().as_bytes()).expect("decodes")
    }

    #[test]
    fn apply_changes_only_the_weights_of_one_route() {
        let mut live = config(json!({
            "decisionHeader": "x-variant",
            "routes": [
                {"name": "other", "variants": [{"name": "stable", "weight": 50}, {"name": "canary", "weight": 50}]},
                {"name": "reviews", "match": {"hosts": ["reviews"]},
                 "variants": [{"name": "stable", "weight": 90.0}, {"name": "canary", "weight": 10}],
                 "stickiness": {"salt": "s"}}
            ]
        }));
        let mut want = live.clone();
        set(&["canary=12.5"]).apply(&mut live, "reviews").unwrap();
        want.routes[1].variants[0].weight = 87.5;
        want.routes[1].variants[1].weight = 12.5;
        assert_eq!(live, want);
    }

    #[test]
    fn apply_reports_an_unknown_route() {
        let mut live = config(
            json!({"routes": [{"name": "reviews", "variants": [{"name": "stable", "weight": 100}]}]}),
        );
        let before = live.clone();
        let error = Change::Abort.apply(&mut live, "ratings").unwrap_err();
        assert_eq!(
            error.to_string(),
            "no route named \"ratings\" (routes: reviews)"
        );
        assert_eq!(live, before);
    }

    #[test]
    fn read_routes_names_the_path_of_a_bad_weight() {
        let live = config(json!({"routes": [{"name": "r", "variants": [
            {"name": "a", "weight": 100}, {"name": "b", "weight": 0.0001}]}]}));
        let error = read_routes(&live).unwrap_err().to_string();
        assert!(
            error.starts_with("routes[0].variants[1].weight: "),
            "{error}"
        );
    }
}
