//! Writing a [`Plan`] out as a tree: directories, then file contents in parallel (unchanged
//! files hard-linked from the previous tree), then symlinks, then directory metadata.

use std::collections::HashMap;
use std::fs::{File, Permissions};
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use runseal_closure::{Entry, EntryKind, Plan, Root};
use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};

use crate::error::{Error, Result};
use crate::manifest::{sealed_mode, Manifest, ManifestEntry, ManifestKind, FORMAT};
use crate::progress::Progress;

/// What writing the tree did.
#[derive(Debug)]
pub struct Materialized {
    pub manifest: Manifest,
    pub copied_files: u64,
    pub copied_bytes: u64,
    pub reused_files: u64,
}

/// A previous sealed tree whose unchanged files can be linked instead of copied.
pub struct Previous<'a> {
    pub tree: &'a Path,
    pub manifest: &'a Manifest,
}

/// Writes `plan` (sources under `root`) into the new directory `dest`.
pub fn materialize(
    root: &Root,
    plan: &Plan,
    dest: &Path,
    previous: Option<Previous>,
    progress: &dyn Progress,
) -> Result<Materialized> {
    std::fs::create_dir(dest).map_err(|e| Error::io(dest, e))?;
    let place = |job: &Path| dest.join(job.strip_prefix("/").unwrap_or(job));

    for (job, entry) in &plan.entries {
        if entry.kind == EntryKind::Dir {
            let path = place(job);
            std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        }
    }

    let mut first_of_inode: HashMap<(u64, u64), &Path> = HashMap::new();
    let mut leaders = Vec::new();
    let mut followers = Vec::new();
    for (job, entry) in plan
        .entries
        .iter()
        .filter(|(_, e)| e.kind == EntryKind::File)
    {
        match first_of_inode.get(&entry.file_id) {
            Some(leader) => followers.push((job.as_path(), *leader)),
            None => {
                first_of_inode.insert(entry.file_id, job);
                leaders.push((job.as_path(), entry));
            }
        }
    }

    progress.begin("copying", plan.bytes);
    let copied: Vec<(PathBuf, String, bool)> = leaders
        .par_iter()
        .map(|(job, entry)| {
            let reuse = previous.as_ref().and_then(|p| reusable(p, job, entry));
            let dest_path = place(job);
            let (hash, fresh) = match reuse {
                Some((old, hash)) if std::fs::hard_link(&old, &dest_path).is_ok() => (hash, false),
                _ => (copy_file(&root.real(&entry.source), &dest_path)?, true),
            };
            set_metadata(&dest_path, entry, false)?;
            progress.advance(entry.size);
            Ok((job.to_path_buf(), hash, fresh))
        })
        .collect::<Result<_>>()?;
    progress.end();

    let mut hashes: HashMap<PathBuf, String> = HashMap::new();
    let (mut copied_files, mut copied_bytes, mut reused_files) = (0, 0, 0);
    for (job, hash, fresh) in copied {
        if fresh {
            copied_files += 1;
            copied_bytes += plan.entries[&job].size;
        } else {
            reused_files += 1;
        }
        hashes.insert(job, hash);
    }
    for (job, leader) in followers {
        let (from, to) = (place(leader), place(job));
        std::fs::hard_link(&from, &to).map_err(|e| Error::io(&to, e))?;
        hashes.insert(job.to_path_buf(), hashes[leader].clone());
    }

    for (job, entry) in &plan.entries {
        if let EntryKind::Symlink { target, .. } = &entry.kind {
            let path = place(job);
            std::os::unix::fs::symlink(target, &path).map_err(|e| Error::io(&path, e))?;
            set_metadata(&path, entry, true)?;
        }
    }
    for (job, entry) in plan.entries.iter().rev() {
        if entry.kind == EntryKind::Dir {
            set_metadata(&place(job), entry, false)?;
        }
    }

    let entries = plan
        .entries
        .iter()
        .map(|(job, entry)| {
            let record = ManifestEntry::from_plan(entry, hashes.remove(job));
            (job.clone(), record)
        })
        .collect();
    Ok(Materialized {
        manifest: Manifest {
            format: FORMAT,
            files: plan.files,
            bytes: plan.bytes,
            profiles: Vec::new(),
            inclusions: plan.inclusions.clone(),
            unmet_on_source: plan.unmet_on_source.clone(),
            entries,
        },
        copied_files,
        copied_bytes,
        reused_files,
    })
}

/// The previous copy of `job` and its hash, if its source has not changed since.
fn reusable(previous: &Previous, job: &Path, entry: &Entry) -> Option<(PathBuf, String)> {
    let record = previous.manifest.entries.get(job)?;
    let ManifestKind::File { size, blake3 } = &record.kind else {
        return None;
    };
    let old = previous.tree.join(job.strip_prefix("/").ok()?);
    let meta = std::fs::symlink_metadata(&old).ok()?;
    let untouched = meta.is_file()
        && meta.len() == *size
        && (meta.mtime(), meta.mtime_nsec()) == (record.mtime, record.mtime_nsec);
    (record.matches(entry) && untouched).then(|| (old, blake3.clone()))
}

/// Copies in the kernel (`copy_file_range`), then hashes the copy: the manifest records what
/// was written, whatever the source did meanwhile.
fn copy_file(source: &Path, dest: &Path) -> Result<String> {
    let mut from = File::open(source).map_err(|e| Error::io(source, e))?;
    let mut to = File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| Error::io(dest, e))?;
    std::io::copy(&mut from, &mut to).map_err(|e| Error::io(dest, e))?;
    drop(to);
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_mmap_rayon(dest)
        .map_err(|e| Error::io(dest, e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn set_metadata(path: &Path, entry: &Entry, is_link: bool) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    lchown(path, Some(entry.uid), Some(entry.gid)).map_err(io)?;
    if !is_link {
        std::fs::set_permissions(path, Permissions::from_mode(sealed_mode(entry.mode)))
            .map_err(io)?;
    }
    let mtime = Timespec {
        tv_sec: entry.mtime,
        tv_nsec: entry.mtime_nsec,
    };
    let times = Timestamps {
        last_access: mtime,
        last_modification: mtime,
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(e.into()))
}
