use std::process::ExitCode;

use crate::weights::Change;

pub fn run(target: &str, route: &str) -> anyhow::Result<ExitCode> {
    super::set_weight::apply(target, route, &Change::Abort)
}
