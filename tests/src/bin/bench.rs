//! `make bench`: the filter's cost per request in a real Envoy next to Envoy alone and Envoy's
//! native sticky split, configuration time, propagation, and churn when weights change (the
//! filter against the native split), written to `BENCHMARKS.md`. `bench --help` lists the
//! options.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use canary_e2e::bench::{self, Options};
use canary_e2e::churn;
use clap::{Parser, ValueEnum};

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
    /// Requests whose Envoy instructions callgrind counts per configuration (0: none).
    #[arg(long, value_name = "N", default_value_t = Options::default().counted_requests)]
    counted_requests: usize,
    /// Keep callgrind's dumps in this folder, one folder per configuration, for
    /// `callgrind_annotate`.
    #[arg(long, value_name = "DIR")]
    callgrind_dir: Option<PathBuf>,
    /// Do not pin the Envoys and the load generator to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Another build of the filter, measured on the two-variant configuration: a `.wasm`, or a
    /// `lib<name>.so` build of the dynamic module.
    #[arg(long = "module", value_name = "LABEL=PATH", value_parser = parse_module)]
    modules: Vec<(String, PathBuf)>,
    /// Measure only this part, and replace only its section of an existing output file.
    #[arg(long, value_name = "PART", conflicts_with = "skip")]
    only: Option<Part>,
    /// Measure everything but this part, and keep its section of the existing output file
    /// as it is (the section names the run that produced it).
    #[arg(long, value_name = "PART")]
    skip: Option<Part>,
    /// Users sent through each configuration of the churn measurement.
    #[arg(long, value_name = "N", default_value_t = churn::USERS)]
    churn_users: usize,
    /// Only compare the configuration time and memory of the `--module` builds, over N
    /// rounds, and print the table instead of writing the report.
    #[arg(long, value_name = "N")]
    compare_configure: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// The share of users whose variant changes when weights change, the filter against
    /// Envoy's native sticky split.
    Churn,
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

    let previous = std::fs::read_to_string(&args.out).unwrap_or_default();
    // Churn first: the cost measurement pins this process to one CPU for the rest of its life.
    let churn = if args.skip == Some(Part::Churn) {
        churn_section(&previous).with_context(|| {
            format!(
                "--skip churn keeps the churn section of {}, which has none",
                args.out.display()
            )
        })?
    } else {
        churn::run(churn::Options {
            users: args.churn_users,
            ..churn::Options::default()
        })
        .await?
        .markdown(&args.command)
    };
    if args.only == Some(Part::Churn) {
        let text = replace_section(&previous, &churn);
        std::fs::write(&args.out, &text)
            .with_context(|| format!("write {}", args.out.display()))?;
        print!("{churn}");
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
        counted_requests: args.counted_requests,
        callgrind_dir: args.callgrind_dir,
        ..Options::default()
    };
    let criterion = args
        .criterion
        .map(|dir| bench::criterion_results(&dir))
        .unwrap_or_default();
    let report = bench::run(options).await?;
    let mut text = report.markdown(&args.command, &criterion);
    text.push('\n');
    text.push_str(&churn);
    if let Some(at) = previous.find(NOTES) {
        text.push_str(&previous[at..]);
    }
    std::fs::write(&args.out, &text).with_context(|| format!("write {}", args.out.display()))?;
    print!("{text}");
    Ok(())
}

/// The churn section of `report`, heading included, up to the next section.
fn churn_section(report: &str) -> Option<String> {
    let heading = format!("\n{}\n", churn::CHURN_HEADING);
    let start = report.find(&heading)? + 1;
    let end = report[start + heading.len() - 1..]
        .find("\n## ")
        .map_or(report.len(), |i| start + heading.len() - 1 + i + 1);
    Some(format!("{}\n", report[start..end].trim_end()))
}

/// `report` with its churn section replaced by `section`, or `section` put before the notes (or
/// at the end) if it has none.
fn replace_section(report: &str, section: &str) -> String {
    let heading = format!("\n{}\n", churn::CHURN_HEADING);
    let (start, end) = match report.find(&heading) {
        Some(at) => {
            let body = at + heading.len();
            let end = report[body..]
                .find("\n## ")
                .map_or(report.len(), |i| body + i);
            (at + 1, end + 1)
        }
        None => {
            let at = report.find(NOTES).map_or(report.len(), |at| at + 1);
            (at, at)
        }
    };
    let end = end.min(report.len());
    let mut text = report[..start].to_owned();
    if !text.is_empty() && !text.ends_with("\n\n") {
        text.push('\n');
    }
    text.push_str(section);
    if end < report.len() {
        text.push('\n');
        text.push_str(&report[end..]);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{churn_section, replace_section};

    #[test]
    fn churn_section_is_replaced_in_place() {
        let section = "## Churn\n\nnew\n";
        let report = "# B\n\n## Targets\n\nt\n\n## Churn\n\nold\n\n## Notes\n\nn\n";
        assert_eq!(
            replace_section(report, section),
            "# B\n\n## Targets\n\nt\n\n## Churn\n\nnew\n\n## Notes\n\nn\n"
        );
        let without = "# B\n\n## Targets\n\nt\n\n## Notes\n\nn\n";
        assert_eq!(
            replace_section(without, section),
            "# B\n\n## Targets\n\nt\n\n## Churn\n\nnew\n\n## Notes\n\nn\n"
        );
        assert_eq!(replace_section("", section), section);
    }

    #[test]
    fn churn_section_is_kept_as_it_was() {
        let report = "# B\n\n## Targets\n\nt\n\n## Churn\n\nold\n| a |\n\n## Notes\n\nn\n";
        assert_eq!(
            churn_section(report).as_deref(),
            Some("## Churn\n\nold\n| a |\n")
        );
        let last = "# B\n\n## Churn\n\nold\n";
        assert_eq!(churn_section(last).as_deref(), Some("## Churn\n\nold\n"));
        assert_eq!(churn_section("# B\n\n## Targets\n\nt\n"), None);
    }
}
