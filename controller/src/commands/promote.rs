use std::process::ExitCode;

use crate::weights::Change;

pub fn run(target: &str, route: &str, variant: &str) -> anyhow::Result<ExitCode> {
    super::set_weight::apply(target, route, &Change::Promote(variant.to_owned()))
}
