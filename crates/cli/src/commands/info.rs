use std::path::Path;
use std::process::ExitCode;

use runseal_seal::{Layout, Manifest};
use runseal_spec::{MountKind, RuntimeConfig};
use serde::Serialize;

use crate::output::{human_bytes, print_json};

#[derive(Serialize)]
struct Info {
    runtime: String,
    name: Option<String>,
    language: Option<String>,
    version: Option<String>,
    sealed: bool,
    profiles: Vec<String>,
    files: u64,
    bytes: u64,
    mounts: Vec<runseal_spec::Mount>,
    top_level: Vec<runseal_closure::TopLevel>,
    inclusions: Vec<runseal_closure::Inclusion>,
}

pub fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let layout = Layout::new(dir);
    let config = RuntimeConfig::load(&layout.runtime_yml())?;
    let sealed = !config.mounts.is_empty()
        && config
            .mounts
            .iter()
            .all(|m| MountKind::of(&m.source) == MountKind::Sealed);
    let manifest = Manifest::load(&Layout::manifest_in(&layout.isolated())).ok();
    let info = Info {
        runtime: dir.display().to_string(),
        name: config.name.clone(),
        language: config.language.clone(),
        version: config.version.clone(),
        sealed: sealed && manifest.is_some(),
        profiles: manifest
            .as_ref()
            .map(|m| m.profiles.clone())
            .unwrap_or_default(),
        files: manifest.as_ref().map_or(0, |m| m.files),
        bytes: manifest.as_ref().map_or(0, |m| m.bytes),
        mounts: config.mounts,
        top_level: manifest
            .as_ref()
            .map(manifest_top_level)
            .unwrap_or_default(),
        inclusions: manifest.map(|m| m.inclusions).unwrap_or_default(),
    };
    if json {
        print_json(&info)?;
        return Ok(ExitCode::SUCCESS);
    }
    let label = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!(
        "{}: {} {} ({})",
        info.runtime,
        label(&info.name),
        label(&info.version),
        label(&info.language)
    );
    if !info.sealed {
        println!(
            "  not sealed: `runseal seal --dry-run {}` shows what sealing would copy",
            info.runtime
        );
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

fn manifest_top_level(manifest: &Manifest) -> Vec<runseal_closure::TopLevel> {
    let files = manifest
        .entries
        .iter()
        .filter_map(|(path, entry)| match entry.kind {
            runseal_seal::ManifestKind::File { size, .. } => Some((path.as_path(), size)),
            _ => None,
        });
    runseal_closure::top_level_sizes(files)
}
