use std::process::ExitCode;

#[allow(unused_variables)]
pub fn run(file: &std::path::Path, api: crate::args::Api) -> anyhow::Result<ExitCode> {
    anyhow::bail!("render is not implemented yet")
}
