//! Writing a [`Plan`] out as a tree: directories, then file contents in parallel (unchanged
//! files hard-linked from the previous tree), then symlinks, then directory metadata. Every
//! name is created through its parent's fd, exclusively (see `dirfd`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use runseal_closure::{Entry, EntryKind, Plan, Root};
use runseal_spec::paths::below_root;
use rustix::fs::{
    fchmod, futimens, linkat, symlinkat, utimensat, AtFlags, Mode, Timespec, Timestamps,
};
use rustix::io::Errno;

use crate::dirfd::DirFd;
use crate::error::{Error, Result};
use crate::manifest::{sealed_mode, CopyStamp, Manifest, ManifestEntry, ManifestKind, FORMAT};
use crate::progress::Progress;
use crate::store::{Key, Store};

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
    pub tree: &'a DirFd,
    pub manifest: &'a Manifest,
}

/// How often a source that changes while it is copied is copied again before the seal fails.
const COPY_ATTEMPTS: u32 = 3;

/// Read and hashed in pieces this big: large enough for hashing on several threads.
const BUFFER: usize = 1 << 20;

/// Writes `plan` (sources under `root`) into the new, empty directory `tree`.
pub fn materialize(
    root: &Root,
    plan: &Plan,
    tree: &DirFd,
    previous: Option<Previous>,
    store: Option<&Store>,
    progress: &dyn Progress,
) -> Result<Materialized> {
    for (job, entry) in &plan.entries {
        if entry.kind == EntryKind::Dir {
            let (parent, name) = tree.parent_of(below_root(job))?;
            parent.make_dir(name, 0o755)?;
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
            let (parent, name) = tree.parent_of(below_root(job))?;
            let reused = match &previous {
                Some(previous) => reuse(previous, &parent, name, job, entry)?,
                None => None,
            };
            let (hash, fresh) = match reused {
                Some(hash) => (hash, false),
                None => {
                    let dest = parent.create_file(name, 0o600)?;
                    let hash = copy_file(root, entry, &dest, &|_| {})?;
                    set_metadata(&dest, entry).map_err(|e| Error::io(parent.join(name), e))?;
                    if let Some(store) = store {
                        let key = Key {
                            blake3: &hash,
                            mode: sealed_mode(entry.mode),
                            mtime: entry.mtime,
                            mtime_nsec: entry.mtime_nsec,
                        };
                        store.share(&parent, name, &dest, &key)?;
                    }
                    (hash, true)
                }
            };
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
        let (from_dir, from) = tree.parent_of(below_root(leader))?;
        let (to_dir, to) = tree.parent_of(below_root(job))?;
        linkat(from_dir.fd(), from, to_dir.fd(), to, AtFlags::empty())
            .map_err(|e| Error::io(to_dir.join(to), e.into()))?;
        hashes.insert(job.to_path_buf(), hashes[leader].clone());
    }

    for (job, entry) in &plan.entries {
        if let EntryKind::Symlink { target, .. } = &entry.kind {
            let (parent, name) = tree.parent_of(below_root(job))?;
            set_link_metadata(&parent, name, target, entry)
                .map_err(|e| Error::io(parent.join(name), e))?;
        }
    }
    for (job, entry) in plan.entries.iter().rev() {
        if entry.kind == EntryKind::Dir {
            let dir = tree.open_dir(below_root(job))?;
            set_metadata(dir.fd(), entry).map_err(|e| Error::io(dir.path(), e))?;
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

/// Records each file's [`CopyStamp`] in `manifest`. Runs once nothing will link or unlink
/// the tree's files any more: a link count change changes the ctime too.
pub fn stamp(tree: &DirFd, manifest: &mut Manifest) -> Result<()> {
    manifest
        .entries
        .par_iter_mut()
        .try_for_each(|(job, record)| {
            let ManifestKind::File { copy, .. } = &mut record.kind else {
                return Ok(());
            };
            let missing = || {
                Error::io(
                    tree.join(below_root(job)),
                    std::io::ErrorKind::NotFound.into(),
                )
            };
            let file = tree.open_file(below_root(job))?.ok_or_else(missing)?;
            let meta = file
                .metadata()
                .map_err(|e| Error::io(tree.join(below_root(job)), e))?;
            *copy = Some(CopyStamp::of(&meta));
            Ok(())
        })
}

/// Links the previous copy of `job` as `name` in `parent` and returns its hash, if its source
/// has not changed since and the copy is exactly as that seal left it (no rewrite in place:
/// see [`CopyStamp::holds`]).
fn reuse(
    previous: &Previous,
    parent: &DirFd,
    name: &std::ffi::OsStr,
    job: &Path,
    entry: &Entry,
) -> Result<Option<String>> {
    let Some(record) = previous.manifest.entries.get(job) else {
        return Ok(None);
    };
    let ManifestKind::File {
        size,
        blake3,
        copy: Some(stamp),
    } = &record.kind
    else {
        return Ok(None);
    };
    let Ok(Some(old)) = previous.tree.open_file(below_root(job)) else {
        return Ok(None);
    };
    let Ok(meta) = old.metadata() else {
        return Ok(None);
    };
    let untouched = meta.len() == *size
        && (meta.mtime(), meta.mtime_nsec()) == (record.mtime, record.mtime_nsec)
        && stamp.holds(CopyStamp::of(&meta), blake3, || {
            blake3::Hasher::new()
                .update_reader(&old)
                .map(|h| h.finalize())
        });
    if !(record.matches(entry) && untouched) {
        return Ok(None);
    }
    let Ok((old_dir, old_name)) = previous.tree.parent_of(below_root(job)) else {
        return Ok(None);
    };
    if linkat(old_dir.fd(), old_name, parent.fd(), name, AtFlags::empty()).is_err() {
        return Ok(None);
    }
    // The name was checked, then linked: what was linked must be the inode that was checked.
    let linked = parent.open_file(name)?;
    match linked.map(|f| (f.metadata().map(|m| m.ino()), f)) {
        Some((Ok(ino), file)) if ino == stamp.ino => {
            set_metadata(&file, entry).map_err(|e| Error::io(parent.join(name), e))?;
            Ok(Some(blake3.clone()))
        }
        _ => {
            parent.remove_file(name)?;
            Ok(None)
        }
    }
}

/// What a change to a file while it is read changes.
#[derive(PartialEq, Eq)]
struct SourceStamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    inode: (u64, u64),
}

impl SourceStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        SourceStamp {
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            inode: (meta.dev(), meta.ino()),
        }
    }
}

/// Copies the entry's source on `root` into `dest` and returns the BLAKE3 of the bytes
/// written, hashed as they pass (the source is read once). The source must still be the
/// file the plan describes, reached by the path the plan resolved: no symlink on the way
/// (one there now was swapped in for a dir since, and could lead anywhere), and the same
/// inode. It must not change while it is read (checked by fstat before and after;
/// `meanwhile` runs between the copy and the second fstat, a seam for tests); a change is
/// retried a few times, then refused, so that no torn copy is ever recorded as sealed.
fn copy_file(root: &Root, entry: &Entry, dest: &File, meanwhile: &dyn Fn(u32)) -> Result<String> {
    let source = root.real(&entry.source);
    let source = source.as_path();
    let io = |e| Error::io(source, e);
    let mut from = root.open_regular(&entry.source).map_err(|e| match e {
        runseal_closure::Error::Io(e)
            if e.source.raw_os_error() == Some(Errno::LOOP.raw_os_error()) =>
        {
            Error::Unsealable {
                file: source.to_path_buf(),
                message: "is now reached through a symlink, which was not there when the \
                          closure was planned; seal again"
                    .into(),
            }
        }
        other => other.into(),
    })?;
    let mut buffer = vec![0; BUFFER.min(entry.size as usize + 1)];
    for attempt in 1..=COPY_ATTEMPTS {
        let before = from.metadata().map_err(io)?;
        if let Some(change) = planned_change(entry, &before) {
            return Err(Error::Unsealable {
                file: source.to_path_buf(),
                message: format!("{change} since the closure was planned; seal again"),
            });
        }
        from.rewind().map_err(io)?;
        dest.set_len(0)
            .and_then(|()| (&*dest).rewind())
            .map_err(|e| Error::io(source, e))?;
        let mut hasher = blake3::Hasher::new();
        let mut copied = 0;
        loop {
            let n = from.read(&mut buffer).map_err(io)?;
            if n == 0 {
                break;
            }
            let piece = &buffer[..n];
            if n >= 1 << 17 {
                hasher.update_rayon(piece);
            } else {
                hasher.update(piece);
            }
            (&*dest).write_all(piece).map_err(io)?;
            copied += n as u64;
        }
        meanwhile(attempt);
        let after = from.metadata().map_err(io)?;
        if copied == before.len() && SourceStamp::of(&before) == SourceStamp::of(&after) {
            return Ok(hasher.finalize().to_hex().to_string());
        }
    }
    Err(Error::Unsealable {
        file: source.to_path_buf(),
        message: format!(
            "changed while it was being copied, {COPY_ATTEMPTS} times; seal again once nothing \
             writes to it"
        ),
    })
}

/// How the open source differs from what the plan recorded (another file now at the path,
/// or the file rewritten), if it does.
fn planned_change(entry: &Entry, meta: &std::fs::Metadata) -> Option<&'static str> {
    if !meta.is_file() || (meta.dev(), meta.ino()) != entry.file_id {
        Some("was replaced by another file")
    } else if meta.len() != entry.size
        || (meta.mtime(), meta.mtime_nsec()) != (entry.mtime, entry.mtime_nsec)
    {
        Some("was modified")
    } else {
        None
    }
}

/// Permission bits ([`sealed_mode`]) and mtime, through an open fd; the owner is root, who
/// created it ([`crate::manifest::SEALED_OWNER`]).
fn set_metadata(fd: impl AsFd, entry: &Entry) -> std::io::Result<()> {
    let fd = fd.as_fd();
    fchmod(fd, Mode::from_raw_mode(sealed_mode(entry.mode)))?;
    futimens(fd, &times(entry))?;
    Ok(())
}

/// Creates the symlink `name` in `parent` and gives it the entry's mtime; a link has no
/// permission bits of its own.
fn set_link_metadata(
    parent: &DirFd,
    name: &std::ffi::OsStr,
    target: &Path,
    entry: &Entry,
) -> std::io::Result<()> {
    symlinkat(target, parent.fd(), name)?;
    utimensat(parent.fd(), name, &times(entry), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn times(entry: &Entry) -> Timestamps {
    let mtime = Timespec {
        tv_sec: entry.mtime,
        tv_nsec: entry.mtime_nsec,
    };
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A source file and the plan entry recording it as it is now.
    fn source(dir: &Path, bytes: &[u8]) -> (PathBuf, Entry) {
        let path = dir.join("source");
        std::fs::write(&path, bytes).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let entry = Entry {
            source: path.clone(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            file_id: (meta.dev(), meta.ino()),
            whole: false,
        };
        (path, entry)
    }

    /// Rewrites `path` in place, same size, mtime put back: only ctime tells.
    fn rewrite_keeping_mtime(path: &Path, bytes: &[u8]) {
        let meta = std::fs::metadata(path).unwrap();
        let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all(bytes).unwrap();
        let mtime = Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        };
        let times = Timestamps {
            last_access: mtime,
            last_modification: mtime,
        };
        futimens(&file, &times).unwrap();
    }

    fn blake3_of(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    #[test]
    fn a_source_rewritten_during_the_copy_is_copied_again() {
        let t = tempfile::tempdir().unwrap();
        let (path, entry) = source(t.path(), b"first version");
        let dest = File::create_new(t.path().join("dest")).unwrap();
        let attempts = Cell::new(0);
        let hash = copy_file(&Root::host(), &entry, &dest, &|attempt| {
            attempts.set(attempt);
            if attempt == 1 {
                rewrite_keeping_mtime(&path, b"other version");
            }
        })
        .unwrap();
        assert_eq!(attempts.get(), 2);
        assert_eq!(hash, blake3_of(b"other version"));
        assert_eq!(
            std::fs::read(t.path().join("dest")).unwrap(),
            b"other version"
        );
    }

    #[test]
    fn a_source_that_keeps_changing_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let (path, entry) = source(t.path(), b"version 0");
        let dest = File::create_new(t.path().join("dest")).unwrap();
        let err = copy_file(&Root::host(), &entry, &dest, &|attempt| {
            rewrite_keeping_mtime(&path, format!("version {attempt}").as_bytes());
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("changed while it was being copied, 3 times"),
            "{err}"
        );
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_source_replaced_or_modified_since_the_plan_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let (path, entry) = source(t.path(), b"planned");
        let dest = File::create_new(t.path().join("dest")).unwrap();
        std::fs::write(t.path().join("other"), b"planned").unwrap();
        std::fs::rename(t.path().join("other"), &path).unwrap();
        let err = copy_file(&Root::host(), &entry, &dest, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("was replaced by another file"), "{err}");

        let (path, entry) = source(t.path(), b"planned");
        std::fs::write(&path, b"grown since").unwrap();
        let err = copy_file(&Root::host(), &entry, &dest, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("was modified since the closure was planned"),
            "{err}"
        );
    }

    /// The author swaps a dir on the planned path for a symlink (renameat2 EXCHANGE, in
    /// the attack): the copy must not read through it, whatever it leads to.
    #[test]
    fn a_symlink_in_place_of_a_dir_on_the_way_to_a_source_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let (planned, entry) = source(&t.path().join("sub"), b"planned");
        std::fs::create_dir(t.path().join("secret")).unwrap();
        std::fs::hard_link(&planned, t.path().join("secret/source")).unwrap();
        std::fs::rename(t.path().join("sub"), t.path().join("stash")).unwrap();
        std::os::unix::fs::symlink("secret", t.path().join("sub")).unwrap();
        let dest = File::create_new(t.path().join("dest")).unwrap();
        let err = copy_file(&Root::host(), &entry, &dest, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is now reached through a symlink, which was not there"),
            "{err}"
        );
        assert_eq!(std::fs::read(t.path().join("dest")).unwrap(), b"");
    }

    #[test]
    fn a_symlink_in_place_of_a_source_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (path, entry) = source(t.path(), b"planned");
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        let dest = File::create_new(t.path().join("dest")).unwrap();
        assert!(copy_file(&Root::host(), &entry, &dest, &|_| {}).is_err());
        assert_eq!(std::fs::read(t.path().join("dest")).unwrap(), b"");
    }
}
