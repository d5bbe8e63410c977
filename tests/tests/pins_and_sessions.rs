//! Pins and session stickiness in a real Envoy running each build of the filter, with real
//! upstreams and a real HTTP client: a pin set by a rule is honoured without the rule, cleared
//! by an unpin rule, and ignored and cleared once a configuration update removes its variant;
//! in session mode, sessions keep their variant through a weight change while new ones follow
//! the new weights, and a tampered session cookie is replaced.

use canary_e2e::{client, concurrently, for_each_build, get, Build, Envoy, Reply, Upstream};
use serde_json::json;

const SECRET: &str = "Qm3_vT8-xL2nR5pK9wZ4bY7c";

struct Setup {
    envoy: Envoy,
    _stable: Upstream,
    _canary: Upstream,
}

async fn setup(build: Build, config: &str) -> Setup {
    let stable = Upstream::builder("stable").start().await;
    let canary = Upstream::builder("canary").start().await;
    let envoy = Envoy::builder()
        .build(build)
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(config)
        .start()
        .await;
    Setup {
        envoy,
        _stable: stable,
        _canary: canary,
    }
}

/// The value a response gave cookie `name`, and the rest of its `Set-Cookie`; `None` if it set
/// no such cookie.
fn set_cookie<'r>(reply: &'r Reply, name: &str) -> Option<(&'r str, &'r str)> {
    let prefix = format!("{name}=");
    let mut ours = reply.set_cookies.iter().filter(|c| c.starts_with(&prefix));
    let found = ours.next()?;
    assert!(ours.next().is_none(), "one {name} cookie: {reply:?}");
    let (pair, attributes) = found.split_once(';').expect("attributes");
    Some((&pair[prefix.len()..], attributes))
}

fn pin_config(with_canary: bool) -> String {
    let (variants, targeting) = if with_canary {
        (
            json!([{ "name": "stable", "weight": 100 }, { "name": "canary", "weight": 0 }]),
            json!([
                { "name": "pin", "query": "canary", "equals": "pin", "variant": "canary", "pin": true },
                { "name": "unpin", "query": "canary", "equals": "unpin", "variant": "stable", "unpin": true }
            ]),
        )
    } else {
        (json!([{ "name": "stable", "weight": 100 }]), json!([]))
    };
    json!({
        "debugHeader": true,
        "routes": [{
            "name": "web",
            "variants": variants,
            "targeting": targeting,
            "stickiness": {
                "keys": [ { "header": "x-user-id" } ],
                "cookie": { "name": "canary_id", "secret": SECRET },
                "pin": { "cookie": "canary_pin", "maxAge": 600 }
            }
        }]
    })
    .to_string()
}

async fn a_pin_is_set_honoured_cleared_and_dropped_with_its_variant(build: Build) {
    let s = setup(build, &pin_config(true)).await;
    let c = client();
    let user = [("x-user-id", "tester")];
    let pinned = get(&c, &s.envoy.url("/?canary=pin"), &user)
        .await
        .expect("request");
    assert_eq!(pinned.upstream.as_deref(), Some("canary"), "{pinned:?}");
    assert_eq!(pinned.decision.as_deref(), Some("web;canary;rule:pin"));
    let (pin, attributes) = set_cookie(&pinned, "canary_pin").expect("a pin cookie");
    assert_eq!(attributes, " Max-Age=600; Path=/; HttpOnly; SameSite=Lax");
    let (variant, mac) = pin.split_once('.').expect("<variant>.<mac>");
    assert_eq!((variant, mac.len()), ("canary", 64), "{pin}");

    // Honoured on later requests without the query parameter; a forged pin is not.
    let cookie = format!("canary_pin={pin}");
    for _ in 0..5 {
        let later = get(&c, &s.envoy.url("/other"), &[user[0], ("cookie", &cookie)])
            .await
            .expect("request");
        assert_eq!(later.upstream.as_deref(), Some("canary"), "{later:?}");
        assert_eq!(later.decision.as_deref(), Some("web;canary;pin"));
        assert!(later.set_cookies.is_empty(), "{later:?}");
    }
    for forged in ["canary_pin=canary", "canary_pin=canary.0123"] {
        let reply = get(&c, &s.envoy.url("/"), &[user[0], ("cookie", forged)])
            .await
            .expect("request");
        assert_eq!(
            reply.decision.as_deref(),
            Some("web;stable;hash"),
            "{forged}"
        );
        let (value, attributes) = set_cookie(&reply, "canary_pin").expect("cleared");
        assert_eq!(
            (value, attributes),
            ("", " Max-Age=0; Path=/; HttpOnly; SameSite=Lax")
        );
    }

    // Unpin: decided by its rule, the pin cleared.
    let unpinned = get(
        &c,
        &s.envoy.url("/?canary=unpin"),
        &[user[0], ("cookie", &cookie)],
    )
    .await
    .expect("request");
    assert_eq!(unpinned.decision.as_deref(), Some("web;stable;rule:unpin"));
    assert_eq!(
        set_cookie(&unpinned, "canary_pin").map(|(v, _)| v),
        Some("")
    );
    assert!(set_cookie(&unpinned, "canary_pin")
        .unwrap()
        .1
        .contains("Max-Age=0"));

    // The canary goes away in an update: the pin still presented is ignored and cleared.
    let update = s.envoy.push_config(&pin_config(false)).await;
    assert_eq!(update.rejected, 0, "{}", s.envoy.log());
    let after = get(&c, &s.envoy.url("/"), &[user[0], ("cookie", &cookie)])
        .await
        .expect("request");
    assert_eq!(after.upstream.as_deref(), Some("stable"), "{after:?}");
    assert_eq!(after.decision.as_deref(), Some("web;stable;hash"));
    let (value, attributes) = set_cookie(&after, "canary_pin").expect("cleared");
    assert_eq!(value, "");
    assert!(attributes.contains("Max-Age=0"), "{attributes}");
}

fn session_config(canary: u32) -> String {
    json!({
        "debugHeader": true,
        "routes": [{
            "name": "web",
            "variants": [
                { "name": "stable", "weight": 100 - canary },
                { "name": "canary", "weight": canary }
            ],
            "stickiness": {
                "mode": "session",
                "cookie": { "name": "canary_id", "maxAge": 3600, "secret": SECRET }
            }
        }]
    })
    .to_string()
}

/// `n` new sessions, concurrently: each one's `canary_id` value and the variant served.
async fn new_sessions(envoy: &Envoy, n: usize) -> Vec<(String, String)> {
    let c = client();
    let url = envoy.url("/");
    concurrently((0..n).collect(), 8, |_| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let reply = get(&c, &url, &[]).await.expect("request");
            let variant = reply.upstream.clone().expect("served");
            assert_eq!(
                reply.decision,
                Some(format!("web;{variant};new")),
                "{reply:?}"
            );
            let (value, _) = set_cookie(&reply, "canary_id").expect("an identity cookie");
            let (payload, mac) = value.rsplit_once('.').expect("<payload>.<mac>");
            let (identity, carried) = payload.split_once('~').expect("<identity>~<variant>");
            assert_eq!(
                (identity.len(), carried, mac.len()),
                (32, variant.as_str(), 64)
            );
            (value.to_owned(), variant)
        }
    })
    .await
}

async fn sessions_keep_their_variant_through_a_weight_change(build: Build) {
    let s = setup(build, &session_config(50)).await;
    let old = new_sessions(&s.envoy, 100).await;
    let canary = old.iter().filter(|(_, v)| v == "canary").count();
    assert!(
        (25..=75).contains(&canary),
        "{canary} of 100 on canary at 50 %"
    );

    let update = s.envoy.push_config(&session_config(90)).await;
    assert_eq!(update.rejected, 0, "{}", s.envoy.log());
    let c = client();
    let url = s.envoy.url("/");
    let kept = concurrently(old.clone(), 8, |(value, variant)| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let cookie = format!("canary_id={value}");
            let reply = get(&c, &url, &[("cookie", &cookie)])
                .await
                .expect("request");
            (variant, reply)
        }
    })
    .await;
    for (variant, reply) in &kept {
        assert_eq!(reply.upstream.as_ref(), Some(variant), "{reply:?}");
        assert_eq!(reply.decision, Some(format!("web;{variant};session")));
        assert!(reply.set_cookies.is_empty(), "{reply:?}");
    }
    let fresh = new_sessions(&s.envoy, 100).await;
    let canary = fresh.iter().filter(|(_, v)| v == "canary").count();
    assert!(
        canary >= 75,
        "{canary} of 100 new sessions on canary at 90 %"
    );

    // A rollback to the baseline moves every session there, with a new cookie for those moved.
    let update = s.envoy.push_config(&session_config(0)).await;
    assert_eq!(update.rejected, 0, "{}", s.envoy.log());
    for (value, variant) in old.iter().take(20) {
        let cookie = format!("canary_id={value}");
        let reply = get(&c, &url, &[("cookie", &cookie)])
            .await
            .expect("request");
        assert_eq!(reply.upstream.as_deref(), Some("stable"), "{reply:?}");
        if variant == "canary" {
            let (reissued, _) = set_cookie(&reply, "canary_id").expect("re-issued");
            let identity = value.split('~').next().expect("identity");
            assert!(
                reissued.starts_with(&format!("{identity}~stable.")),
                "{reissued}"
            );
            assert_eq!(reply.decision.as_deref(), Some("web;stable;hash"));
        } else {
            assert_eq!(reply.decision.as_deref(), Some("web;stable;session"));
        }
    }
}

async fn a_tampered_session_cookie_is_replaced(build: Build) {
    let s = setup(build, &session_config(50)).await;
    let c = client();
    let url = s.envoy.url("/");
    for (value, variant) in new_sessions(&s.envoy, 10).await {
        let other = if variant == "canary" {
            "stable"
        } else {
            "canary"
        };
        let identity = value.split('~').next().expect("identity").to_owned();
        let moved = value.replace(&format!("~{variant}."), &format!("~{other}."));
        let last = if value.ends_with('0') { '1' } else { '0' };
        let mac_changed = format!("{}{last}", &value[..value.len() - 1]);
        for forged in [moved, mac_changed, format!("{identity}~{other}")] {
            let cookie = format!("canary_id={forged}");
            let reply = get(&c, &url, &[("cookie", &cookie)])
                .await
                .expect("request");
            let served = reply.upstream.clone().expect("served");
            assert_eq!(
                reply.decision,
                Some(format!("web;{served};new")),
                "{forged}"
            );
            let (fresh, _) = set_cookie(&reply, "canary_id").expect("a new identity cookie");
            assert!(!fresh.starts_with(&identity), "{forged} -> {fresh}");
        }
    }
}

for_each_build!(
    a_pin_is_set_honoured_cleared_and_dropped_with_its_variant,
    sessions_keep_their_variant_through_a_weight_change,
    a_tampered_session_cookie_is_replaced,
);
