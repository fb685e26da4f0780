//! The names runseal uses inside a runtime dir.

use std::path::{Path, PathBuf};

use runseal_spec::{ISOLATED_DIR, RUNTIME_YML};

/// The manifest lives inside the sealed tree so that one rename swaps tree and manifest
/// together; mounts name `isolated/<top-level dir>`, so no job ever sees it.
pub const MANIFEST_NAME: &str = ".runseal-manifest.json";
pub const ORIGINAL_YML: &str = "runtime.yml.original";
pub const STAGING_DIR: &str = "isolated.tmp";
pub const PREVIOUS_DIR: &str = "isolated.prev";

#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Layout { dir: dir.into() }
    }
    pub fn runtime_yml(&self) -> PathBuf {
        self.dir.join(RUNTIME_YML)
    }
    /// The runtime.yml as it was before the first seal, kept for audit and re-sealing.
    pub fn original_yml(&self) -> PathBuf {
        self.dir.join(ORIGINAL_YML)
    }
    pub fn isolated(&self) -> PathBuf {
        self.dir.join(ISOLATED_DIR)
    }
    /// Where a new tree is built before it is swapped in.
    pub fn staging(&self) -> PathBuf {
        self.dir.join(STAGING_DIR)
    }
    /// The tree a re-seal replaced, kept until the next swap: jobs started before the swap
    /// still see it through their bind mounts, and emptying it would empty their view.
    pub fn previous(&self) -> PathBuf {
        self.dir.join(PREVIOUS_DIR)
    }
    pub fn manifest_in(tree: &Path) -> PathBuf {
        tree.join(MANIFEST_NAME)
    }
}
