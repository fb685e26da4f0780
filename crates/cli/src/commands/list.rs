use std::path::Path;
use std::process::ExitCode;

use runseal_seal::Layout;
use runseal_spec::{MountKind, RuntimeConfig};
use serde::Serialize;

use crate::output::print_json;

#[derive(Serialize)]
struct Listed {
    name: String,
    version: Option<String>,
    language: Option<String>,
    /// `sealed`, `unsealed` (host mounts), or `invalid` (runtime.yml does not parse).
    state: &'static str,
    dir: String,
}

pub fn run(root: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let listed: Vec<Listed> = runseal_spec::list_runtimes(root)?
        .into_iter()
        .map(|r| {
            let layout = Layout::new(&r.dir);
            let state = match RuntimeConfig::load(&layout.runtime_yml()) {
                Err(_) => "invalid",
                Ok(c)
                    if !c.mounts.is_empty()
                        && c.mounts
                            .iter()
                            .all(|m| MountKind::of(&m.source) == MountKind::Sealed)
                        && Layout::manifest_in(&layout.isolated()).exists() =>
                {
                    "sealed"
                }
                Ok(_) => "unsealed",
            };
            Listed {
                name: r.name,
                version: r.version,
                language: r.language,
                state,
                dir: r.dir.display().to_string(),
            }
        })
        .collect();
    if json {
        print_json(&listed)?;
    } else if listed.is_empty() {
        println!("no runtimes under {}", root.display());
    } else {
        for r in &listed {
            println!(
                "{:<20} {:<12} {:<8} {:<9} {}",
                r.name,
                r.version.as_deref().unwrap_or("-"),
                r.language.as_deref().unwrap_or("-"),
                r.state,
                r.dir
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
