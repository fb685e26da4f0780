//! What a runtimes root holds, as plain data for `runseal list`/`info` and the daemon.

use std::path::{Path, PathBuf};

use runseal_closure::{top_level_sizes, Inclusion, TopLevel};
use runseal_spec::{list_runtimes, Mount, MountKind, RuntimeConfig};
use serde::Serialize;

use crate::error::Result;
use crate::layout::Layout;
use crate::manifest::{Manifest, ManifestKind};

/// Where a runtime stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Every mount is `isolated/...` and the manifest exists.
    Sealed,
    /// runtime.yml parses but names host paths (or has no manifest yet).
    Unsealed,
    /// runtime.yml does not parse.
    Invalid,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub name: String,
    pub version: Option<String>,
    pub language: Option<String>,
    pub state: State,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub runtime: PathBuf,
    pub name: Option<String>,
    pub language: Option<String>,
    pub version: Option<String>,
    pub state: State,
    pub profiles: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub mounts: Vec<Mount>,
    pub top_level: Vec<TopLevel>,
    pub inclusions: Vec<Inclusion>,
}

/// Every runtime under `root` with its state.
pub fn list(root: &Path) -> Result<Vec<Listed>> {
    Ok(list_runtimes(root)?
        .into_iter()
        .map(|r| Listed {
            state: state_of(&r.dir).0,
            name: r.name,
            version: r.version,
            language: r.language,
            dir: r.dir,
        })
        .collect())
}

/// What the runtime in `dir` holds.
pub fn info(dir: &Path) -> Result<Info> {
    let layout = Layout::new(dir);
    let config = RuntimeConfig::load(&layout.runtime_yml())?;
    let (state, manifest) = state_of(dir);
    let top_level = manifest
        .as_ref()
        .map(manifest_top_level)
        .unwrap_or_default();
    Ok(Info {
        runtime: dir.to_path_buf(),
        version: config.effective_version(),
        name: config.name,
        language: config.language,
        state,
        profiles: manifest
            .as_ref()
            .map(|m| m.profiles.clone())
            .unwrap_or_default(),
        files: manifest.as_ref().map_or(0, |m| m.files),
        bytes: manifest.as_ref().map_or(0, |m| m.bytes),
        mounts: config.mounts,
        top_level,
        inclusions: manifest.map(|m| m.inclusions).unwrap_or_default(),
    })
}

fn state_of(dir: &Path) -> (State, Option<Manifest>) {
    let layout = Layout::new(dir);
    let Ok(config) = RuntimeConfig::load(&layout.runtime_yml()) else {
        return (State::Invalid, None);
    };
    let manifest = Manifest::load(&Layout::manifest_in(&layout.isolated())).ok();
    let sealed_mounts = !config.mounts.is_empty()
        && config
            .mounts
            .iter()
            .all(|m| MountKind::of(&m.source) == MountKind::Sealed);
    let state = if sealed_mounts && manifest.is_some() {
        State::Sealed
    } else {
        State::Unsealed
    };
    (state, manifest)
}

fn manifest_top_level(manifest: &Manifest) -> Vec<TopLevel> {
    let files = manifest
        .entries
        .iter()
        .filter_map(|(path, entry)| match entry.kind {
            ManifestKind::File { size, .. } => Some((path.as_path(), size)),
            _ => None,
        })
        // The SBOM is the seal's record, beside the manifest, not a place jobs see.
        .filter(|(path, _)| *path != crate::sbom::sbom_path());
    top_level_sizes(files)
}
