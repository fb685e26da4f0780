use std::path::Path;
use std::process::ExitCode;

use crate::output::print_json;

pub fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    runseal_seal::remove_runtime(dir)?;
    show(&dir.display().to_string(), json)
}

/// Says that `runtime` is gone.
pub fn show(runtime: &str, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&serde_json::json!({ "removed": runtime }))?;
    } else {
        println!("removed {runtime}");
    }
    Ok(ExitCode::SUCCESS)
}
