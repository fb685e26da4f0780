use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runseal_spec::RuleOptions;
use serde::Deserialize;

use crate::output::print_json;

/// What the text shows of a validation report, read from its JSON (as `--json` prints it and
/// runseald answers it), so that both print alike.
#[derive(Deserialize)]
struct Report {
    file: PathBuf,
    valid: bool,
    violations: Vec<Violation>,
}

#[derive(Deserialize)]
struct Violation {
    field: String,
    reason: String,
}

pub fn run(dir: &Path, allow_writable: bool, json: bool) -> anyhow::Result<ExitCode> {
    let options = RuleOptions {
        allow_writable,
        allow_host_sources: false,
    };
    let report = runseal_seal::validate_runtime(dir, options)?;
    show(serde_json::to_value(report)?, json)
}

/// Prints the report; exits 1 when the runtime is invalid.
pub fn show(value: serde_json::Value, json: bool) -> anyhow::Result<ExitCode> {
    let report: Report = serde_json::from_value(value.clone())?;
    if json {
        print_json(&value)?;
    } else if report.valid {
        println!("{}: valid", report.file.display());
    } else {
        for v in &report.violations {
            if v.field.is_empty() {
                println!("{}: {}", report.file.display(), v.reason);
            } else {
                println!("{}: {}: {}", report.file.display(), v.field, v.reason);
            }
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
