use std::path::Path;
use std::process::ExitCode;

use runseal_spec::RuleOptions;

use crate::output::print_json;

pub fn run(dir: &Path, allow_writable: bool, json: bool) -> anyhow::Result<ExitCode> {
    let options = RuleOptions {
        allow_writable,
        allow_host_sources: false,
    };
    let report = runseal_seal::validate_runtime(dir, options)?;
    if json {
        print_json(&report)?;
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
