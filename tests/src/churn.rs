//! Churn: the share of users whose variant changes when the weights change, for the filter and
//! for Envoy's native sticky split (`weighted_clusters` with `use_hash_policy`), both measured
//! through real Envoys on the same identity header. `make bench` runs it through
//! `src/bin/bench.rs` (`bench --only churn` runs it alone); `tests/churn.rs` runs a small one.
//!
//! A sticky split should move as few users as the new weights force: when the shares change by
//! `Δ`, at least `½ Σ |Δ|` of the users must change variant (the *ideal*). Each configuration is
//! swept once per system: every user sends one request with `x-user-id`, and the upstream that
//! answers (`x-upstream`) is the variant it was served. A change's churn is the share of users
//! served another variant after the change than before it; the ideal is computed from the
//! shares the two sweeps observed, so that sampling noise in the shares does not count as
//! churn.
//!
//! The filter runs in one Envoy reconfigured over ECDS; every reply's debug header names the
//! route of the configuration that decided it, which is renamed at every push, so that no
//! request decided by an earlier configuration is counted. Envoy's native split lives in the
//! static route configuration, so each of its configurations is a new Envoy process. Its hash
//! of the header does not depend on the process, which the unchanged change checks: a second
//! sweep of the same weights, after a new push or a new process, must move nobody.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::json;

use crate::envoy::{Envoy, Routing};
use crate::upstream::Upstream;

/// The header carrying the user's identity, for both systems.
pub const USER_HEADER: &str = crate::bench::USER_HEADER;
/// The variants, by position in a split.
pub const VARIANTS: [&str; 3] = ["stable", "canary", "preview"];
/// Users in `make bench`.
pub const USERS: usize = 100_000;
/// The filter's hash salt, the same for every configuration so that only the weights change.
const SALT: &str = "churn";

/// A weight change, as each system is configured for it: the filter takes percentages, Envoy
/// any weights (its share is weight ÷ total).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// A short name: `unchanged`, `a`, `b`, `b'`, `c`, `d`.
    pub key: &'static str,
    pub what: &'static str,
    /// The filter's weights before and after, in percent.
    pub filter: [Vec<u32>; 2],
    /// Envoy's `weighted_clusters` weights before and after.
    pub native: [Vec<u32>; 2],
}

impl Change {
    fn same(key: &'static str, what: &'static str, before: &[u32], after: &[u32]) -> Change {
        let split = [before.to_vec(), after.to_vec()];
        Change {
            key,
            what,
            filter: split.clone(),
            native: split,
        }
    }
}

/// Every change `make bench` measures.
pub fn changes() -> Vec<Change> {
    vec![
        Change::same(
            "unchanged",
            "unchanged, 90/10 → 90/10 (reconfigured, control)",
            &[90, 10],
            &[90, 10],
        ),
        Change::same("a", "(a) 2 variants, 90/10 → 70/30", &[90, 10], &[70, 30]),
        Change::same(
            "b",
            "(b) 3 variants, the second rises: 80/10/10 → 70/20/10",
            &[80, 10, 10],
            &[70, 20, 10],
        ),
        Change::same(
            "b'",
            "(b') 3 variants, the third rises: 80/10/10 → 70/10/20",
            &[80, 10, 10],
            &[70, 10, 20],
        ),
        Change::same(
            "c",
            "(c) a third variant added at 5 %: 90/10 → 85/10/5",
            &[90, 10],
            &[85, 10, 5],
        ),
        Change {
            key: "d",
            what: "(d) 90/10 → 70/30 in other units (Envoy: 900/100 → 700/300)",
            filter: [vec![90, 10], vec![70, 30]],
            native: [vec![900, 100], vec![700, 300]],
        },
    ]
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Users, `user-0` to `user-<N-1>`.
    pub users: usize,
    /// Requests in flight during a sweep.
    pub concurrency: usize,
    pub changes: Vec<Change>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            users: USERS,
            concurrency: 64,
            changes: changes(),
        }
    }
}

/// Which router decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum System {
    /// The filter, routing by its decision header to one cluster per variant.
    Filter,
    /// Envoy's `weighted_clusters` with a `hash_policy` on the header and `use_hash_policy`.
    Native,
}

impl System {
    pub fn label(self) -> &'static str {
        match self {
            System::Filter => "filter",
            System::Native => "Envoy native",
        }
    }
}

/// One system's churn on one change.
#[derive(Debug, Clone, PartialEq)]
pub struct Churn {
    /// The weights configured before and after.
    pub weights: [Vec<u32>; 2],
    /// Observed share of users per variant (of [`VARIANTS`]), before and after.
    pub before: Vec<f64>,
    pub after: Vec<f64>,
    /// Share of users served another variant after the change.
    pub moved: f64,
    /// The least share that had to move: half the sum over variants of |Δ observed share|.
    pub ideal: f64,
}

impl Churn {
    /// Compares two sweeps of the same users (variant index per user).
    pub fn between(weights: [Vec<u32>; 2], before: &[u8], after: &[u8]) -> Churn {
        assert_eq!(before.len(), after.len(), "sweeps of the same users");
        let n = before.len().max(1) as f64;
        let shares = |sweep: &[u8]| -> Vec<f64> {
            let mut counts = vec![0usize; VARIANTS.len()];
            for &v in sweep {
                counts[usize::from(v)] += 1;
            }
            counts.into_iter().map(|c| c as f64 / n).collect()
        };
        let (before_shares, after_shares) = (shares(before), shares(after));
        let moved = before.iter().zip(after).filter(|(b, a)| b != a).count() as f64 / n;
        let ideal = before_shares
            .iter()
            .zip(&after_shares)
            .map(|(b, a)| (a - b).abs())
            .sum::<f64>()
            / 2.0;
        Churn {
            weights,
            before: before_shares,
            after: after_shares,
            moved,
            ideal,
        }
    }

    /// Churn ÷ ideal; `None` when nothing had to move.
    pub fn ratio(&self) -> Option<f64> {
        // One user in a billion: shares are counts over at most that many users.
        (self.ideal > 1e-9).then(|| self.moved / self.ideal)
    }
}

/// Both systems' churn on one change.
#[derive(Debug, Clone)]
pub struct Row {
    pub change: Change,
    pub filter: Churn,
    pub native: Churn,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub users: usize,
    pub concurrency: usize,
    pub rows: Vec<Row>,
    /// Length of each sweep, in the order taken.
    pub sweeps: Vec<Duration>,
    pub elapsed: Duration,
}

/// Measures every change of `options` on both systems.
pub async fn run(options: Options) -> Result<Report> {
    let started = Instant::now();
    let mut upstreams = Vec::new();
    for name in VARIANTS {
        upstreams.push(Upstream::start(name).await);
    }
    let users: Vec<String> = (0..options.users).map(|i| format!("user-{i}")).collect();
    let mut filter = Sweeper::new(System::Filter, &upstreams, &users, options.concurrency);
    let mut native = Sweeper::new(System::Native, &upstreams, &users, options.concurrency);
    let mut rows = Vec::new();
    for change in &options.changes {
        // Side by side: one system's sweep fills the time the other's Envoy takes to start.
        let (filter_churn, native_churn) =
            tokio::join!(filter.churn(&change.filter), native.churn(&change.native));
        rows.push(Row {
            change: change.clone(),
            filter: filter_churn.with_context(|| format!("filter, {}", change.what))?,
            native: native_churn.with_context(|| format!("Envoy native, {}", change.what))?,
        });
    }
    let mut sweeps = filter.durations;
    sweeps.extend(native.durations);
    Ok(Report {
        users: options.users,
        concurrency: options.concurrency,
        rows,
        sweeps,
        elapsed: started.elapsed(),
    })
}

/// Sweeps one system's configurations, each once: a sweep depends only on the weights, so a
/// configuration two changes share is swept once for both.
struct Sweeper<'a> {
    system: System,
    upstreams: &'a [Upstream],
    users: &'a [String],
    concurrency: usize,
    envoy: Option<Envoy>,
    /// Configurations pushed (the filter) or started (native) so far.
    generation: usize,
    swept: HashMap<Vec<u32>, Vec<u8>>,
    durations: Vec<Duration>,
}

impl<'a> Sweeper<'a> {
    fn new(
        system: System,
        upstreams: &'a [Upstream],
        users: &'a [String],
        concurrency: usize,
    ) -> Self {
        Sweeper {
            system,
            upstreams,
            users,
            concurrency,
            envoy: None,
            generation: 0,
            swept: HashMap::new(),
            durations: Vec::new(),
        }
    }

    async fn churn(&mut self, [before, after]: &[Vec<u32>; 2]) -> Result<Churn> {
        let first = self.sweep_once(before).await?;
        // The same weights again: a new configuration of them, swept anew.
        let second = if after == before {
            self.sweep(after).await?
        } else {
            self.sweep_once(after).await?
        };
        Ok(Churn::between(
            [before.clone(), after.clone()],
            &first,
            &second,
        ))
    }

    async fn sweep_once(&mut self, weights: &[u32]) -> Result<Vec<u8>> {
        if let Some(sweep) = self.swept.get(weights) {
            return Ok(sweep.clone());
        }
        let sweep = self.sweep(weights).await?;
        self.swept.insert(weights.to_vec(), sweep.clone());
        Ok(sweep)
    }

    /// Configures `weights` anew and sends every user once.
    async fn sweep(&mut self, weights: &[u32]) -> Result<Vec<u8>> {
        ensure!(
            (1..=VARIANTS.len()).contains(&weights.len()),
            "{} weights for {} variants",
            weights.len(),
            VARIANTS.len()
        );
        self.generation += 1;
        let route = format!("churn-{}", self.generation);
        match self.system {
            System::Filter => {
                let config = filter_config(&route, weights);
                match &self.envoy {
                    Some(envoy) => {
                        let success = envoy.stat(&envoy.ecds_stat("update_success")).await;
                        let update = envoy.push_config(&config).await;
                        ensure!(
                            update.success > success.unwrap_or(0),
                            "configuration {weights:?} not accepted; log:\n{}",
                            envoy.log()
                        );
                        settle(envoy, &route).await?;
                    }
                    None => {
                        let mut builder = Envoy::builder().log_level("warn");
                        for upstream in self.upstreams {
                            builder = builder.variant(&upstream.name, upstream);
                        }
                        self.envoy = Some(builder.plugin_config(&config).start().await);
                    }
                }
            }
            System::Native => {
                // Stop the previous Envoy before starting the next one.
                self.envoy = None;
                let mut builder =
                    Envoy::builder()
                        .log_level("warn")
                        .routing(Routing::NativeSticky {
                            header: USER_HEADER.to_owned(),
                            weights: weights.to_vec(),
                        });
                for upstream in &self.upstreams[..weights.len()] {
                    builder = builder.variant(&upstream.name, upstream);
                }
                self.envoy = Some(builder.start().await);
            }
        }
        let envoy = self.envoy.as_ref().context("an Envoy")?;
        // The filter's decision header names the route that decided: this configuration's.
        let route = (self.system == System::Filter).then_some(route.as_str());
        let started = Instant::now();
        let sweep = sweep(envoy, self.users, self.concurrency, route).await?;
        self.durations.push(started.elapsed());
        Ok(sweep)
    }
}

/// The filter's configuration: one route, the first `weights.len()` variants, identity from
/// [`USER_HEADER`], and the debug header naming the route that decided.
pub fn filter_config(route: &str, weights: &[u32]) -> String {
    let variants: Vec<_> = VARIANTS
        .iter()
        .zip(weights)
        .map(|(name, weight)| json!({ "name": name, "weight": weight }))
        .collect();
    json!({
        "debugHeader": true,
        "routes": [{
            "name": route,
            "variants": variants,
            "stickiness": { "keys": [{ "header": USER_HEADER }], "salt": SALT },
        }],
    })
    .to_string()
}

/// Waits until the filter decides by the configuration whose route is `route` on every worker:
/// Envoy counts an ECDS update when the main thread has it, and the workers follow.
async fn settle(envoy: &Envoy, route: &str) -> Result<()> {
    let client = crate::client();
    let url = envoy.url("/");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Enough requests in flight to reach each worker on a connection of its own.
        let probes: Vec<String> = (0..16).map(|i| format!("probe-{i}")).collect();
        let replies = crate::concurrently(probes, 16, |user| {
            let (client, url) = (client.clone(), url.clone());
            async move { served(&client, &url, &user).await }
        })
        .await;
        let mut current = true;
        for reply in replies {
            let decision = reply?.decision.unwrap_or_default();
            current &= decision.split(';').next() == Some(route);
        }
        if current {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "route {route} not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends every user once; the variant (index in [`VARIANTS`]) that answered each, in order.
/// With `route`, every reply must have been decided by the filter's route of that name.
async fn sweep(
    envoy: &Envoy,
    users: &[String],
    concurrency: usize,
    route: Option<&str>,
) -> Result<Vec<u8>> {
    let client = crate::client();
    let url = envoy.url("/");
    let replies = crate::concurrently(users.to_vec(), concurrency, |user| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let reply = served(&client, &url, &user).await?;
            let upstream = reply.upstream.as_deref().unwrap_or_default();
            let variant = VARIANTS
                .iter()
                .position(|v| *v == upstream)
                .with_context(|| format!("{user}: answered by {upstream:?}"))?;
            if let Some(route) = route {
                let want = format!("{route};{upstream};hash");
                ensure!(
                    reply.decision.as_deref() == Some(want.as_str()),
                    "{user}: decision {:?}, expected {want:?}",
                    reply.decision
                );
            }
            anyhow::Ok(variant as u8)
        }
    })
    .await;
    replies.into_iter().collect()
}

/// One request for `user`, retried on a transport error (a reset pooled connection).
async fn served(client: &reqwest::Client, url: &str, user: &str) -> Result<crate::Reply> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match crate::get(client, url, &[(USER_HEADER, user)]).await {
            Ok(reply) if reply.status == 200 => return Ok(reply),
            Ok(reply) => bail!("{user}: status {}", reply.status),
            Err(error) if attempt >= 3 => {
                return Err(error).with_context(|| format!("{user}: request failed"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl Report {
    /// The row of the change named `key`.
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.change.key == key)
    }

    /// The section of `BENCHMARKS.md`, starting with its `## Churn` heading.
    pub fn markdown(&self, command: &str) -> String {
        let mut out = String::new();
        let secs: Vec<f64> = self.sweeps.iter().map(Duration::as_secs_f64).collect();
        let median = crate::bench::median(secs.clone());
        let _ = writeln!(out, "{CHURN_HEADING}\n");
        let _ = writeln!(out, "Produced by `{command}`: {} users (`{USER_HEADER}: user-0` to `user-{}`), each sent once to every configuration, {} requests in flight. Each system sweeps each configuration once, and changes that share one share its sweep; the unchanged control sweeps its weights a second time, after another ECDS push for the filter and in a new Envoy process for the native split. {} sweeps, {:.1} s each (median, {:.0} requests/s), {:.1} min in all. Moved: the share of users served another variant after the change; ideal: the share that had to move, half the sum over variants of |Δ share| between the shares the two sweeps observed; the filter takes percentages, Envoy's `weighted_clusters` any weights.\n",
            self.users,
            self.users.saturating_sub(1),
            self.concurrency,
            secs.len(),
            median,
            self.users as f64 / median.max(1e-9),
            self.elapsed.as_secs_f64() / 60.0,
        );
        let _ = writeln!(out, "| change | system | configured | shares before (%) | shares after (%) | moved | ideal | moved ÷ ideal |");
        let _ = writeln!(out, "|---|---|---|---|---|---:|---:|---:|");
        for row in &self.rows {
            for (system, churn) in [(System::Filter, &row.filter), (System::Native, &row.native)] {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} → {} | {} | {} | {:.3} % | {:.3} % | {} |",
                    row.change.what,
                    system.label(),
                    split(&churn.weights[0]),
                    split(&churn.weights[1]),
                    shares(&churn.before),
                    shares(&churn.after),
                    churn.moved * 100.0,
                    churn.ideal * 100.0,
                    churn.ratio().map_or("–".to_owned(), |r| format!("{r:.2}×")),
                );
            }
        }
        out
    }
}

/// The heading of the churn section in `BENCHMARKS.md`.
pub const CHURN_HEADING: &str = "## Churn";

fn split(weights: &[u32]) -> String {
    let parts: Vec<String> = weights.iter().map(u32::to_string).collect();
    parts.join("/")
}

/// Observed shares, in percent, of the variants that served anyone or are configured.
fn shares(shares: &[f64]) -> String {
    let used = shares.iter().rposition(|s| *s > 0.0).map_or(0, |i| i + 1);
    let parts: Vec<String> = shares[..used]
        .iter()
        .map(|s| format!("{:.2}", s * 100.0))
        .collect();
    parts.join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_and_ideal_from_two_sweeps() {
        // Four users: one moves from 0 to 1, one from 1 to 2.
        let churn = Churn::between(
            [vec![75, 25], vec![50, 25, 25]],
            &[0, 0, 0, 1],
            &[0, 1, 0, 2],
        );
        assert_eq!(churn.before, vec![0.75, 0.25, 0.0]);
        assert_eq!(churn.after, vec![0.5, 0.25, 0.25]);
        assert_eq!(churn.moved, 0.5);
        // Shares moved by 0.25, 0 and 0.25: a quarter of the users had to move.
        assert_eq!(churn.ideal, 0.25);
        assert_eq!(churn.ratio(), Some(2.0));
        let none = Churn::between([vec![100], vec![100]], &[0, 0], &[0, 0]);
        assert_eq!((none.moved, none.ratio()), (0.0, None));
    }

    #[test]
    fn filter_configuration_sums_to_100() {
        for change in changes() {
            for weights in &change.filter {
                assert_eq!(weights.iter().sum::<u32>(), 100, "{}", change.what);
                let config: serde_json::Value =
                    serde_json::from_str(&filter_config("r", weights)).expect("JSON");
                assert_eq!(
                    config["routes"][0]["variants"].as_array().map(Vec::len),
                    Some(weights.len())
                );
            }
        }
    }
}
