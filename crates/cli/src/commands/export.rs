use std::path::Path;
use std::process::ExitCode;

use runseal_oci::{ExportReport, Location};

use crate::cli::RegistryArgs;
use crate::output::{human_bytes, print_json};

pub fn run(
    dir: &Path,
    destination: &str,
    registry: &RegistryArgs,
    mount_from: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let destination = Location::parse(destination, None)?;
    anyhow::ensure!(
        mount_from.is_empty() || matches!(destination, Location::Registry(_)),
        "--mount-from is for a push (docker://...), not {destination}"
    );
    let transport = super::import::transport(registry);
    let report = runseal_oci::export(dir, &destination, &transport, mount_from)?;
    if json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(report: &ExportReport) {
    println!(
        "{}: exported to {}: {}",
        report.runtime.display(),
        report.destination,
        report.image.manifest
    );
    for layer in &report.image.layers {
        println!(
            "  layer {} {}: {} entries, {} of files, {} compressed",
            layer.role,
            layer.digest,
            layer.entries,
            human_bytes(layer.content_bytes),
            human_bytes(layer.size)
        );
    }
    if let Some(push) = &report.push {
        println!(
            "  pushed {} blobs ({}); the registry had {} already ({}) and mounted {} from other repositories ({})",
            push.pushed_blobs,
            human_bytes(push.pushed_bytes),
            push.existing_blobs,
            human_bytes(push.existing_bytes),
            push.mounted_blobs,
            human_bytes(push.mounted_bytes)
        );
    }
}
