//! Mesh lanes across two real Envoys sharing a seal, each with its own upstreams.
//!
//! The front decides service A (routes rendered with lanes: the variant's upstream, standing
//! for application A, receives the sealed decision). The hop is A's outbound sidecar to
//! service B, whose route trusts incoming decisions; the test plays application A and sends the
//! value A received on to the hop, as an application propagates tracing headers. A lane is kept
//! when its seal is this configuration's and B has the variant, also for users whose own hash
//! at the hop gives the other variant; anything else is recomputed, and a variant at weight 0
//! that no rule names (as after an abort) is not kept.

use canary_e2e::{client, filter_failures, for_each_build, get, Build, Envoy, Reply, Upstream};
use serde_json::json;

/// The seal both filters are configured with.
const SEAL: &str = "Lanes-e2e_seal-0123456789";
/// Another seal of the same length.
const OTHER: &str = "Other-e2e_seal-0123456789";

/// A: stable and canary by weight, and `beta`, which B does not have, for the `x-beta` rule.
fn front_config() -> String {
    json!({
        "debugHeader": true,
        "seal": SEAL,
        "routes": [{
            "name": "a",
            "variants": [
                { "name": "stable", "weight": 50 },
                { "name": "canary", "weight": 50 },
                { "name": "beta", "weight": 0 },
            ],
            "targeting": [
                { "name": "beta", "header": "x-beta", "equals": "on", "variant": "beta" },
            ],
            "stickiness": { "keys": [{ "header": "x-user-id" }], "salt": "front" },
        }],
    })
    .to_string()
}

/// B trusts incoming decisions; its own salt sends about half the users elsewhere than A's.
fn hop_config(canary_weight: u32) -> String {
    json!({
        "debugHeader": true,
        "seal": SEAL,
        "routes": [{
            "name": "b",
            "trustIncoming": true,
            "variants": [
                { "name": "stable", "weight": 100 - canary_weight },
                { "name": "canary", "weight": canary_weight },
            ],
            "stickiness": { "keys": [{ "header": "x-user-id" }], "salt": "hop" },
        }],
    })
    .to_string()
}

/// The variant B's own hash gives `user` at `canary_weight`.
fn own_variant(user: &str, canary_weight: u32) -> String {
    let table = canary_filter::parse(hop_config(canary_weight).as_bytes()).expect("valid");
    let route = &table.routes[0];
    route.variants[route.assign(user.as_bytes())].name.clone()
}

struct Lane {
    front: Envoy,
    hop: Envoy,
    /// Kept for as long as the Envoys: an upstream stops when dropped.
    upstreams: Vec<Upstream>,
}

async fn lane(build: Build) -> Lane {
    let mut upstreams = Vec::new();
    for name in ["a-stable", "a-canary", "a-beta", "b-stable", "b-canary"] {
        upstreams.push(Upstream::start(name).await);
    }
    let front = Envoy::builder()
        .build(build)
        .variant("stable", &upstreams[0])
        .variant("canary", &upstreams[1])
        .variant("beta", &upstreams[2])
        .sealed_routes_with_lanes(&[SEAL])
        .plugin_config(&front_config())
        .start()
        .await;
    let hop = Envoy::builder()
        .build(build)
        .variant("stable", &upstreams[3])
        .variant("canary", &upstreams[4])
        .sealed_routes(&[SEAL])
        .plugin_config(&hop_config(50))
        .start()
        .await;
    Lane {
        front,
        hop,
        upstreams,
    }
}

async fn send(envoy: &Envoy, user: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("x-user-id", user)];
    headers.extend_from_slice(extra);
    get(&client(), &envoy.url("/"), &headers)
        .await
        .unwrap_or_else(|e| panic!("{user} {extra:?}: {e}"))
}

/// Application A: the decision header it received, sent on with the user's call to B.
async fn propagate(hop: &Envoy, user: &str, received: &str) -> Reply {
    send(hop, user, &[("x-canary-variant", received)]).await
}

async fn a_lane_is_kept_when_sealed_and_the_variant_exists(build: Build) {
    let Lane {
        front,
        hop,
        upstreams: _upstreams,
    } = lane(build).await;
    let mut kept_against_own_hash = 0;
    for user in (0..200).map(|i| format!("user-{i}")) {
        let at_a = send(&front, &user, &[]).await;
        let variant = at_a
            .upstream
            .as_deref()
            .and_then(|u| u.strip_prefix("a-"))
            .unwrap_or_else(|| panic!("{user}: {at_a:?}"))
            .to_owned();
        let received = at_a.seen_variant.clone().unwrap_or_default();
        assert_eq!(
            received,
            format!("{variant}.{SEAL}"),
            "{user}: application A receives the sealed decision"
        );
        let at_b = propagate(&hop, &user, &received).await;
        assert_eq!(
            (at_b.upstream.as_deref(), at_b.decision.as_deref()),
            (
                Some(format!("b-{variant}").as_str()),
                Some(format!("b;{variant};lane").as_str())
            ),
            "{user}: B serves the variant A was decided"
        );
        assert_eq!(
            at_b.seen_variant.as_deref(),
            Some(""),
            "{user}: B's route, the last hop, removes the header"
        );
        if own_variant(&user, 50) != variant {
            kept_against_own_hash += 1;
        }
    }
    assert!(
        kept_against_own_hash > 50,
        "users whose own hash at B gives the other variant keep A's: {kept_against_own_hash} of 200"
    );

    // Without the lane, B decides by its own hash.
    for user in ["user-1", "user-2", "user-3"] {
        let own = own_variant(user, 50);
        let at_b = send(&hop, user, &[]).await;
        assert_eq!(at_b.decision, Some(format!("b;{own};hash")), "{user}");
    }
    let stats = hop.prometheus().await;
    assert!(
        stats.contains("canary_reason=\"lane\""),
        "lane decisions are counted as such"
    );
    assert!(
        !front.prometheus().await.contains("canary_reason=\"lane\""),
        "a route that trusts no incoming decision has no lane counter"
    );
    assert!(!stats.contains(SEAL) && !hop.log().contains(SEAL));
    for envoy in [&front, &hop] {
        assert_eq!(filter_failures(&envoy.log()), Vec::<&str>::new());
    }
}

async fn any_other_incoming_value_is_recomputed(build: Build) {
    let Lane {
        front,
        hop,
        upstreams: _upstreams,
    } = lane(build).await;
    // Users whose own variant at B is stable, so that a lane into canary shows.
    let users: Vec<String> = (0..100)
        .map(|i| format!("user-{i}"))
        .filter(|u| own_variant(u, 50) == "stable")
        .take(5)
        .collect();
    assert_eq!(users.len(), 5);
    let user = &users[0];
    let beta = send(&front, user, &[("x-beta", "on")]).await;
    assert_eq!(beta.upstream.as_deref(), Some("a-beta"), "{beta:?}");
    let beta = beta.seen_variant.unwrap_or_default();
    assert_eq!(beta, format!("beta.{SEAL}"), "a variant B does not have");

    let sealed = format!("canary.{SEAL}");
    let forgeries: Vec<(&str, Vec<String>)> = vec![
        ("bare variant name", vec!["canary".to_owned()]),
        ("another seal", vec![format!("canary.{OTHER}")]),
        ("a seal one character longer", vec![format!("{sealed}0")]),
        (
            "a seal one character shorter",
            vec![sealed[..sealed.len() - 1].to_owned()],
        ),
        ("upper case", vec![format!("CANARY.{SEAL}")]),
        ("the seal alone", vec![SEAL.to_owned()]),
        ("two values", vec![sealed.clone(), sealed.clone()]),
        (
            "a variant B does not have, decided by A",
            vec![beta.clone()],
        ),
    ];
    for (label, values) in &forgeries {
        for user in &users {
            let mut headers = vec![("x-user-id", user.as_str())];
            headers.extend(values.iter().map(|v| ("x-canary-variant", v.as_str())));
            let at_b = get(&client(), &hop.url("/"), &headers)
                .await
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(
                (at_b.upstream.as_deref(), at_b.decision.as_deref()),
                (Some("b-stable"), Some("b;stable;hash")),
                "{label} {values:?}, {user}: recomputed by B's own hash"
            );
        }
    }
    // The sealed value itself is kept, for the same users.
    for user in &users {
        let at_b = propagate(&hop, user, &sealed).await;
        assert_eq!(at_b.upstream.as_deref(), Some("b-canary"), "{user}");
    }

    // B's canary aborted (weight 0, and no rule names it): a lane into it is no longer kept,
    // while a lane into stable still is.
    assert_eq!(hop.push_config(&hop_config(0)).await.rejected, 0);
    for user in &users {
        let at_b = propagate(&hop, user, &sealed).await;
        assert_eq!(
            at_b.decision.as_deref(),
            Some("b;stable;hash"),
            "{user}: the abort wins"
        );
        let at_b = propagate(&hop, user, &format!("stable.{SEAL}")).await;
        assert_eq!(at_b.decision.as_deref(), Some("b;stable;lane"), "{user}");
    }
    for envoy in [&front, &hop] {
        assert_eq!(filter_failures(&envoy.log()), Vec::<&str>::new());
    }
}

for_each_build!(
    a_lane_is_kept_when_sealed_and_the_variant_exists,
    any_other_incoming_value_is_recomputed,
);
