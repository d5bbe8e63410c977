//! `canaryctl package`: the filter module as an OCI image layout.

use std::process::ExitCode;

use anyhow::Context;

use crate::args::PackageArgs;
use crate::package::write;

pub fn run(args: PackageArgs) -> anyhow::Result<ExitCode> {
    let layout = write(&args.module, &args.output, &args.tag)
        .with_context(|| format!("cannot package {}", args.module.display()))?;
    let dir = args.output.display();
    println!("wrote an OCI image layout to {dir}");
    println!("  image (manifest) digest {}", layout.manifest.digest);
    println!(
        "  module layer            {} ({} bytes)",
        layout.module.digest, layout.module.size
    );
    println!("push it with:");
    println!(
        "  oras cp --from-oci-layout {dir}:{} REGISTRY/REPO:{}",
        args.tag, args.tag
    );
    println!("  crane push {dir} REGISTRY/REPO:{}", args.tag);
    println!(
        "and set the WasmPlugin's url: oci://REGISTRY/REPO:{} (sha256: {})",
        args.tag,
        layout.manifest.digest.trim_start_matches("sha256:")
    );
    Ok(ExitCode::SUCCESS)
}
