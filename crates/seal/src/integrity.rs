//! Does a sealed tree still hold exactly what its manifest records? Any file changed,
//! added or removed since the seal is reported by path.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{openat, readlinkat, statat, AtFlags, Dir, FileType, Mode, OFlags, Stat, CWD};

use rayon::prelude::*;
use serde::Serialize;

use runseal_spec::paths::below_root;

use crate::error::{Error, Result};
use crate::layout::{Layout, MANIFEST_NAME};
use crate::manifest::{CopyStamp, Manifest, ManifestEntry, ManifestKind};

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

/// What the walk found at one place of the tree.
struct Found {
    stat: Stat,
    /// A symlink's target, read in the walk through its dir's fd.
    target: Option<PathBuf>,
}

/// Every place below `tree` but the manifest, by its path as the job sees it (`/usr/...`).
/// Each is looked at through its dir's fd (`fstatat`, `readlinkat`, `openat` with
/// `O_NOFOLLOW`), so the kernel resolves one name a call instead of the whole path.
fn walk(tree: &Path) -> Result<HashMap<PathBuf, Found>> {
    let root =
        openat(CWD, tree, DIR_FLAGS, Mode::empty()).map_err(|e| Error::io(tree, e.into()))?;
    let mut found = HashMap::new();
    walk_dir(tree, &root, Path::new("/"), &mut found)?;
    Ok(found)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Walks `dir` (at `at` in the job's view of `tree`) depth first: a subdir is opened when it
/// is reached, so the fds held open are two per level, however wide the tree.
fn walk_dir(
    tree: &Path,
    dir: &OwnedFd,
    at: &Path,
    found: &mut HashMap<PathBuf, Found>,
) -> Result<()> {
    let real = |path: &Path| tree.join(below_root(path));
    let entries = Dir::read_from(dir).map_err(|e| Error::io(real(at), e.into()))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(real(at), e.into()))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let path = at.join(OsStr::from_bytes(name.to_bytes()));
        if at == Path::new("/") && name.to_bytes() == MANIFEST_NAME.as_bytes() {
            continue;
        }
        let failed = |e: rustix::io::Errno| Error::io(real(&path), e.into());
        let stat = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(failed)?;
        let mut target = None;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let child = openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(failed)?;
                walk_dir(tree, &child, &path, found)?;
            }
            FileType::Symlink => {
                let link = readlinkat(dir, name, Vec::new()).map_err(failed)?;
                target = Some(PathBuf::from(OsString::from_vec(link.into_bytes())));
            }
            _ => {}
        }
        found.insert(path, Found { stat, target });
    }
    Ok(())
}

fn differences(tree: &Path, manifest: &Manifest, depth: Depth) -> Result<Vec<Difference>> {
    let found = walk(tree)?;
    let mut differences: Vec<Difference> = manifest
        .entries
        .par_iter()
        .filter_map(|(path, record)| {
            let change = match found.get(path) {
                None => Some("removed".to_string()),
                Some(found) => compare(tree, path, record, found, depth),
            };
            change.map(|change| Difference {
                path: path.clone(),
                change,
            })
        })
        .collect();
    // Found are the recorded places not removed, and the added ones.
    let removed = differences.iter().filter(|d| d.change == "removed").count();
    if found.len() + removed != manifest.entries.len() {
        differences.extend(
            found
                .keys()
                .filter(|p| !manifest.entries.contains_key(*p))
                .map(|p| Difference {
                    path: p.clone(),
                    change: "added".into(),
                }),
        );
    }
    differences.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(differences)
}

fn compare(
    tree: &Path,
    path: &Path,
    record: &ManifestEntry,
    found: &Found,
    depth: Depth,
) -> Option<String> {
    let (kind, mode) = (&record.kind, record.mode);
    let stat = &found.stat;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    let type_ok = match kind {
        ManifestKind::Dir => file_type == FileType::Directory,
        ManifestKind::File { .. } => file_type == FileType::RegularFile,
        ManifestKind::Symlink { .. } => file_type == FileType::Symlink,
    };
    if !type_ok {
        return Some("changed type".into());
    }
    let found_mode = stat.st_mode & 0o7777;
    if file_type != FileType::Symlink && found_mode != mode {
        return Some(format!("mode {found_mode:o}, sealed as {mode:o}"));
    }
    match kind {
        ManifestKind::Dir => None,
        ManifestKind::Symlink { target, .. } => match &found.target {
            Some(now) if now == target => None,
            Some(now) => Some(format!("symlink now points to {}", now.display())),
            None => Some("unreadable symlink".into()),
        },
        ManifestKind::File { size, blake3, copy } => {
            let found_size = u64::try_from(stat.st_size).unwrap_or_default();
            if found_size != *size {
                return Some(format!("size {found_size}, sealed as {size}"));
            }
            if depth == Depth::Metadata {
                let sealed_time = (record.mtime, record.mtime_nsec);
                if sealed_time != (stat.st_mtime, stat.st_mtime_nsec as i64) {
                    return Some("modification time changed".into());
                }
                let hash = || {
                    blake3::Hasher::new()
                        .update_mmap(tree.join(below_root(path)))
                        .map(|h| h.finalize())
                };
                return (!copy.is_some_and(|c| c.holds(CopyStamp::of_stat(stat), blake3, hash)))
                    .then(|| "inode or content differs from the sealed copy's".into());
            }
            let real = tree.join(below_root(path));
            let mut hasher = blake3::Hasher::new();
            match hasher.update_mmap(&real).map(|h| h.finalize()) {
                Ok(hash) if hash.to_hex().as_str() == blake3 => None,
                Ok(_) => Some("content changed (BLAKE3 differs)".into()),
                Err(e) => Some(format!("unreadable: {e}")),
            }
        }
    }
}
