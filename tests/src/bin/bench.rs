//! `make bench`: the filter's cost per request in a real Envoy next to Envoy alone and Envoy's
//! native sticky split, configuration time and propagation, written to `BENCHMARKS.md`.
//! `bench --help` lists the options.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use canary_e2e::bench::{self, Options};
use clap::Parser;

const NOTES: &str = "\n## Notes\n";

/// Measures the filter in a real Envoy next to Envoy alone and Envoy's native sticky split, and
/// writes the report. A section `## Notes` at the end of an existing output file is kept.
#[derive(Debug, Parser)]
#[command(name = "bench", version)]
struct Args {
    /// The report to write.
    #[arg(long, value_name = "FILE", default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// The command named in the report as the one that produced it.
    #[arg(long, value_name = "TEXT", default_value = "make bench")]
    command: String,
    /// Criterion's results directory (`target/criterion`), read into the report.
    #[arg(long, value_name = "DIR")]
    criterion: Option<PathBuf>,
    /// Length of one measured run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = Options::default().duration.as_secs())]
    duration: u64,
    /// Length of the unmeasured run each Envoy gets first, in seconds (0: none).
    #[arg(long, value_name = "SECS", default_value_t = Options::default().warmup.as_secs())]
    warmup: u64,
    /// Measured runs per configuration, taken in turns.
    #[arg(long, value_name = "N", default_value_t = Options::default().rounds)]
    rounds: usize,
    /// Load-generator connections.
    #[arg(long, value_name = "N", default_value_t = Options::default().connections)]
    connections: u32,
    /// Configuration pushes timed for propagation.
    #[arg(long, value_name = "N", default_value_t = Options::default().propagation_trials)]
    trials: usize,
    /// Do not pin the Envoys and the load generator to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Another build of the filter, measured on the two-variant configuration.
    #[arg(long = "module", value_name = "LABEL=PATH", value_parser = parse_module)]
    modules: Vec<(String, PathBuf)>,
    /// Only compare the configuration time and memory of the `--module` builds, over N
    /// rounds, and print the table instead of writing the report.
    #[arg(long, value_name = "N")]
    compare_configure: Option<usize>,
}

fn parse_module(value: &str) -> Result<(String, PathBuf), String> {
    match value.split_once('=') {
        Some((label, path)) if !label.is_empty() && !path.is_empty() => {
            Ok((label.to_owned(), path.into()))
        }
        _ => Err(format!("expected LABEL=PATH, got {value:?}")),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    if let Some(trials) = args.compare_configure {
        let compared = bench::compare_configure(trials, &args.modules).await?;
        print!("{}", bench::compare_configure_markdown(&compared));
        return Ok(());
    }
    let options = Options {
        duration: Duration::from_secs(args.duration),
        warmup: Duration::from_secs(args.warmup),
        rounds: args.rounds,
        connections: args.connections,
        propagation_trials: args.trials,
        pin: !args.no_pin,
        modules: args.modules,
        ..Options::default()
    };
    let criterion = args
        .criterion
        .map(|dir| bench::criterion_results(&dir))
        .unwrap_or_default();
    let report = bench::run(options).await?;
    let mut text = report.markdown(&args.command, &criterion);
    let previous = std::fs::read_to_string(&args.out).unwrap_or_default();
    if let Some(at) = previous.find(NOTES) {
        text.push_str(&previous[at..]);
    }
    std::fs::write(&args.out, &text).with_context(|| format!("write {}", args.out.display()))?;
    print!("{text}");
    Ok(())
}
