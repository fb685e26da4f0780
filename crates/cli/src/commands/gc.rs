use std::path::Path;
use std::process::ExitCode;

use runseal_seal::store::GcReport;

use crate::output::{human_bytes, print_json};

pub fn run(root: &Path, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    show(&runseal_seal::store::gc(root, dry_run)?, json)
}

/// Prints `report`, the local one or runseald's.
pub fn show(report: &GcReport, json: bool) -> anyhow::Result<ExitCode> {
    let dry_run = report.dry_run;
    if json {
        print_json(report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for path in &report.removed {
        println!("{verb} {}", path.display());
    }
    for path in &report.busy {
        println!("busy, left: {}", path.display());
    }
    let unlinked = if dry_run {
        "nothing would link once the above are gone"
    } else {
        "nothing links"
    };
    println!(
        "{verb} {} store entries {unlinked} ({})",
        report.entries,
        human_bytes(report.bytes)
    );
    Ok(ExitCode::SUCCESS)
}
