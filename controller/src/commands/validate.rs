use std::process::ExitCode;

#[allow(unused_variables)]
pub fn run(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("validate is not implemented yet")
}
