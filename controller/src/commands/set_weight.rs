use std::process::ExitCode;

#[allow(unused_variables)]
pub fn run(target: &str, route: &str, weights: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("set_weight is not implemented yet")
}
