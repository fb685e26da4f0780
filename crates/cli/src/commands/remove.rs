use std::path::Path;
use std::process::ExitCode;

use crate::output::print_json;

pub fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    runseal_seal::remove_runtime(dir)?;
    if json {
        print_json(&serde_json::json!({ "removed": dir }))?;
    } else {
        println!("removed {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
