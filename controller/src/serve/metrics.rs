//! `/metrics`: the controller's state in the Prometheus text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::fleet::Fleet;
use super::store::Snapshot;
use crate::weights;

/// How much of Envoy's NACK reason goes into a label.
const MAX_REASON: usize = 200;

pub fn render(fleet: &Fleet, snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let counters = &fleet.counters;
    for (name, help, value) in [
        (
            "canaryctl_ecds_pushes_total",
            "Configurations sent to Envoys over ECDS.",
            &counters.pushes,
        ),
        (
            "canaryctl_ecds_acks_total",
            "Configurations Envoys accepted (ACK).",
            &counters.acks,
        ),
        (
            "canaryctl_ecds_nacks_total",
            "Configurations Envoys rejected (NACK).",
            &counters.nacks,
        ),
        (
            "canaryctl_ecds_streams_refused_total",
            "ECDS streams refused because the controller tracked as many Envoys as it may.",
            &counters.refused,
        ),
        (
            "canaryctl_ecds_streams_unauthenticated_total",
            "ECDS streams and fetches refused for want of a valid bearer token.",
            &counters.unauthenticated,
        ),
    ] {
        metric(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
    let envoys = fleet.envoys();
    metric(
        &mut out,
        "canaryctl_envoys_connected",
        "gauge",
        "Envoys with an open ECDS stream.",
    );
    let _ = writeln!(
        out,
        "canaryctl_envoys_connected {}",
        fleet.connected_count()
    );
    metric(
        &mut out,
        "canaryctl_envoy_rejecting",
        "gauge",
        "1 while an Envoy has rejected the latest configuration it was sent and serves an older one.",
    );
    for envoy in &envoys {
        let _ = writeln!(
            out,
            "canaryctl_envoy_rejecting{{node=\"{}\"}} {}",
            escape(&envoy.node),
            u8::from(envoy.nack.is_some())
        );
    }
    metric(
        &mut out,
        "canaryctl_envoy_nack_info",
        "gauge",
        "The configuration an Envoy rejected last, and Envoy's reason, until it accepts a newer one.",
    );
    for envoy in &envoys {
        if let Some(nack) = &envoy.nack {
            let reason: String = nack.reason.chars().take(MAX_REASON).collect();
            let _ = writeln!(
                out,
                "canaryctl_envoy_nack_info{{node=\"{}\",version=\"{}\",reason=\"{}\"}} 1",
                escape(&envoy.node),
                escape(&nack.version),
                escape(&reason)
            );
        }
    }
    metric(
        &mut out,
        "canaryctl_config_info",
        "gauge",
        "The configuration version being served.",
    );
    let _ = writeln!(
        out,
        "canaryctl_config_info{{version=\"{}\"}} 1",
        escape(&snapshot.version)
    );
    metric(
        &mut out,
        "canaryctl_route_weight_percent",
        "gauge",
        "Each variant's weight in the configuration served.",
    );
    for route in weights::read_routes(&snapshot.plugin_config).unwrap_or_default() {
        for variant in route.variants {
            let _ = writeln!(
                out,
                "canaryctl_route_weight_percent{{route=\"{}\",variant=\"{}\"}} {}",
                escape(&route.name),
                escape(&variant.name),
                weights::weight_text(variant.weight)
            );
        }
    }
    out
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the exposition format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exposes_counters_envoys_and_weights() {
        let fleet = Fleet::default();
        assert!(fleet.connected("edge-\"1\"", "edge"));
        fleet.sent("edge-\"1\"", "v2");
        fleet.nacked("edge-\"1\"", "v2", "v1", "no");
        let snapshot = Snapshot {
            version: "v2".into(),
            plugin_config: json!({"routes": [{"name": "web", "variants": [
                {"name": "stable", "weight": 87.5}, {"name": "canary", "weight": 12.5}]}]}),
            resource: None,
        };
        let text = render(&fleet, &snapshot);
        for line in [
            "canaryctl_ecds_pushes_total 1",
            "canaryctl_ecds_nacks_total 1",
            "canaryctl_ecds_acks_total 0",
            "canaryctl_envoys_connected 1",
            "canaryctl_envoy_rejecting{node=\"edge-\\\"1\\\"\"} 1",
            "canaryctl_envoy_nack_info{node=\"edge-\\\"1\\\"\",version=\"v2\",reason=\"no\"} 1",
            "canaryctl_config_info{version=\"v2\"} 1",
            "canaryctl_route_weight_percent{route=\"web\",variant=\"canary\"} 12.5",
            "# TYPE canaryctl_route_weight_percent gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
