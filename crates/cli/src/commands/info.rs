use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runseal_closure::{Inclusion, TopLevel};
use runseal_spec::Mount;
use serde::Deserialize;

use crate::output::{human_bytes, print_json};

/// What the text shows of a runtime's inventory, read from its JSON (as `--json` prints it
/// and runseald answers it), so that both print alike.
#[derive(Deserialize)]
struct Info {
    runtime: PathBuf,
    name: Option<String>,
    language: Option<String>,
    version: Option<String>,
    state: String,
    profiles: Vec<String>,
    files: u64,
    bytes: u64,
    mounts: Vec<Mount>,
    top_level: Vec<TopLevel>,
    inclusions: Vec<Inclusion>,
}

pub fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    show(
        serde_json::to_value(runseal_seal::inventory::info(dir)?)?,
        json,
    )
}

pub fn show(info: serde_json::Value, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&info)?;
        return Ok(ExitCode::SUCCESS);
    }
    let info: Info = serde_json::from_value(info)?;
    let label = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let runtime = info.runtime.display();
    println!(
        "{}: {} {} ({})",
        runtime,
        label(&info.name),
        label(&info.version),
        label(&info.language)
    );
    if info.state != "sealed" {
        println!("  not sealed: `runseal seal --dry-run {runtime}` shows what sealing would copy");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "  sealed with {}: {} files, {}",
        info.profiles.join("+"),
        info.files,
        human_bytes(info.bytes)
    );
    println!("  mounts:");
    for mount in &info.mounts {
        println!("    {} -> {}", mount.source, mount.target);
    }
    crate::output::print_top_level(&info.top_level);
    crate::output::print_inclusions(
        "contents (each path that brought files in, and why)",
        &info.inclusions,
    );
    Ok(ExitCode::SUCCESS)
}
