use std::process::ExitCode;

use crate::targets::Clients;
use crate::weights::Change;

pub async fn run(
    clients: &Clients,
    target: &str,
    route: &str,
    variant: &str,
) -> anyhow::Result<ExitCode> {
    let change = Change::Promote(variant.to_owned());
    super::set_weight::apply(clients, target, route, &change).await
}
