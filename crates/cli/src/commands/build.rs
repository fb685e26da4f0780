use std::path::Path;
use std::process::ExitCode;

use runseal_closure::Root;
use runseal_sandbox::BuildSpec;
use runseal_seal::{NoProgress, SealOptions};

pub fn run(
    root: &Path,
    script: &Path,
    name: Option<String>,
    profiles: Vec<String>,
    profile_dir: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let script = script
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("{}: {e}", script.display()))?;
    std::fs::create_dir_all(root).map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
    let root = root.canonicalize()?;
    let spec = BuildSpec {
        script,
        runtimes_root: root.clone(),
        name,
    };
    let options = SealOptions {
        profiles,
        profile_dirs: vec![profile_dir.to_path_buf()],
        store: Some(root.clone()),
        ..SealOptions::default()
    };
    let seal = |merged: &Path, dir: &Path| {
        let report = runseal_seal::seal_from(&Root::new(merged), dir, &options, &NoProgress)
            .map_err(|e| e.to_string())?;
        eprintln!(
            "runseal build: sealed {} with profile {}: {} files",
            dir.display(),
            report.profile,
            report.files
        );
        Ok(())
    };
    let dir = runseal_sandbox::build_in_overlay(&spec, &seal)?;
    super::verify::run(&dir, &[], profile_dir, json)
}
