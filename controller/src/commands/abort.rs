use std::process::ExitCode;

#[allow(unused_variables)]
pub fn run(target: &str, route: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("abort is not implemented yet")
}
