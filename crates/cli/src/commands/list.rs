use std::path::Path;
use std::process::ExitCode;

use crate::output::print_json;

pub fn run(root: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let listed = runseal_seal::inventory::list(root)?;
    if json {
        print_json(&listed)?;
    } else if listed.is_empty() {
        println!("no runtimes under {}", root.display());
    } else {
        for r in &listed {
            let state = serde_json::to_value(r.state)?;
            println!(
                "{:<20} {:<12} {:<8} {:<9} {}",
                r.name,
                r.version.as_deref().unwrap_or("-"),
                r.language.as_deref().unwrap_or("-"),
                state.as_str().unwrap_or("?"),
                r.dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
