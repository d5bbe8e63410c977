use std::process::ExitCode;

#[allow(unused_variables)]
pub fn run(
    file: &std::path::Path,
    route: &str,
    user: &str,
    output: crate::args::Output,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("assign is not implemented yet")
}
