//! `make bench`: the filter's cost per request in a real Envoy next to Envoy alone and Envoy's
//! native sticky split, configuration time and propagation, written to `BENCHMARKS.md`.
//!
//! ```text
//! bench [--out FILE] [--command TEXT] [--criterion DIR] [--duration SECS] [--rounds N]
//!       [--warmup SECS] [--connections N] [--trials N] [--no-pin] [--module LABEL=PATH ...]
//! ```
//! `--module` adds another build of the filter, measured on the two-variant configuration.
//! `--criterion` reads criterion's results (`target/criterion`) into the report. A section
//! `## Notes` at the end of an existing output file is kept.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use canary_e2e::bench::{self, Options};

const NOTES: &str = "\n## Notes\n";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut options = Options::default();
    let mut out = PathBuf::from("BENCHMARKS.md");
    let mut command = String::from("make bench");
    let mut criterion = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => out = value()?.into(),
            "--command" => command = value()?,
            "--criterion" => criterion = Some(PathBuf::from(value()?)),
            "--duration" => options.duration = Duration::from_secs(value()?.parse()?),
            "--warmup" => options.warmup = Duration::from_secs(value()?.parse()?),
            "--rounds" => options.rounds = value()?.parse()?,
            "--connections" => options.connections = value()?.parse()?,
            "--trials" => options.propagation_trials = value()?.parse()?,
            "--no-pin" => options.pin = false,
            "--module" => {
                let v = value()?;
                let (label, path) = v.split_once('=').context("--module LABEL=PATH")?;
                options.modules.push((label.to_owned(), path.into()));
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let criterion = criterion
        .map(|dir| bench::criterion_results(&dir))
        .unwrap_or_default();
    let report = bench::run(options).await?;
    let mut text = report.markdown(&command, &criterion);
    let previous = std::fs::read_to_string(&out).unwrap_or_default();
    if let Some(at) = previous.find(NOTES) {
        text.push_str(&previous[at..]);
    }
    std::fs::write(&out, &text).with_context(|| format!("write {}", out.display()))?;
    print!("{text}");
    Ok(())
}
