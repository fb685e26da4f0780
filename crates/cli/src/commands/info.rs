use std::path::Path;
use std::process::ExitCode;

use runseal_seal::inventory::State;

use crate::output::{human_bytes, print_json};

pub fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let info = runseal_seal::inventory::info(dir)?;
    if json {
        print_json(&info)?;
        return Ok(ExitCode::SUCCESS);
    }
    let label = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let runtime = info.runtime.display();
    println!(
        "{}: {} {} ({})",
        runtime,
        label(&info.name),
        label(&info.version),
        label(&info.language)
    );
    if info.state != State::Sealed {
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
