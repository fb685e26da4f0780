use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use crate::output::print_json;

/// What the text shows of each listed runtime, read from the JSON that `--json` prints and
/// runseald answers, so that both print alike.
#[derive(Deserialize)]
struct Listed {
    name: String,
    version: Option<String>,
    language: Option<String>,
    state: String,
    dir: PathBuf,
}

pub fn run(root: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let listed = serde_json::to_value(runseal_seal::inventory::list(root)?)?;
    show(listed, &root.display().to_string(), json)
}

/// Prints `listed` (the runtimes under `root`, as JSON).
pub fn show(listed: serde_json::Value, root: &str, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&listed)?;
        return Ok(ExitCode::SUCCESS);
    }
    let listed: Vec<Listed> = serde_json::from_value(listed)?;
    if listed.is_empty() {
        println!("no runtimes under {root}");
    }
    for r in &listed {
        println!(
            "{:<20} {:<12} {:<8} {:<9} {}",
            r.name,
            r.version.as_deref().unwrap_or("-"),
            r.language.as_deref().unwrap_or("-"),
            r.state,
            r.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
