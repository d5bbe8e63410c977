//! `rollout --ramp`: a step that moves the variant's weight to the step's weight gradually, with
//! the route's time ramp, instead of in one jump. One write per step: the weights in force become
//! the configured ones and a ramp from the variant's weight now to the step's weight, starting
//! now and lasting the step's interval, is added. The proxies then move the weight by themselves
//! (see the filter's `table::ramp`).

use std::time::Duration;

use canary_filter::config::RampConfig;
use canary_filter::{PluginConfig, Weight};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::state::StepRamp;
use crate::weights::{self, weight_text, Change, WeightError};

/// Ramps `variant` of route `route` from its weight in force at `now_ms` (Unix milliseconds)
/// to `to` over `duration`, starting at `now_ms`.
///
/// The weights in force at `now_ms` become the configured ones, ending a ramp already on the
/// route (a step interrupted by a restart, or the previous step's finished ramp), so nobody
/// moves at the write. The ramp then takes the weight the variant gains from the baseline, as
/// a jump to `to` would; a `to` that would leave the baseline below 0 is refused with
/// `set-weight`'s error, so the other variants keep their weights. A variant already at `to`
/// is held there, with no ramp.
pub fn apply_at(
    config: &mut PluginConfig,
    route: &str,
    variant: &str,
    to: Weight,
    duration: Duration,
    now_ms: u64,
) -> Result<(), WeightError> {
    // Naming no variant keeps every weight as it is at `now_ms` and ends the ramp.
    Change::Set(Vec::new()).apply_at(config, route, now_ms)?;
    let routes = weights::read_routes(config)?;
    let held = weights::find_route(&routes, route)?;
    // The weights at the ramp's end, checked as a jump to them would be.
    Change::Set(vec![(variant.to_owned(), to)]).weights(held)?;
    let from = held
        .variants
        .iter()
        .find(|v| v.name == variant)
        .map_or(Weight(0), |v| v.weight);
    if from == to {
        return Ok(());
    }
    if let Some(live) = config.routes.iter_mut().find(|r| r.name == route) {
        live.ramp = Some(RampConfig {
            variant: variant.to_owned(),
            from: from.percent(),
            to: to.percent(),
            start: rfc3339(now_ms),
            duration: duration_text(duration),
        });
    }
    Ok(())
}

/// The ramp on route `route` of `config`, as the rollout's record keeps it.
pub fn recorded(config: &PluginConfig, route: &str) -> Option<StepRamp> {
    let ramp = config
        .routes
        .iter()
        .find(|r| r.name == route)?
        .ramp
        .as_ref()?;
    let weight = |percent: f64| canary_filter::table::parse_weight(percent).ok();
    Some(StepRamp {
        from: weight_text(weight(ramp.from)?),
        to: weight_text(weight(ramp.to)?),
        start: ramp.start.clone(),
        duration: ramp.duration.clone(),
    })
}

/// Unix milliseconds as an RFC 3339 time in UTC, to the millisecond:
/// `2026-12-07T12:00:30.125Z`.
fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        // Unix milliseconds from the system clock are within the years RFC 3339 writes.
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// A duration as the configuration writes it: `30s` when whole seconds, else `1500ms`.
fn duration_text(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn config(document: Value) -> PluginConfig {
        canary_filter::config::decode(document.to_string().as_bytes()).expect("decodes")
    }

    /// 2026-12-07T12:00:00Z.
    const NOON: u64 = 1_796_644_800_000;

    fn three(stable: f64, canary: f64, blue: f64) -> PluginConfig {
        config(json!({"routes": [
            {"name": "other", "variants": [{"name": "stable", "weight": 100}]},
            {"name": "reviews", "variants": [
                {"name": "stable", "weight": stable}, {"name": "canary", "weight": canary},
                {"name": "blue", "weight": blue}],
             "stickiness": {"salt": "s"}}]}))
    }

    fn weights_of(config: &PluginConfig) -> Vec<f64> {
        config.routes[1].variants.iter().map(|v| v.weight).collect()
    }

    /// The filter's own weights for the route at `at_ms`, in percent.
    fn in_force(config: &PluginConfig, at_ms: u64) -> Vec<f64> {
        let table = canary_filter::RoutingTable::try_from(config).expect("the filter takes it");
        table.routes[1]
            .weights_at(at_ms)
            .iter()
            .take(3)
            .map(|w| w.percent())
            .collect()
    }

    #[test]
    fn a_step_ramps_from_the_weight_in_force_to_the_step_weight() {
        let mut live = three(70.0, 20.0, 10.0);
        let before = live.clone();
        apply_at(
            &mut live,
            "reviews",
            "canary",
            Weight(50_000),
            Duration::from_secs(30),
            NOON + 125,
        )
        .unwrap();
        assert_eq!(
            live.routes[1].ramp,
            Some(RampConfig {
                variant: "canary".into(),
                from: 20.0,
                to: 50.0,
                start: "2026-12-07T12:00:00.125Z".into(),
                duration: "30s".into(),
            })
        );
        assert_eq!(
            serde_json::to_value(&live).unwrap()["routes"][1]["ramp"],
            json!({"variant": "canary", "from": 20, "to": 50,
                   "start": "2026-12-07T12:00:00.125Z", "duration": "30s"}),
            "written as an operator would write it"
        );
        assert_eq!(
            weights_of(&live),
            [70.0, 20.0, 10.0],
            "nobody moves at the write"
        );
        let mut rest = live.clone();
        rest.routes[1].ramp = None;
        assert_eq!(rest, before, "only the ramp is added");
        assert_eq!(in_force(&live, NOON + 125), [70.0, 20.0, 10.0]);
        assert_eq!(
            in_force(&live, NOON + 15_125),
            [55.0, 35.0, 10.0],
            "halfway: the baseline gives the weight, blue keeps its own"
        );
        assert_eq!(in_force(&live, NOON + 30_125), [40.0, 50.0, 10.0]);
        assert_eq!(
            recorded(&live, "reviews"),
            Some(StepRamp {
                from: "20".into(),
                to: "50".into(),
                start: "2026-12-07T12:00:00.125Z".into(),
                duration: "30s".into(),
            })
        );
        assert_eq!(recorded(&live, "other"), None);
    }

    #[test]
    fn the_next_step_starts_where_the_ramp_is() {
        let mut live = three(90.0, 0.0, 10.0);
        let step = Duration::from_millis(4_500);
        apply_at(&mut live, "reviews", "canary", Weight(20_000), step, NOON).unwrap();
        assert_eq!(live.routes[1].ramp.as_ref().unwrap().duration, "4500ms");

        // The next step, written once the first ramp has ended: from its final weights.
        let end = NOON + 4_500;
        apply_at(&mut live, "reviews", "canary", Weight(50_000), step, end).unwrap();
        assert_eq!(weights_of(&live), [70.0, 20.0, 10.0]);
        let ramp = live.routes[1].ramp.as_ref().unwrap();
        assert_eq!((ramp.from, ramp.to), (20.0, 50.0));
        assert_eq!(ramp.start, "2026-12-07T12:00:04.5Z");

        // A step written a third of the way through a ramp (a resumed rollout) starts there.
        let third = end + 1_500;
        apply_at(&mut live, "reviews", "canary", Weight(50_000), step, third).unwrap();
        assert_eq!(weights_of(&live), [60.0, 30.0, 10.0]);
        let ramp = live.routes[1].ramp.as_ref().unwrap();
        assert_eq!((ramp.from, ramp.to), (30.0, 50.0));
    }

    #[test]
    fn a_variant_at_the_step_weight_is_held_without_a_ramp() {
        let mut live = three(90.0, 0.0, 10.0);
        let step = Duration::from_secs(4);
        apply_at(&mut live, "reviews", "canary", Weight(20_000), step, NOON).unwrap();
        // The step repeated for lack of data, after its ramp has ended.
        apply_at(
            &mut live,
            "reviews",
            "canary",
            Weight(20_000),
            step,
            NOON + 4_000,
        )
        .unwrap();
        assert_eq!(weights_of(&live), [70.0, 20.0, 10.0]);
        assert_eq!(live.routes[1].ramp, None);
        assert_eq!(recorded(&live, "reviews"), None);
    }

    #[test]
    fn a_step_leaving_the_baseline_below_zero_is_refused() {
        let mut live = three(70.0, 20.0, 10.0);
        let before = live.clone();
        let step = Duration::from_secs(4);
        let error = apply_at(&mut live, "reviews", "canary", Weight::FULL, step, NOON)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("leaving the baseline \"stable\" below 0"),
            "{error}"
        );
        assert_eq!(live, before);
        let error = apply_at(&mut live, "reviews", "green", Weight(5_000), step, NOON)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no variant named \"green\""), "{error}");
    }

    /// A rollback is `set-weight`'s change to 0: it ends the step's ramp from the weights in
    /// force and sends everybody on the variant to the baseline.
    #[test]
    fn a_rollback_mid_ramp_ends_the_ramp_with_the_variant_at_zero() {
        let mut live = three(70.0, 20.0, 10.0);
        let step = Duration::from_secs(30);
        apply_at(&mut live, "reviews", "canary", Weight(50_000), step, NOON).unwrap();
        let rollback = Change::Set(vec![("canary".to_owned(), Weight(0))]);
        rollback
            .apply_at(&mut live, "reviews", NOON + 10_000)
            .unwrap();
        assert_eq!(live.routes[1].ramp, None);
        assert_eq!(weights_of(&live), [90.0, 0.0, 10.0]);
        assert_eq!(
            in_force(&live, NOON + 30_000),
            [90.0, 0.0, 10.0],
            "and stays"
        );
        assert_eq!(recorded(&live, "reviews"), None);
    }

    #[test]
    fn durations_and_times_as_written() {
        assert_eq!(duration_text(Duration::from_secs(30)), "30s");
        assert_eq!(duration_text(Duration::from_millis(1_250)), "1250ms");
        assert_eq!(rfc3339(NOON), "2026-12-07T12:00:00Z");
        assert_eq!(rfc3339(NOON + 7), "2026-12-07T12:00:00.007Z");
        assert_eq!(
            canary_filter::table::parse_time(&rfc3339(NOON + 7)),
            Ok(NOON as i64 + 7),
            "the filter reads it back"
        );
    }
}
