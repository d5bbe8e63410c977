//! Ramps as canaryctl shows them: a ramping route's weights now and at the ramp's end,
//! computed by the filter's own code from the same configuration.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use canary_filter::config::RampConfig;
use canary_filter::{PluginConfig, RoutingTable, Weight};

/// One ramping route.
#[derive(Debug, Clone, PartialEq)]
pub struct RampView {
    /// The ramp as configured.
    pub config: RampConfig,
    /// Every variant's weight at the time asked about, in variant order.
    pub now: Vec<Weight>,
    /// Every variant's weight from the ramp's end on.
    pub end: Vec<Weight>,
    /// How far through the ramp that time is, from 0 (not started) to 1 (done).
    pub progress: f64,
}

/// The ramping routes of a plugin configuration at `now_ms` (Unix milliseconds), by route name.
/// A configuration the filter rejects has none: the filter would not run it.
pub fn views(config: &PluginConfig, now_ms: u64) -> BTreeMap<String, RampView> {
    let Ok(table) = RoutingTable::try_from(config) else {
        return BTreeMap::new();
    };
    // A configuration that compiles has every route compiled, in order.
    table
        .routes
        .iter()
        .zip(&config.routes)
        .filter_map(|(route, configured)| {
            let ramp = route.ramp.as_ref()?;
            let config = configured.ramp.clone()?;
            let n = route.variants.len();
            let end = u64::try_from(ramp.end_ms()).unwrap_or_default();
            let elapsed = now_ms as f64 - ramp.start_ms as f64;
            let view = RampView {
                config,
                now: route.weights_at(now_ms).into_iter().take(n).collect(),
                end: route.weights_at(end).into_iter().take(n).collect(),
                progress: (elapsed / ramp.duration_ms as f64).clamp(0.0, 1.0),
            };
            Some((route.name.clone(), view))
        })
        .collect()
}

/// The system clock, in Unix milliseconds.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `--at`: an RFC 3339 time, as Unix milliseconds.
pub fn parse_at(text: &str) -> Result<u64, String> {
    let ms = canary_filter::table::parse_time(text)?;
    u64::try_from(ms).map_err(|_| format!("{text:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn config(document: Value) -> PluginConfig {
        canary_filter::config::decode(document.to_string().as_bytes()).expect("decodes")
    }

    #[test]
    fn a_ramping_route_shows_its_weights_now_and_at_the_end() {
        let ramped = config(json!({"routes": [
            {"name": "plain", "match": {"hosts": ["plain"]},
             "variants": [{"name": "stable", "weight": 100}]},
            {"name": "reviews", "variants": [
                {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
             "ramp": {"variant": "canary", "from": 10, "to": 50,
                      "start": "2026-12-07T12:00:00Z", "duration": "2h"}}]}));
        let start = parse_at("2026-12-07T12:00:00Z").unwrap();
        let views = views(&ramped, start + 1_800_000);
        assert_eq!(views.keys().collect::<Vec<_>>(), ["reviews"]);
        let view = &views["reviews"];
        assert_eq!(
            view.now,
            [Weight(80_000), Weight(20_000)],
            "a quarter through"
        );
        assert_eq!(view.end, [Weight(50_000), Weight(50_000)]);
        assert_eq!(view.progress, 0.25);
        assert_eq!(view.config.duration, "2h");

        let rejected = config(json!({"routes": [{"name": "reviews", "variants": [
            {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
            "ramp": {"variant": "canary", "from": 0, "to": 50,
                     "start": "2026-12-07T12:00:00Z", "duration": "2h"}}]}));
        assert!(super::views(&rejected, start).is_empty());
    }

    #[test]
    fn at_reads_rfc3339() {
        assert_eq!(parse_at("1970-01-01T00:00:01.5Z"), Ok(1_500));
        assert!(parse_at("1969-12-31T23:59:59Z")
            .unwrap_err()
            .contains("before 1970"));
        assert!(parse_at("tomorrow")
            .unwrap_err()
            .contains("not an RFC 3339 time"));
    }
}
