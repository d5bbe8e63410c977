use std::process::ExitCode;

#[allow(unused_variables)]
pub fn run(
    target: &str,
    envoy_admin: Option<&str>,
    output: crate::args::Output,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("status is not implemented yet")
}
