//! Does a sealed tree still hold exactly what its manifest records? Any file changed,
//! added or removed since the seal is reported by path.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use runseal_spec::paths::below_root;

use crate::error::{Error, Result};
use crate::layout::{Layout, MANIFEST_NAME};
use crate::manifest::{Manifest, ManifestEntry, ManifestKind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub path: PathBuf,
    pub change: String,
}

/// Compares `tree` with the manifest stored in it; hashes every file.
pub fn check_integrity(tree: &Path) -> Result<(Manifest, Vec<Difference>)> {
    let manifest = Manifest::load(&Layout::manifest_in(tree))?;
    let differences = differences(tree, &manifest, Depth::Hash)?;
    Ok((manifest, differences))
}

/// Whether `tree` still matches `manifest` by metadata alone (type, mode, size, mtime, and
/// each file's inode and ctime; only a file whose ctime moved is hashed): cheap enough to
/// run on every seal, so a damaged tree is rebuilt instead of trusted, even one rewritten in
/// place with size and mtime put back.
pub fn matches_quickly(tree: &Path, manifest: &Manifest) -> bool {
    differences(tree, manifest, Depth::Metadata).is_ok_and(|d| d.is_empty())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    Metadata,
    Hash,
}

fn differences(tree: &Path, manifest: &Manifest, depth: Depth) -> Result<Vec<Difference>> {
    let mut found: BTreeMap<PathBuf, std::fs::Metadata> = BTreeMap::new();
    for item in walkdir::WalkDir::new(tree).min_depth(1).follow_links(false) {
        let item = item.map_err(|e| {
            Error::io(
                e.path().map(Path::to_path_buf).unwrap_or_default(),
                e.into(),
            )
        })?;
        let rel = item.path().strip_prefix(tree).expect("under tree");
        if rel == Path::new(MANIFEST_NAME) {
            continue;
        }
        let meta = item
            .metadata()
            .map_err(|e| Error::io(item.path(), e.into()))?;
        found.insert(Path::new("/").join(rel), meta);
    }
    let mut differences: Vec<Difference> = manifest
        .entries
        .par_iter()
        .filter_map(|(path, record)| {
            let change = match found.get(path) {
                None => Some("removed".to_string()),
                Some(meta) => compare(tree, path, record, meta, depth),
            };
            change.map(|change| Difference {
                path: path.clone(),
                change,
            })
        })
        .collect();
    differences.extend(
        found
            .keys()
            .filter(|p| !manifest.entries.contains_key(*p))
            .map(|p| Difference {
                path: p.clone(),
                change: "added".into(),
            }),
    );
    differences.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(differences)
}

fn compare(
    tree: &Path,
    path: &Path,
    record: &ManifestEntry,
    meta: &std::fs::Metadata,
    depth: Depth,
) -> Option<String> {
    let (kind, mode) = (&record.kind, record.mode);
    let real = tree.join(below_root(path));
    let file_type = meta.file_type();
    let type_ok = match kind {
        ManifestKind::Dir => file_type.is_dir(),
        ManifestKind::File { .. } => file_type.is_file(),
        ManifestKind::Symlink { .. } => file_type.is_symlink(),
    };
    if !type_ok {
        return Some("changed type".into());
    }
    if !file_type.is_symlink() && meta.mode() & 0o7777 != mode {
        return Some(format!(
            "mode {:o}, sealed as {mode:o}",
            meta.mode() & 0o7777
        ));
    }
    match kind {
        ManifestKind::Dir => None,
        ManifestKind::Symlink { target, .. } => match std::fs::read_link(&real) {
            Ok(now) if &now == target => None,
            Ok(now) => Some(format!("symlink now points to {}", now.display())),
            Err(e) => Some(format!("unreadable symlink: {e}")),
        },
        ManifestKind::File { size, blake3, copy } => {
            if meta.len() != *size {
                return Some(format!("size {}, sealed as {size}", meta.len()));
            }
            if depth == Depth::Metadata {
                let sealed_time = (record.mtime, record.mtime_nsec);
                if sealed_time != (meta.mtime(), meta.mtime_nsec()) {
                    return Some("modification time changed".into());
                }
                let hash = || {
                    blake3::Hasher::new()
                        .update_mmap(&real)
                        .map(|h| h.finalize())
                };
                return (!copy.is_some_and(|c| c.holds(meta, blake3, hash)))
                    .then(|| "inode or content differs from the sealed copy's".into());
            }
            let mut hasher = blake3::Hasher::new();
            match hasher.update_mmap(&real).map(|h| h.finalize()) {
                Ok(hash) if hash.to_hex().as_str() == blake3 => None,
                Ok(_) => Some("content changed (BLAKE3 differs)".into()),
                Err(e) => Some(format!("unreadable: {e}")),
            }
        }
    }
}
