use std::process::ExitCode;

#[allow(unused_variables)]
pub fn run(target: &str, route: &str, variant: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("promote is not implemented yet")
}
