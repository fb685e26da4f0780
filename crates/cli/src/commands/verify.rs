use std::path::Path;
use std::process::ExitCode;

use runseal_closure::Problem;
use runseal_seal::{Difference, Layout, ValidationReport};
use runseal_spec::{RuleOptions, RuntimeConfig};
use serde::Serialize;

use crate::output::print_json;

#[derive(Serialize)]
struct VerifyReport {
    runtime: String,
    ok: bool,
    validation: ValidationReport,
    closure_problems: Vec<Problem>,
    integrity_differences: Vec<Difference>,
    files: u64,
}

/// The static checks: validation, closure completeness and manifest integrity.
pub fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let layout = Layout::new(dir);
    let validation = runseal_seal::validate_runtime(dir, RuleOptions::default())?;
    let config = RuntimeConfig::load(&layout.runtime_yml())?;
    let tree = layout.isolated();
    let (manifest, integrity_differences) = runseal_seal::check_integrity(&tree)?;
    let ld_library_path: Vec<String> = config
        .environment
        .get("LD_LIBRARY_PATH")
        .map(|v| {
            v.split(':')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let closure_problems =
        runseal_closure::check_tree(&tree, &ld_library_path, &manifest.dangling_links())?;
    let report = VerifyReport {
        runtime: dir.display().to_string(),
        ok: validation.valid && closure_problems.is_empty() && integrity_differences.is_empty(),
        validation,
        closure_problems,
        integrity_differences,
        files: manifest.files,
    };
    if json {
        print_json(&report)?;
    } else {
        print_human(&report, &tree);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_human(report: &VerifyReport, tree: &Path) {
    for v in &report.validation.violations {
        println!(
            "{}: {}: {}",
            report.validation.file.display(),
            v.field,
            v.reason
        );
    }
    for p in &report.closure_problems {
        println!("{}{}: {}", tree.display(), p.path.display(), p.problem);
    }
    for d in &report.integrity_differences {
        println!("{}{}: {}", tree.display(), d.path.display(), d.change);
    }
    let verdict = if report.ok { "verified" } else { "FAILED" };
    println!(
        "{}: {verdict}: runtime.yml {}, closure {}, {} of {} files intact",
        report.runtime,
        if report.validation.valid {
            "valid"
        } else {
            "invalid"
        },
        if report.closure_problems.is_empty() {
            "complete"
        } else {
            "incomplete"
        },
        if report.integrity_differences.is_empty() {
            "all"
        } else {
            "not all"
        },
        report.files,
    );
}
