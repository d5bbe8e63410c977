//! The routing filter in a real Envoy: split, stickiness, live weight changes, targeting,
//! the decision header, the identity cookie, rejected updates and metrics. Each test runs
//! against both builds, the proxy-wasm filter (`wasm::`) and the dynamic module
//! (`dynamic_module::`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use canary_e2e::{
    client, concurrently, for_each_build, get, variants_of, Build, Envoy, Load, Upstream,
};

fn config(canary_weight: f64) -> String {
    serde_json::json!({
        "debugHeader": true,
        // Test 8 counts responses per status class.
        "metrics": { "responses": true },
        "routes": [{
            "name": "web",
            "variants": [
                { "name": "stable", "weight": 100.0 - canary_weight },
                { "name": "canary", "weight": canary_weight }
            ],
            "targeting": [
                { "name": "optout", "cookie": "canary", "equals": "never", "variant": "stable" },
                { "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" },
                { "name": "rings", "header": "x-user-group", "in": ["beta", "staff"], "variant": "canary" },
                { "name": "pin-stable", "header": "x-user-group", "equals": "ops", "variant": "stable" },
                { "name": "optin", "cookie": "canary", "equals": "always", "variant": "canary" }
            ],
            "stickiness": {
                "keys": [ { "header": "x-user-id" } ],
                "cookie": { "name": "canary_id", "maxAge": 3600, "path": "/", "secure": true,
                            "httpOnly": true, "sameSite": "Strict" },
                "salt": "web-2026-11"
            }
        }]
    })
    .to_string()
}

struct Setup {
    envoy: Envoy,
    _stable: Upstream,
    _canary: Upstream,
}

async fn setup(canary_weight: f64, build: Build) -> Setup {
    let stable = Upstream::builder("stable")
        .set_cookie("upstream_session=abc; Path=/")
        .start()
        .await;
    let canary = Upstream::builder("canary")
        .set_cookie("upstream_session=abc; Path=/")
        .start()
        .await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config(canary_weight))
        .start()
        .await;
    Setup {
        envoy,
        _stable: stable,
        _canary: canary,
    }
}

fn users(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn served(replies: &[canary_e2e::Reply]) -> Vec<String> {
    replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{r:?}");
            r.upstream.clone().expect("x-upstream")
        })
        .collect()
}

fn share(variants: &[String], name: &str) -> f64 {
    variants.iter().filter(|v| *v == name).count() as f64 * 100.0 / variants.len() as f64
}

/// 20,000 distinct user ids at 90/10: the canary share is within one point of 10 %.
async fn split_matches_weights_for_20000_users(build: Build) {
    let s = setup(10.0, build).await;
    let variants = served(&variants_of(&s.envoy, &users(20_000, "split"), 64).await);
    let canary = share(&variants, "canary");
    assert!(
        (canary - 10.0).abs() <= 1.0,
        "canary share {canary:.2} % at weight 10"
    );
    // The upstream saw the decision the filter made, and nothing else.
    let replies = variants_of(&s.envoy, &users(200, "seen"), 16).await;
    for r in replies {
        assert_eq!(r.seen_variant, r.upstream, "{r:?}");
    }
}

/// Each user keeps their variant over 20 requests and gets the same from a second Envoy.
async fn assignment_is_sticky_across_requests_and_envoys(build: Build) {
    let first = setup(30.0, build).await;
    let second = setup(30.0, build).await;
    let ids = users(300, "sticky");
    let reference = served(&variants_of(&first.envoy, &ids, 32).await);
    assert!(reference.iter().any(|v| v == "canary") && reference.iter().any(|v| v == "stable"));
    for round in 0..19 {
        let again = served(&variants_of(&first.envoy, &ids, 32).await);
        assert_eq!(again, reference, "round {round} differs on the same Envoy");
    }
    let other = served(&variants_of(&second.envoy, &ids, 32).await);
    assert_eq!(other, reference, "a second Envoy process disagrees");
}

/// Weights changed live from 10 to 30 by rewriting the ECDS file: canary users stay, the
/// share moves to about 30 %, and no request fails during the change.
async fn live_weight_change_keeps_canary_users_and_fails_nothing(build: Build) {
    let s = setup(10.0, build).await;
    let ids = users(5_000, "live");
    let before = served(&variants_of(&s.envoy, &ids, 64).await);

    let load = Load::start(&s.envoy, 4, 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let update = s.envoy.push_config(&config(30.0)).await;
    assert_eq!(update.rejected, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failed) = load.stop_after(200).await;
    assert!(sent > 100, "too little load to mean anything: {sent}");
    assert_eq!(failed, 0, "requests failed during the update ({sent} sent)");

    let after = served(&variants_of(&s.envoy, &ids, 64).await);
    let kept = before
        .iter()
        .zip(&after)
        .filter(|(b, _)| *b == "canary")
        .all(|(_, a)| a == "canary");
    assert!(kept, "a user on canary at 10 % left canary at 30 %");
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert!(moved > 0, "nobody moved");
    let canary = share(&after, "canary");
    assert!(
        (canary - 30.0).abs() <= 2.0,
        "canary share {canary:.2} % at weight 30"
    );
    // The counters live in Envoy's stats store by name: they kept counting across the update,
    // every request counted once, before and after it.
    let names = ["stable", "canary"].map(|v| format!("canary.route.web.variant.{v}.decision.hash"));
    let want = 2 * ids.len() as u64 + sent;
    assert_eq!(
        s.envoy.counted(&names, want).await,
        want,
        "hash decisions counted"
    );
}

/// Header and cookie rules, into canary and out of it, win over hashing, in rule order.
async fn targeting_rules_win_over_hashing_in_order(build: Build) {
    let s = setup(50.0, build).await;
    let c = client();
    let url = s.envoy.url("/");
    // Users the hash puts on each side, so every rule's effect is visible.
    let ids = users(100, "rules");
    let hashed = served(&variants_of(&s.envoy, &ids, 16).await);
    let on = |v: &str| {
        ids.iter()
            .zip(&hashed)
            .find(|(_, h)| *h == v)
            .map(|(id, _)| id.clone())
            .expect("user")
    };
    let (stable_user, canary_user) = (on("stable"), on("canary"));

    // (label, user, extra headers, variant wanted, reason wanted)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            "header into canary",
            &stable_user,
            &[("x-canary", "always")],
            "canary",
            "rule:qa",
        ),
        (
            "ring into canary",
            &stable_user,
            &[("x-user-group", "beta")],
            "canary",
            "rule:rings",
        ),
        (
            "header out of canary",
            &canary_user,
            &[("x-user-group", "ops")],
            "stable",
            "rule:pin-stable",
        ),
        (
            "cookie out of canary",
            &canary_user,
            &[("cookie", "a=1; canary=never")],
            "stable",
            "rule:optout",
        ),
        (
            "cookie into canary",
            &stable_user,
            &[("cookie", "canary=always")],
            "canary",
            "rule:optin",
        ),
        (
            "first rule wins",
            &stable_user,
            &[("x-canary", "always"), ("cookie", "canary=never")],
            "stable",
            "rule:optout",
        ),
        (
            "earlier header rule wins",
            &canary_user,
            &[("x-canary", "always"), ("x-user-group", "ops")],
            "canary",
            "rule:qa",
        ),
        (
            "no rule: hash",
            &canary_user,
            &[("x-canary", "sometimes")],
            "canary",
            "hash",
        ),
    ];
    for (label, user, headers, want, reason) in cases {
        let mut all = vec![("x-user-id", *user)];
        all.extend_from_slice(headers);
        let r = get(&c, &url, &all).await.expect(label);
        assert_eq!(r.upstream.as_deref(), Some(*want), "{label}: {r:?}");
        assert_eq!(r.decision, Some(format!("web;{want};{reason}")), "{label}");
    }
}

/// A client-sent decision header changes nothing: same variant, and the upstream sees only
/// the filter's decision.
async fn client_sent_decision_header_changes_nothing(build: Build) {
    let s = setup(10.0, build).await;
    let c = client();
    let url = s.envoy.url("/");
    let ids = users(300, "forge");
    let honest = served(&variants_of(&s.envoy, &ids, 16).await);
    assert!(honest.iter().filter(|v| *v == "stable").count() > 200);
    for (id, want) in ids.iter().zip(&honest) {
        for forged in ["canary", "stable", "nonexistent"] {
            let r = get(
                &c,
                &url,
                &[
                    ("x-user-id", id),
                    ("x-canary-variant", forged),
                    ("x-canary-variant", "canary"),
                ],
            )
            .await
            .expect("request");
            assert_eq!(r.upstream.as_ref(), Some(want), "{id} forged {forged}");
            assert_eq!(
                r.seen_variant.as_ref(),
                Some(want),
                "upstream saw a forged header"
            );
        }
    }
}

/// A request without identity gets the identity cookie with the configured attributes,
/// beside the upstream's own Set-Cookie; replaying the cookie keeps the variant.
async fn anonymous_clients_get_an_identity_cookie_that_keeps_their_variant(build: Build) {
    let s = setup(50.0, build).await;
    let c = client();
    let url = s.envoy.url("/");
    let mut identities = HashSet::new();
    let mut seen = HashMap::new();
    for _ in 0..60 {
        let first = get(&c, &url, &[]).await.expect("anonymous request");
        assert_eq!(first.status, 200);
        assert!(
            first
                .set_cookies
                .contains(&"upstream_session=abc; Path=/".to_owned()),
            "{first:?}"
        );
        let ours: Vec<&String> = first
            .set_cookies
            .iter()
            .filter(|c| c.starts_with("canary_id="))
            .collect();
        assert_eq!(ours.len(), 1, "{first:?}");
        let (pair, attributes) = ours[0].split_once(';').expect("attributes");
        assert_eq!(
            attributes,
            " Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Strict"
        );
        let id = pair.trim_start_matches("canary_id=").to_owned();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(identities.insert(id.clone()), "identity {id} issued twice");
        let variant = first.upstream.clone().expect("variant");
        assert!(
            first.decision.as_ref().is_some_and(|d| d.ends_with(";new")),
            "{first:?}"
        );
        *seen.entry(variant.clone()).or_insert(0) += 1;
        for _ in 0..3 {
            let cookie = format!("other=1; {pair}");
            let again = get(&c, &url, &[("cookie", &cookie)]).await.expect("replay");
            assert_eq!(again.upstream.as_ref(), Some(&variant), "replayed {pair}");
            assert!(
                !again
                    .set_cookies
                    .iter()
                    .any(|c| c.starts_with("canary_id=")),
                "re-issued: {again:?}"
            );
            assert!(again
                .decision
                .as_ref()
                .is_some_and(|d| d.ends_with(";hash")));
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "60 new identities at 50/50 all landed on one side: {seen:?}"
    );
}

/// An invalid configuration pushed live is rejected by Envoy, the previous one keeps serving
/// with no failed request, and the log names the JSON path.
async fn invalid_update_is_rejected_and_the_last_good_one_serves(build: Build) {
    let s = setup(10.0, build).await;
    let ids = users(1_000, "reject");
    let before = served(&variants_of(&s.envoy, &ids, 32).await);

    let load = Load::start(&s.envoy, 4, 1000);
    let mut bad: serde_json::Value = serde_json::from_str(&config(30.0)).expect("json");
    bad["routes"][0]["variants"][1]["weight"] = serde_json::json!(130);
    let update = s.envoy.push_config(&bad.to_string()).await;
    assert_eq!(update.rejected, 1, "Envoy did not reject the update");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent, failed) = load.stop_after(100).await;
    assert!(sent > 50, "too little load to mean anything: {sent}");
    assert_eq!(
        failed, 0,
        "requests failed around the rejected update ({sent} sent)"
    );

    let after = served(&variants_of(&s.envoy, &ids, 32).await);
    assert_eq!(
        after, before,
        "the rejected configuration changed assignments"
    );
    let log = s.envoy.log();
    assert!(
        log.contains(
            "configuration rejected: routes[0].variants[1].weight: must be between 0 and 100"
        ),
        "the log does not name the JSON path:\n{log}"
    );
}

/// Decision counters per route, variant and reason, and response counters per status class,
/// on `/stats/prometheus` with the right counts.
async fn metrics_count_decisions_and_responses(build: Build) {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::builder("canary").fail_one_in(4).start().await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config(20.0))
        .start()
        .await;
    let c = client();
    let url = envoy.url("/");
    let ids = users(400, "metrics");
    let replies = concurrently(ids.clone(), 16, |id| {
        let (c, url) = (c.clone(), url.clone());
        async move { get(&c, &url, &[("x-user-id", &id)]).await.expect("request") }
    })
    .await;
    for _ in 0..8 {
        get(&c, &url, &[("x-canary", "always")])
            .await
            .expect("rule request");
    }
    for _ in 0..5 {
        get(&c, &url, &[]).await.expect("anonymous request");
    }
    let hashed_canary = replies
        .iter()
        .filter(|r| r.upstream.as_deref() == Some("canary"))
        .count() as u64;
    let hashed_stable = 400 - hashed_canary;
    let canary_5xx = canary.served() / 4;
    let canary_2xx = canary.served() - canary_5xx;

    // Every decision has reached Envoy (the filter hands its counts over once a second).
    let decisions = ["stable", "canary"].into_iter().flat_map(|v| {
        ["hash", "rule", "new"].map(|r| format!("canary.route.web.variant.{v}.decision.{r}"))
    });
    assert_eq!(
        envoy.counted(&decisions.collect::<Vec<_>>(), 413).await,
        413
    );
    let text = envoy.prometheus().await;
    let value = |name: &str, labels: &[(&str, &str)]| -> u64 {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| wanted.iter().all(|w| l.contains(w.as_str())))
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .expect("value")
            })
            .sum()
    };
    let d = |variant, reason| {
        value(
            "canary_decision",
            &[
                ("canary_route", "web"),
                ("canary_variant", variant),
                ("canary_reason", reason),
            ],
        )
    };
    let r = |variant, class| {
        value(
            "canary_response",
            &[
                ("canary_route", "web"),
                ("canary_variant", variant),
                ("canary_class", class),
            ],
        )
    };
    assert_eq!(d("canary", "hash"), hashed_canary, "{text}");
    assert_eq!(d("stable", "hash"), hashed_stable);
    assert_eq!(d("canary", "rule"), 8);
    assert_eq!(d("stable", "new") + d("canary", "new"), 5);
    assert_eq!(r("canary", "5xx"), canary_5xx);
    assert_eq!(r("canary", "2xx"), canary_2xx);
    assert_eq!(r("stable", "2xx"), stable.served());
    assert_eq!(r("stable", "5xx"), 0);
    assert!(canary_5xx > 0, "the failing upstream never failed");
    // The same counters, unlabelled, on /stats.
    assert_eq!(
        envoy
            .counter("canary.route.web.variant.canary.decision.rule")
            .await,
        Some(8)
    );
}

for_each_build!(
    split_matches_weights_for_20000_users,
    assignment_is_sticky_across_requests_and_envoys,
    live_weight_change_keeps_canary_users_and_fails_nothing,
    targeting_rules_win_over_hashing_in_order,
    client_sent_decision_header_changes_nothing,
    anonymous_clients_get_an_identity_cookie_that_keeps_their_variant,
    invalid_update_is_rejected_and_the_last_good_one_serves,
    metrics_count_decisions_and_responses,
);
