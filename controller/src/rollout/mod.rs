//! `canaryctl rollout`: steps a variant's weight up, checks its health over each step's window
//! from real metrics, and promotes it to 100 % or rolls it back to 0 % by itself.
//!
//! - [`analysis`]: the verdict on a step, from numbers only;
//! - [`metrics`]: where the numbers come from (Prometheus, or an Envoy admin endpoint);
//! - [`state`]: the progress recorded with the target, so a restarted rollout resumes, `resume`
//!   lifts a pause and `abort` stops it;
//! - [`progress`]: a bar on a terminal, plain lines elsewhere, and the report table;
//! - [`ramp`]: with `--ramp`, the step that ramps the weight over its interval;
//! - [`runner`]: the loop tying them together.

pub mod analysis;
pub mod metrics;
pub mod progress;
pub mod ramp;
mod runner;
pub mod state;

pub use self::runner::{parse_percent, Outcome, Plan, Runner};

use std::process::ExitCode;

use anyhow::Context;

use crate::targets::{Clients, Target};

/// Exit code of a rollout rolled back by a failed check or for lack of data.
pub const EXIT_ROLLED_BACK: u8 = 2;
/// Exit code of a rollout stopped by `canaryctl abort`.
pub const EXIT_ABORTED: u8 = 3;

/// `canaryctl resume`: lifts the pause of a rollout waiting at a manual gate.
pub async fn resume(clients: &Clients, target: &str, route: &str) -> anyhow::Result<ExitCode> {
    let target: Target = target.parse()?;
    let kept = state::resume(&target, clients, route)
        .await
        .with_context(|| format!("{target}: the rollout of route {route:?} not resumed"))?;
    match kept {
        Some(record) if record.state == state::State::Running => {
            println!(
                "{target} route {route}: rollout of {} resumed at step {}/{}",
                record.variant,
                record.step,
                record.steps.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        other => {
            let now = other
                .or(state::load(&target, clients, route).await?)
                .map_or("no rollout recorded".to_owned(), |r| {
                    format!("the rollout of {} is {}", r.variant, r.state)
                });
            eprintln!("error: {target} route {route}: no paused rollout to resume ({now})");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// For `canaryctl abort`: marks a rollout under way on `route` aborted, so the `rollout`
/// process stops. The aborted rollout's variant, if there was one.
pub async fn mark_aborted(
    clients: &Clients,
    target: &Target,
    route: &str,
) -> anyhow::Result<Option<String>> {
    let aborted = state::abort(target, clients, route)
        .await
        .with_context(|| format!("{target}: the rollout of route {route:?} not marked aborted"))?;
    Ok(aborted.map(|record| record.variant))
}
