//! What a rollout shows while it runs: on a terminal, a progress bar redrawn in place with the
//! live split; otherwise plain log lines, one per event. Both end with the report table.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::analysis::{percent, Measured};
use crate::observed::bar;

const BAR_WIDTH: usize = 24;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A progress bar when standard output is a terminal, plain lines otherwise.
    Auto,
    /// A progress bar redrawn in place, with the live split.
    Bar,
    /// One plain line per event.
    Lines,
}

/// One analysed step, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub step: usize,
    pub steps: usize,
    /// The canary weight, as text.
    pub weight: String,
    pub canary: Measured,
    pub baseline: Measured,
    /// `pass`, `FAIL: …` or `no data`.
    pub result: String,
}

pub struct Progress {
    terminal: bool,
    /// Whether a bar is drawn on the current line.
    drawn: bool,
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        let terminal = match mode {
            Mode::Auto => std::io::stdout().is_terminal(),
            Mode::Bar => true,
            Mode::Lines => false,
        };
        Self {
            terminal,
            drawn: false,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// A line of its own, below the bar if one is drawn.
    pub fn line(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.drawn {
            let _ = write!(out, "\r\x1b[2K");
            self.drawn = false;
        }
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Redraws the bar (terminal only): the step, the time left in it and the split so far.
    pub fn tick(&mut self, status: &Tick<'_>) {
        if !self.terminal {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{}", status.render());
        let _ = out.flush();
        self.drawn = true;
    }
}

/// The state of the step under way, for the bar.
pub struct Tick<'a> {
    pub step: usize,
    pub steps: usize,
    pub variant: &'a str,
    pub weight: &'a str,
    pub elapsed: Duration,
    pub interval: Duration,
    /// Canary and baseline numbers so far in the step, when known.
    pub live: Option<(Measured, Measured)>,
}

impl Tick<'_> {
    fn render(&self) -> String {
        let done = (self.step.saturating_sub(1)) as f64
            + (self.elapsed.as_secs_f64() / self.interval.as_secs_f64().max(0.001)).min(1.0);
        let share = done / self.steps.max(1) as f64;
        let left = self.interval.saturating_sub(self.elapsed).as_secs();
        let mut text = format!(
            "{} step {}/{} {} {} % · {left} s left",
            bar(share, BAR_WIDTH),
            self.step,
            self.steps,
            self.variant,
            self.weight
        );
        if let Some((canary, baseline)) = &self.live {
            let _ = write!(text, " · {}", split(canary, baseline));
        }
        text
    }
}

/// The observed split and the canary's health: `canary 9.8 % of 512 · 5xx 0.00 % · p99 3.1 ms`.
pub fn split(canary: &Measured, baseline: &Measured) -> String {
    let total = canary.requests + baseline.requests;
    let share = if total > 0.0 {
        format!("{:.1} %", canary.requests * 100.0 / total)
    } else {
        "-".to_owned()
    };
    format!(
        "observed canary {share} of {total:.0} · canary 5xx {} · p99 {}",
        percent(canary.error_rate()),
        p99(canary)
    )
}

fn p99(measured: &Measured) -> String {
    measured
        .p99_ms
        .map_or("-".to_owned(), |ms| format!("{ms:.1} ms"))
}

/// The report table: one row per analysed step.
pub fn table(rows: &[Row], variant: &str, baseline: &str) -> String {
    let mut out = format!(
        "{:<6} {:>7} {:>9} {:>9} {:>9} {:>8} {:>9}  {}\n",
        "step", "weight", variant, baseline, "observed", "5xx", "p99", "result"
    );
    for row in rows {
        let total = row.canary.requests + row.baseline.requests;
        let observed = if total > 0.0 {
            format!("{:.1} %", row.canary.requests * 100.0 / total)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<6} {:>7} {:>9.0} {:>9.0} {:>9} {:>8} {:>9}  {}",
            format!("{}/{}", row.step, row.steps),
            format!("{} %", row.weight),
            row.canary.requests,
            row.baseline.requests,
            observed,
            percent(row.canary.error_rate()),
            p99(&row.canary),
            row.result
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(requests: f64, errors: f64, p99_ms: Option<f64>) -> Measured {
        Measured {
            requests,
            errors,
            p99_ms,
        }
    }

    #[test]
    fn the_report_table() {
        let rows = [
            Row {
                step: 1,
                steps: 3,
                weight: "10".into(),
                canary: measured(52.0, 0.0, Some(1.3)),
                baseline: measured(468.0, 0.0, Some(1.0)),
                result: "pass".into(),
            },
            Row {
                step: 2,
                steps: 3,
                weight: "50".into(),
                canary: measured(200.0, 40.0, None),
                baseline: measured(200.0, 0.0, None),
                result: "FAIL: error rate".into(),
            },
        ];
        assert_eq!(
            table(&rows, "canary", "stable"),
            "step    weight    canary    stable  observed      5xx       p99  result\n\
             1/3       10 %        52       468    10.0 %   0.00 %    1.3 ms  pass\n\
             2/3       50 %       200       200    50.0 %  20.00 %         -  FAIL: error rate\n"
        );
    }

    #[test]
    fn the_bar_shows_the_step_and_the_live_split() {
        let tick = Tick {
            step: 2,
            steps: 4,
            variant: "canary",
            weight: "25",
            elapsed: Duration::from_secs(15),
            interval: Duration::from_secs(30),
            live: Some((measured(25.0, 1.0, Some(3.0)), measured(75.0, 0.0, None))),
        };
        let text = tick.render();
        assert!(text.starts_with("█████████·"), "{text}");
        assert!(
            text.ends_with(
                "step 2/4 canary 25 % · 15 s left · observed canary 25.0 % of 100 · canary 5xx 4.00 % · p99 3.0 ms"
            ),
            "{text}"
        );
    }
}
