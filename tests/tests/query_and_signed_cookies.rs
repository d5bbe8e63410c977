//! Query-parameter targeting and signed identity cookies in a real Envoy running the built
//! filter, with real upstreams and a real HTTP client.

use canary_e2e::{client, get, Envoy, Reply, Upstream};

const SECRET: &str = "Qm3_vT8-xL2nR5pK9wZ4bY7c";

fn config() -> String {
    serde_json::json!({
        "debugHeader": true,
        "routes": [{
            "name": "web",
            "variants": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
            "targeting": [
                { "name": "qa", "query": "canary", "equals": "always", "variant": "canary" }
            ],
            "stickiness": {
                "keys": [ { "header": "x-user-id" } ],
                "cookie": { "name": "canary_id", "maxAge": 3600, "secret": SECRET }
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

async fn setup() -> Setup {
    let stable = Upstream::builder("stable").start().await;
    let canary = Upstream::builder("canary").start().await;
    let envoy = Envoy::builder()
        .variant("stable", &stable)
        .variant("canary", &canary)
        .plugin_config(&config())
        .start()
        .await;
    Setup {
        envoy,
        _stable: stable,
        _canary: canary,
    }
}

/// The variant the filter's own hash gives `user` under [`config`].
fn hashed(user: &str) -> String {
    let table = canary_filter::parse(config().as_bytes()).expect("valid configuration");
    let route = &table.routes[0];
    route.variants[route.assign(user.as_bytes())].name.clone()
}

/// The `canary_id` value of the one identity cookie a response set.
fn identity_cookie(reply: &Reply) -> String {
    let ours: Vec<&String> = reply
        .set_cookies
        .iter()
        .filter(|c| c.starts_with("canary_id="))
        .collect();
    assert_eq!(ours.len(), 1, "{reply:?}");
    let (pair, _) = ours[0].split_once(';').expect("attributes");
    pair.trim_start_matches("canary_id=").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_rule_sends_testers_to_the_canary_and_others_by_weight() {
    let s = setup().await;
    let c = client();
    let mut by_weight = Vec::new();
    for i in 0..40 {
        let user = format!("tester-{i}");
        let headers = [("x-user-id", user.as_str())];
        let always = get(&c, &s.envoy.url("/app?lang=en&canary=always"), &headers)
            .await
            .expect("request");
        assert_eq!(always.status, 200, "{always:?}");
        assert_eq!(always.upstream.as_deref(), Some("canary"), "{always:?}");
        assert_eq!(always.decision.as_deref(), Some("web;canary;rule:qa"));

        let never = get(&c, &s.envoy.url("/app?canary=never"), &headers)
            .await
            .expect("request");
        let want = hashed(&user);
        assert_eq!(never.upstream.as_deref(), Some(want.as_str()), "{never:?}");
        assert_eq!(
            never.decision.as_deref(),
            Some(format!("web;{want};hash").as_str())
        );
        by_weight.push(want);
    }
    assert!(
        by_weight.iter().any(|v| v == "stable") && by_weight.iter().any(|v| v == "canary"),
        "at 50/50 both variants serve some of 40 users: {by_weight:?}"
    );
    // Encoded the WHATWG way, the parameter still matches; in a fragment or the path it does not.
    let encoded = get(
        &c,
        &s.envoy.url("/?c%61nary=alw%61ys"),
        &[("x-user-id", "u")],
    )
    .await
    .expect("request");
    assert_eq!(encoded.decision.as_deref(), Some("web;canary;rule:qa"));
    let user = (0..100)
        .map(|i| format!("stable-{i}"))
        .find(|u| hashed(u) == "stable")
        .expect("some user on stable at 50 %");
    for path in ["/canary=always", "/?x=1&Canary=always"] {
        let reply = get(&c, &s.envoy.url(path), &[("x-user-id", &user)])
            .await
            .expect("request");
        assert_eq!(
            reply.decision.as_deref(),
            Some("web;stable;hash"),
            "{path}: {reply:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_identity_cookie_is_honoured_and_a_tampered_one_replaced() {
    let s = setup().await;
    let c = client();
    let url = s.envoy.url("/");
    for _ in 0..10 {
        let first = get(&c, &url, &[]).await.expect("anonymous request");
        assert_eq!(first.status, 200, "{first:?}");
        let value = identity_cookie(&first);
        let (identity, mac) = value.split_once('.').expect("<identity>.<mac>");
        assert!(
            identity.len() == 32 && mac.len() == 64,
            "32 hex digits of identity, 64 of HMAC-SHA256: {value}"
        );
        let variant = first.upstream.clone().expect("variant");
        assert_eq!(variant, hashed(identity), "hashed as an unsigned identity");
        assert_eq!(
            first.decision.as_deref(),
            Some(format!("web;{variant};new").as_str())
        );

        let cookie = format!("canary_id={value}");
        let again = get(&c, &url, &[("cookie", &cookie)]).await.expect("replay");
        assert_eq!(again.upstream.as_ref(), Some(&variant), "{again:?}");
        assert_eq!(
            again.decision.as_deref(),
            Some(format!("web;{variant};hash").as_str())
        );
        assert!(
            !again
                .set_cookies
                .iter()
                .any(|c| c.starts_with("canary_id=")),
            "re-issued: {again:?}"
        );

        let last = if value.ends_with('0') { '1' } else { '0' };
        let tampered = format!("canary_id={}{last}", &value[..value.len() - 1]);
        let unsigned = format!("canary_id={identity}");
        for cookie in [tampered, unsigned] {
            let replaced = get(&c, &url, &[("cookie", &cookie)])
                .await
                .expect("request");
            let fresh = identity_cookie(&replaced);
            assert_ne!(fresh, value, "{cookie}");
            assert!(
                replaced
                    .decision
                    .as_deref()
                    .is_some_and(|d| d.ends_with(";new")),
                "{cookie}: {replaced:?}"
            );
        }
    }
}
