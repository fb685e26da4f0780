use std::path::Path;
use std::process::ExitCode;

use runseal_oci::{ExportReport, Location};

use crate::cli::RegistryArgs;
use crate::output::{human_bytes, print_json};

pub fn run(
    dir: &Path,
    destination: &str,
    registry: &RegistryArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let destination = Location::parse(destination, None)?;
    let report = runseal_oci::export(dir, &destination, &super::import::transport(registry))?;
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
            "  pushed {} blobs ({}); the registry had {} already ({})",
            push.pushed_blobs,
            human_bytes(push.pushed_bytes),
            push.existing_blobs,
            human_bytes(push.existing_bytes)
        );
    }
}
