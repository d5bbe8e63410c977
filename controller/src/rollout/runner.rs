//! The rollout loop: for each step, set the weight (or, with `--ramp`, write a ramp to it over
//! the interval), wait out the interval (watching for `abort`), measure the window, judge it;
//! then pause, repeat, roll back or go on. Every change of weight goes through the target's
//! read → edit → validate → write cycle.
//!
//! A rollout never stops at a partial weight because its target could not be written: when a
//! step's write still fails after the target's own retries (a Kubernetes API unavailable for
//! longer than its retry budget), the rollout rolls back, and keeps trying the rollback for as
//! long as the target is unavailable, saying so at every attempt, until it is written.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use canary_filter::table::parse_weight;
use canary_filter::{PluginConfig, Weight};
use tracing::{debug, info, warn};

use super::analysis::{judge, percent, Measured, Thresholds, Verdict};
use super::metrics::{MetricsError, Source, Window};
use super::progress::{self, Progress, Row, Tick};
use super::ramp;
use super::state::{self, Record, State, StepRamp};
use crate::ramps;
use crate::targets::{Clients, Target};
use crate::weights::{self, weight_text, Change};

/// A weight written as a percentage (`12.5`, `12.5%`).
pub fn parse_percent(text: &str) -> anyhow::Result<Weight> {
    let trimmed = text.trim().trim_end_matches('%').trim();
    let value: f64 = trimmed
        .parse()
        .with_context(|| format!("{text:?} is not a percentage"))?;
    parse_weight(value).map_err(|reason| anyhow::anyhow!("{text:?}: the weight {reason}"))
}

/// What a rollout ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Promoted,
    RolledBack,
    Aborted,
}

/// A rollout as asked for, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub route: String,
    pub variant: String,
    /// The variant's weight at each step, increasing, none 0.
    pub steps: Vec<Weight>,
    pub interval: Duration,
    /// Whether each step ramps the weight over its interval instead of jumping to it.
    pub ramp: bool,
    pub thresholds: Thresholds,
    pub source: Source,
    /// Weights, among the steps, at which to wait for `resume`.
    pub pause_at: Vec<Weight>,
    pub no_data_retries: u32,
}

impl Plan {
    /// How often the record is read for `abort` and `resume`.
    fn poll(&self) -> Duration {
        match self.target {
            Target::File(_) => Duration::from_millis(200),
            Target::Kube { .. } => Duration::from_secs(1),
        }
    }

    fn checks(&self) -> String {
        let t = &self.thresholds;
        let mut checks = Vec::new();
        if let Some(max) = t.max_error_rate {
            checks.push(format!("5xx ≤ {}", percent(max)));
        }
        if let Some(ratio) = t.max_error_rate_ratio {
            checks.push(format!("5xx ≤ {ratio}× baseline"));
        }
        if let Some(ms) = t.max_p99_ms {
            checks.push(format!("p99 ≤ {ms} ms"));
        }
        if let Some(ratio) = t.max_p99_ratio {
            checks.push(format!("p99 ≤ {ratio}× baseline"));
        }
        checks.push(format!("≥ {} requests per step", t.min_requests));
        checks.join(", ")
    }
}

/// The loop is synchronous (its metrics clients are blocking); the target is reached on the
/// process's runtime, through the process's clients.
pub struct Runner {
    plan: Plan,
    runtime: tokio::runtime::Handle,
    clients: Clients,
    progress: Progress,
    rows: Vec<Row>,
    baseline: String,
    record: Record,
}

impl Runner {
    /// A rollout reaching its target through `clients` on `runtime`, from outside it.
    pub fn new(
        plan: Plan,
        mode: progress::Mode,
        runtime: tokio::runtime::Handle,
        clients: Clients,
    ) -> Self {
        let record = Record {
            id: String::new(),
            route: plan.route.clone(),
            variant: plan.variant.clone(),
            step: 1,
            steps: plan.steps.iter().map(|w| weight_text(*w)).collect(),
            state: State::Running,
            message: None,
            owner: state::Owner::this_process(),
            ramp: None,
        };
        Self {
            plan,
            runtime,
            clients,
            progress: Progress::new(mode),
            rows: Vec::new(),
            baseline: String::new(),
            record,
        }
    }

    pub fn run(mut self) -> anyhow::Result<Outcome> {
        let (plan, steps) = (&self.plan, self.plan.steps.len());
        let config = self.runtime.block_on(plan.target.read(&self.clients))?;
        let routes = weights::read_routes(&config)?;
        let route = weights::find_route(&routes, &plan.route)?;
        let Some(position) = route.variants.iter().position(|v| v.name == plan.variant) else {
            bail!(
                "route {:?} has no variant named {:?} (variants: {})",
                plan.route,
                plan.variant,
                route
                    .variants
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if position == 0 {
            bail!(
                "{:?} is the baseline of route {:?}: roll out another variant",
                plan.variant,
                plan.route
            );
        }
        self.baseline = route.variants[0].name.clone();
        self.plan
            .source
            .check(&self.plan.route, &[&self.plan.variant, &self.baseline])
            .with_context(|| format!("metrics: {}", self.plan.source))?;
        let (mut index, mut paused) = self.start()?;
        self.progress.line(&format!(
            "rollout of {} on {} route {}: steps {} % every {:?}{}; checks: {}; metrics: {}",
            self.plan.variant,
            self.plan.target,
            self.plan.route,
            self.record.steps.join(", "),
            self.plan.interval,
            if self.plan.ramp { ", ramped" } else { "" },
            self.plan.checks(),
            self.plan.source
        ));

        let mut no_data = 0;
        while index < steps {
            let weight = self.plan.steps[index];
            self.record.step = index + 1;
            self.record.state = if paused {
                State::Paused
            } else {
                State::Running
            };
            match self.save() {
                Ok(true) => return self.stop_aborted(),
                Ok(false) => {}
                Err(error) => return self.roll_back(&unwritable(index, steps, weight, &error)),
            }
            // A step resumed at its gate has passed already: its weight is held, not ramped.
            let written = match self.write_step(weight, !paused) {
                Ok(written) => written,
                Err(error) => return self.roll_back(&unwritable(index, steps, weight, &error)),
            };
            let baseline_weight = written.baseline;
            if paused {
                paused = false;
                if self.pause()? {
                    return self.stop_aborted();
                }
                index += 1;
                continue;
            }
            if written.ramp != self.record.ramp {
                self.record.ramp = written.ramp.clone();
                match self.save() {
                    Ok(true) => return self.stop_aborted(),
                    Ok(false) => {}
                    Err(error) => return self.roll_back(&unwritable(index, steps, weight, &error)),
                }
            }
            let shown = match &written.ramp {
                Some(ramp) => {
                    self.progress.line(&format!(
                        "step {}/{steps}: {} ramps {} % → {} % over {} from {}, {} {} % → {} %",
                        index + 1,
                        self.plan.variant,
                        ramp.from,
                        ramp.to,
                        ramp.duration,
                        ramp.start,
                        self.baseline,
                        weight_text(written.baseline_from),
                        weight_text(baseline_weight)
                    ));
                    format!("{} → {}", ramp.from, ramp.to)
                }
                None => {
                    self.progress.line(&format!(
                        "step {}/{steps}: {} {} %, {} {} %",
                        index + 1,
                        self.plan.variant,
                        weight_text(weight),
                        self.baseline,
                        weight_text(baseline_weight)
                    ));
                    weight_text(weight)
                }
            };
            let window = self.plan.source.begin(&self.plan.route);
            if self.wait_step(window.as_ref().ok(), index, &shown)? {
                return self.stop_aborted();
            }
            let measured = window.and_then(|w| {
                self.plan.source.measure(
                    &w,
                    &self.plan.route,
                    &[&self.plan.variant, &self.baseline],
                )
            });
            let (canary, baseline, verdict) = match measured.as_deref() {
                Ok([canary, baseline]) => {
                    let compared = (baseline_weight.0 > 0).then_some(baseline);
                    (
                        *canary,
                        *baseline,
                        judge(&self.plan.thresholds, canary, compared),
                    )
                }
                Ok(_) => bail!("the metrics source answered for the wrong number of variants"),
                Err(error @ MetricsError::NoResponses { .. }) => {
                    warn!(%error, route = %self.plan.route, "no response metrics");
                    (
                        Measured::default(),
                        Measured::default(),
                        Verdict::NoData(format!("no data: {error}")),
                    )
                }
                Err(error) => {
                    warn!(%error, route = %self.plan.route, "cannot read the metrics");
                    let reason = format!("no data: cannot read the metrics: {error}");
                    (
                        Measured::default(),
                        Measured::default(),
                        Verdict::NoData(reason),
                    )
                }
            };
            info!(
                step = index + 1,
                ?canary,
                ?baseline,
                ?verdict,
                "step analysed"
            );
            let split = progress::split(&canary, &baseline);
            let row = |result: String| Row {
                step: index + 1,
                steps,
                weight: weight_text(weight),
                canary,
                baseline,
                result,
            };
            match verdict {
                Verdict::Pass => {
                    self.rows.push(row("pass".to_owned()));
                    self.progress
                        .line(&format!("step {}/{steps} passed: {split}", index + 1));
                    no_data = 0;
                    if self.plan.pause_at.contains(&weight) && index + 1 < steps {
                        self.record.state = State::Paused;
                        if self.save()? || self.pause()? {
                            return self.stop_aborted();
                        }
                    }
                    index += 1;
                }
                Verdict::NoData(reason) => {
                    self.rows.push(row("no data".to_owned()));
                    no_data += 1;
                    if no_data > self.plan.no_data_retries {
                        let why = format!(
                            "step {}/{steps} at {} %: {reason} ({no_data} windows in a row)",
                            index + 1,
                            weight_text(weight)
                        );
                        return self.roll_back(&why);
                    }
                    self.progress.line(&format!(
                        "step {}/{steps}: {reason}; repeating the step ({no_data} of {} repeats)",
                        index + 1,
                        self.plan.no_data_retries
                    ));
                }
                Verdict::Fail(failures) => {
                    let checks: Vec<&str> = failures.iter().map(|f| f.check()).collect();
                    self.rows.push(row(format!("FAIL: {}", checks.join(", "))));
                    let reasons: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
                    let why = format!(
                        "step {}/{steps} at {} % failed: {}",
                        index + 1,
                        weight_text(weight),
                        reasons.join("; ")
                    );
                    return self.roll_back(&why);
                }
            }
        }
        self.promote()
    }

    /// The step to start at, and whether it is paused: where a recorded rollout of the same
    /// variant left off, or the first.
    fn start(&mut self) -> anyhow::Result<(usize, bool)> {
        let recorded = self.load_record()?;
        match recorded {
            Some(record)
                if record.state.active()
                    && record.owner.as_ref().is_some_and(|o| o.alive_elsewhere()) =>
            {
                bail!(
                "the rollout of {:?} on route {:?} is being driven by process {} on this host; \
                 stop that one first",
                record.variant,
                record.route,
                record.owner.map_or(0, |o| o.pid)
            )
            }
            Some(record) if record.state.active() && record.variant == self.plan.variant => {
                // Resume at the recorded weight: the first step at least that heavy.
                let weight = record
                    .step
                    .checked_sub(1)
                    .and_then(|i| record.steps.get(i))
                    .and_then(|w| parse_percent(w).ok())
                    .unwrap_or(Weight(0));
                let index = self
                    .plan
                    .steps
                    .iter()
                    .position(|w| *w >= weight)
                    .unwrap_or(self.plan.steps.len());
                self.progress.line(&format!(
                    "resuming the rollout recorded on {} at step {}/{} ({} %, {})",
                    self.plan.target,
                    index + 1,
                    self.plan.steps.len(),
                    weight_text(weight),
                    record.state
                ));
                self.record.id = record.id;
                Ok((index, record.state == State::Paused))
            }
            Some(record) if record.state.active() => bail!(
                "a rollout of variant {:?} is under way on route {:?} (step {}/{}, {}): \
                 stop it with `canaryctl abort` first",
                record.variant,
                record.route,
                record.step,
                record.steps.len(),
                record.state
            ),
            _ => {
                let since_epoch = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                self.record.id = format!("{}-{}", since_epoch.as_millis(), std::process::id());
                Ok((0, false))
            }
        }
    }

    /// Records progress; true when this rollout was aborted meanwhile.
    fn save(&mut self) -> anyhow::Result<bool> {
        let saved = state::save(&self.plan.target, &self.clients, &self.record);
        let kept = self
            .runtime
            .block_on(saved)
            .context("cannot record the rollout's progress")?;
        Ok(kept.is_some_and(|r| r.id == self.record.id && r.state == State::Aborted))
    }

    /// The route's rollout record.
    fn load_record(&self) -> crate::targets::Result<Option<Record>> {
        let load = state::load(&self.plan.target, &self.clients, &self.plan.route);
        self.runtime.block_on(load)
    }

    /// Whether this rollout has been aborted.
    fn aborted(&self) -> anyhow::Result<bool> {
        let record = self.load_record()?;
        Ok(record.is_some_and(|r| r.id == self.record.id && r.state == State::Aborted))
    }

    /// Sets the variant's weight, the baseline taking the remainder; the baseline's weight now.
    fn set_weight(&self, weight: Weight) -> anyhow::Result<Weight> {
        self.write_step(weight, false)
            .map(|written| written.baseline)
    }

    /// Moves the variant to `weight`: with `--ramp` and `ramped`, by a ramp from the weight in
    /// force over the interval, starting now (see [`ramp::apply_at`]); otherwise at once, the
    /// baseline taking the remainder.
    fn write_step(&self, weight: Weight, ramped: bool) -> anyhow::Result<Written> {
        let plan = &self.plan;
        let ramped = ramped && plan.ramp;
        let change = Change::Set(vec![(plan.variant.clone(), weight)]);
        let edit = |config: &mut PluginConfig| {
            if ramped {
                let now = ramps::now_millis();
                ramp::apply_at(
                    config,
                    &plan.route,
                    &plan.variant,
                    weight,
                    plan.interval,
                    now,
                )
            } else {
                change.apply(config, &plan.route)
            }
        };
        let update = self
            .runtime
            .block_on(plan.target.update(&self.clients, &edit))
            .with_context(|| {
                format!(
                    "{}: route {:?} not {} {} {} %",
                    plan.target,
                    plan.route,
                    if ramped { "ramped to" } else { "changed to" },
                    plan.variant,
                    weight_text(weight)
                )
            })?;
        debug!(variant = %plan.variant, weight = %weight_text(weight), ramped, written = update.written, "step written");
        let routes = weights::read_routes(&update.config)?;
        let route = weights::find_route(&routes, &plan.route)?;
        let baseline_from = route.variants.first().map_or(Weight(0), |b| b.weight);
        let baseline = ramps::views(&update.config, 0)
            .get(&plan.route)
            .and_then(|view| view.end.first().copied())
            .unwrap_or(baseline_from);
        Ok(Written {
            baseline_from,
            baseline,
            ramp: ramp::recorded(&update.config, &plan.route),
        })
    }

    /// Waits out a step, drawing progress; true when aborted meanwhile.
    fn wait_step(
        &mut self,
        window: Option<&Window>,
        index: usize,
        weight: &str,
    ) -> anyhow::Result<bool> {
        let started = Instant::now();
        let mut live = None;
        let mut measured_at = Instant::now();
        loop {
            let elapsed = started.elapsed();
            self.progress.tick(&Tick {
                step: index + 1,
                steps: self.plan.steps.len(),
                variant: &self.plan.variant,
                weight,
                elapsed,
                interval: self.plan.interval,
                live,
            });
            if elapsed >= self.plan.interval {
                return Ok(false);
            }
            std::thread::sleep(self.plan.poll().min(self.plan.interval - elapsed));
            // A record that cannot be read now is read again at the next poll.
            match self.aborted() {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(error) => {
                    warn!(error = %format!("{error:#}"), "cannot read the rollout record")
                }
            }
            if self.progress.is_terminal() && measured_at.elapsed() >= Duration::from_secs(1) {
                measured_at = Instant::now();
                if let Some(window) = window {
                    let names = [self.plan.variant.as_str(), self.baseline.as_str()];
                    if let Ok([canary, baseline]) = self
                        .plan
                        .source
                        .measure(window, &self.plan.route, &names)
                        .as_deref()
                    {
                        live = Some((*canary, *baseline));
                    }
                }
            }
        }
    }

    /// Waits at a manual gate for `canaryctl resume`; true when aborted instead.
    fn pause(&mut self) -> anyhow::Result<bool> {
        self.progress.line(&format!(
            "paused at step {}/{} ({} at {} %): waiting for `canaryctl resume --target {} --route {}`",
            self.record.step,
            self.record.steps.len(),
            self.plan.variant,
            self.record
                .steps
                .get(self.record.step.saturating_sub(1))
                .map_or("?", String::as_str),
            self.plan.target,
            self.plan.route
        ));
        loop {
            std::thread::sleep(self.plan.poll());
            let record = match self.load_record() {
                Ok(record) => record,
                Err(error) => {
                    warn!(%error, "cannot read the rollout record; waiting");
                    continue;
                }
            };
            match record {
                Some(r) if r.id == self.record.id => match r.state {
                    State::Paused => {}
                    State::Running => {
                        self.record.state = State::Running;
                        self.progress.line("resumed");
                        return Ok(false);
                    }
                    State::Aborted => return Ok(true),
                    other => bail!("the paused rollout was marked {other} by someone else"),
                },
                _ => bail!("the rollout record was removed or replaced while paused"),
            }
        }
    }

    fn roll_back(mut self, why: &str) -> anyhow::Result<Outcome> {
        let baseline_weight = self
            .until_written("roll back", |runner| runner.set_weight(Weight(0)))
            .context("ROLLBACK FAILED: set the variant's weight to 0 by hand")?;
        self.record.state = State::RolledBack;
        self.record.message = Some(why.to_owned());
        self.record.ramp = None;
        self.until_written("record the rollback", Self::save)?;
        self.report(&format!(
            "rolled back: {} is back to 0 % ({} {} %); {why}",
            self.plan.variant,
            self.baseline,
            weight_text(baseline_weight)
        ));
        Ok(Outcome::RolledBack)
    }

    fn stop_aborted(mut self) -> anyhow::Result<Outcome> {
        // `abort` gave the baseline everything; a step written just before it must not stay.
        self.until_written("undo the last step", |runner| runner.set_weight(Weight(0)))?;
        self.report(&format!(
            "aborted by canaryctl abort at step {}/{}: {} is at 0 %",
            self.record.step,
            self.record.steps.len(),
            self.plan.variant
        ));
        Ok(Outcome::Aborted)
    }

    fn promote(mut self) -> anyhow::Result<Outcome> {
        let change = Change::Promote(self.plan.variant.clone());
        let edit = |config: &mut _| change.apply(config, &self.plan.route);
        let promoted = self
            .runtime
            .block_on(self.plan.target.update(&self.clients, &edit))
            .with_context(|| format!("{}: {} not promoted", self.plan.target, self.plan.variant));
        if let Err(error) = promoted {
            return self.roll_back(&format!("cannot promote: {error:#}"));
        }
        self.record.step = self.record.steps.len() + 1;
        self.record.state = State::Promoted;
        self.record.message = None;
        self.record.ramp = None;
        if self.until_written("record the promotion", Self::save)? {
            return self.stop_aborted();
        }
        self.report(&format!(
            "promoted: {} has 100 % of route {} after {} steps",
            self.plan.variant,
            self.plan.route,
            self.record.steps.len()
        ));
        Ok(Outcome::Promoted)
    }

    /// Runs `write` until it succeeds or fails for good: while the target is unavailable
    /// (see [`crate::targets::Error::unavailable`]) it is tried again, ever less often up to every 30 s, each
    /// failure shown.
    fn until_written<T>(
        &mut self,
        what: &str,
        mut write: impl FnMut(&mut Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut wait = Duration::from_secs(1);
        loop {
            match write(self) {
                Ok(value) => return Ok(value),
                Err(error) if unavailable(&error) => {
                    self.progress.line(&format!(
                        "cannot {what} yet: {error:#}; trying again in {} s",
                        wait.as_secs()
                    ));
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn report(&mut self, summary: &str) {
        let table = progress::table(&self.rows, &self.plan.variant, &self.baseline);
        self.progress.line(&format!("\n{table}{summary}"));
    }
}

/// A step as written.
struct Written {
    /// The baseline's weight at the write.
    baseline_from: Weight,
    /// The baseline's weight once the variant has reached the step's weight.
    baseline: Weight,
    /// The step's ramp, when it has one.
    ramp: Option<StepRamp>,
}

/// Why a rollout rolls back when step `index` could not be written.
fn unwritable(index: usize, steps: usize, weight: Weight, error: &anyhow::Error) -> String {
    format!(
        "step {}/{steps} at {} %: the target could not be written: {error:#}",
        index + 1,
        weight_text(weight)
    )
}

/// Whether `error` comes from a target that is unavailable for now.
fn unavailable(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<crate::targets::Error>()
        .is_some_and(crate::targets::Error::unavailable)
}
