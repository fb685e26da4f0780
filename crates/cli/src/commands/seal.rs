use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use runseal_seal::{Outcome, SealOptions, SealReport};

use crate::output::{human_bytes, print_json, Bar};

pub fn run(dir: &Path, options: &SealOptions, json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    tracing::info!(
        runtime = %dir.display(),
        profiles = ?options.profiles,
        dry_run = options.dry_run,
        "seal start"
    );
    let report = runseal_seal::seal(dir, options, &Bar::new(!json))?;
    tracing::info!(
        outcome = ?report.outcome,
        profile = %report.profile,
        files = report.files,
        bytes = report.bytes,
        copied = report.copied_files,
        reused = report.reused_files,
        notes = report.notes.len(),
        secs = started.elapsed().as_secs_f64(),
        "seal finish"
    );
    if json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let secs = started.elapsed().as_secs_f64();
    match report.outcome {
        Outcome::Planned => print_plan(&report),
        Outcome::Unchanged => println!(
            "{}: already sealed and up to date ({} files, {}); nothing written ({secs:.2}s)",
            dir.display(),
            report.files,
            human_bytes(report.bytes)
        ),
        Outcome::Sealed => {
            println!(
                "{}: sealed with profile {}: {} files, {}; copied {} files ({}), reused {} ({secs:.2}s)",
                dir.display(),
                report.profile,
                report.files,
                human_bytes(report.bytes),
                report.copied_files,
                human_bytes(report.copied_bytes),
                report.reused_files,
            );
            print_mounts(&report);
        }
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(report: &SealReport) {
    println!(
        "{}: would seal with profile {}: {} files, {}",
        report.runtime.display(),
        report.profile,
        report.files,
        human_bytes(report.bytes)
    );
    if let Some(plan) = &report.plan {
        crate::output::print_top_level(&plan.top_level_sizes());
        crate::output::print_inclusions(
            "contents (each path that brings files in, and why)",
            &plan.inclusions,
        );
    }
    print_mounts(report);
}

fn print_mounts(report: &SealReport) {
    println!("mounts:");
    for mount in &report.mounts {
        println!("  {} -> {} (read-only)", mount.source, mount.target);
    }
}
