//! Unpacking layers an untrusted author wrote into a fresh sealed tree. Every name is
//! checked before it is used (no absolute path, no `..`, no whiteout), every write goes
//! through the fd of its parent dir reached from the tree's fd with no symlink on the way,
//! and creates its name exclusively without following a link; hard links, device nodes,
//! fifos and anything else but dirs, regular files and symlinks are refused; modes lose
//! setuid, setgid and group/other write as a seal's copies do; the sizes add up to a limit.
//! A symlink is written as data: it may point anywhere, because nothing is ever written or
//! read through one here, and in a job it resolves inside the job's root.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use runseal_seal::dirfd::DirFd;
use runseal_seal::{sealed_mode, ManifestEntry, ManifestKind, MANIFEST_NAME};
use rustix::fs::{
    fchmod, futimens, statat, symlinkat, utimensat, AtFlags, FileType, Mode, Timespec, Timestamps,
};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::layout::MAX_JSON;

/// How much an image may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of file content, all layers together.
    pub max_bytes: u64,
    /// Tar entries, all layers together.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 4_000_000,
        }
    }
}

/// The layers unpacked so far: each path as the job sees it with its record, for the
/// manifest import writes.
pub struct Extraction<'a> {
    tree: &'a DirFd,
    image: String,
    limits: Limits,
    pub entries: BTreeMap<PathBuf, ManifestEntry>,
    /// The manifest the image carries (its profiles and notes are kept; its records are not
    /// trusted: the entries above are what was written).
    pub shipped_manifest: Option<Vec<u8>>,
    bytes: u64,
    count: u64,
}

impl<'a> Extraction<'a> {
    pub fn new(tree: &'a DirFd, image: &str, limits: Limits) -> Self {
        Extraction {
            tree,
            image: image.to_string(),
            limits,
            entries: BTreeMap::new(),
            shipped_manifest: None,
            bytes: 0,
            count: 0,
        }
    }

    fn refuse(&self, path: &Path, reason: impl std::fmt::Display) -> Error {
        Error::refused(
            &self.image,
            format!("layer entry `{}` {reason}", path.display()),
        )
    }

    /// Unpacks one layer (an uncompressed tar stream) over what is there.
    pub fn layer(&mut self, reader: impl Read) -> Result<()> {
        let tree_path = self.tree.path().to_path_buf();
        let io = |e| Error::io(&tree_path, e);
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            self.count += 1;
            if self.count > self.limits.max_entries {
                return Err(Error::refused(
                    &self.image,
                    format!("has more than {} entries", self.limits.max_entries),
                ));
            }
            let raw = entry.path_bytes().into_owned();
            let Some(rel) = safe_path(&raw)
                .map_err(|reason| self.refuse(Path::new(OsStr::from_bytes(&raw)), reason))?
            else {
                continue; // the root itself
            };
            let header = entry.header();
            let mode = sealed_mode(header.mode().map_err(io)?);
            let mtime = header
                .mtime()
                .ok()
                .and_then(|t| i64::try_from(t).ok())
                .ok_or_else(|| self.refuse(&rel, "has no valid mtime"))?;
            let kind = header.entry_type();
            let record = |kind| ManifestEntry {
                kind,
                mode,
                uid: 0,
                gid: 0,
                mtime,
                mtime_nsec: 0,
                source: Path::new("/").join(&rel),
            };
            if rel == Path::new(MANIFEST_NAME) && kind.is_file() {
                self.shipped_manifest = Some(self.read_small(&rel, &mut entry)?);
                continue;
            }
            match kind {
                tar::EntryType::Directory => {
                    self.dir(&rel)?;
                    self.entries
                        .insert(Path::new("/").join(&rel), record(ManifestKind::Dir));
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (size, blake3) = self.file(&rel, mode, mtime, &mut entry)?;
                    let kind = ManifestKind::File {
                        size,
                        blake3,
                        copy: None,
                    };
                    self.entries.insert(Path::new("/").join(&rel), record(kind));
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| PathBuf::from(OsStr::from_bytes(&t)))
                        .filter(|t| !t.as_os_str().is_empty())
                        .ok_or_else(|| self.refuse(&rel, "is a symlink to nothing"))?;
                    self.symlink(&rel, &target, mtime)?;
                    let kind = ManifestKind::Symlink {
                        target,
                        dangling: false,
                    };
                    self.entries.insert(Path::new("/").join(&rel), record(kind));
                }
                tar::EntryType::Link => {
                    return Err(self.refuse(&rel, "is a hard link; runseal images hold none"))
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    return Err(self.refuse(&rel, "is a device node; a sealed tree holds none"))
                }
                tar::EntryType::Fifo => {
                    return Err(self.refuse(&rel, "is a fifo; a sealed tree holds none"))
                }
                other => return Err(self.refuse(&rel, format!("is of tar type {other:?}"))),
            }
        }
        Ok(())
    }

    /// Gives every dir the mode and mtime its entry carries, deepest first (writing into a
    /// dir changes its mtime).
    pub fn finish(self) -> Result<BTreeMap<PathBuf, ManifestEntry>> {
        for (path, record) in self.entries.iter().rev() {
            if record.kind == ManifestKind::Dir {
                let dir = self.tree.open_dir(path.strip_prefix("/").unwrap_or(path))?;
                set_metadata(dir.fd(), record.mode, record.mtime)
                    .map_err(|e| Error::io(dir.path(), e))?;
            }
        }
        Ok(self.entries)
    }

    /// The dir holding `rel` (made as needed, each part recorded), and `rel`'s last name.
    fn parent<'p>(&mut self, rel: &'p Path) -> Result<(DirFd, &'p OsStr)> {
        let name = rel.file_name().expect("safe paths end in a name");
        let parent = rel.parent().unwrap_or(Path::new(""));
        let mut dir = self.tree.open_dir("")?;
        let mut sofar = PathBuf::new();
        for part in parent.iter() {
            sofar.push(part);
            match kind_of(&dir, part)? {
                None => {
                    dir.make_dir(part, 0o755)?;
                    // A dir the layer never named: recorded as made, at time zero.
                    self.entries.insert(
                        Path::new("/").join(&sofar),
                        ManifestEntry {
                            kind: ManifestKind::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                            mtime: 0,
                            mtime_nsec: 0,
                            source: Path::new("/").join(&sofar),
                        },
                    );
                }
                Some(FileType::Directory) => {}
                Some(_) => {
                    return Err(self.refuse(
                        rel,
                        format!(
                            "lies below `{}`, which is not a directory (nothing is written \
                             through a symlink)",
                            sofar.display()
                        ),
                    ))
                }
            }
            dir = dir.open_dir(part)?;
        }
        Ok((dir, name))
    }

    /// Makes room for a non-dir at `rel`: a later layer replaces a file or link, never a dir.
    fn replace<'p>(&mut self, rel: &'p Path) -> Result<(DirFd, &'p OsStr)> {
        let (dir, name) = self.parent(rel)?;
        match kind_of(&dir, name)? {
            None => {}
            Some(FileType::Directory) => return Err(self.refuse(rel, "would replace a directory")),
            Some(_) => {
                dir.remove_file(name)?;
                self.entries.remove(&Path::new("/").join(rel));
            }
        }
        Ok((dir, name))
    }

    fn dir(&mut self, rel: &Path) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        match kind_of(&dir, name)? {
            None => dir.make_dir(name, 0o755)?,
            Some(FileType::Directory) => {}
            Some(_) => {
                return Err(self.refuse(rel, "would replace a file or symlink with a directory"))
            }
        }
        Ok(())
    }

    fn budget(&mut self, rel: &Path, size: u64) -> Result<()> {
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_bytes {
            return Err(self.refuse(
                rel,
                format!(
                    "takes the image past {} bytes of content",
                    self.limits.max_bytes
                ),
            ));
        }
        Ok(())
    }

    fn file(
        &mut self,
        rel: &Path,
        mode: u32,
        mtime: i64,
        entry: &mut impl Read,
    ) -> Result<(u64, String)> {
        let (dir, name) = self.replace(rel)?;
        let mut file = dir.create_file(name, 0o600)?;
        let path = dir.join(name);
        let io = |e| Error::io(&path, e);
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = entry.read(&mut buffer).map_err(io)?;
            if n == 0 {
                break;
            }
            self.budget(rel, n as u64)?;
            size += n as u64;
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n]).map_err(io)?;
        }
        set_metadata(&file, mode, mtime).map_err(io)?;
        Ok((size, hasher.finalize().to_hex().to_string()))
    }

    fn symlink(&mut self, rel: &Path, target: &Path, mtime: i64) -> Result<()> {
        let (dir, name) = self.replace(rel)?;
        let path = dir.join(name);
        symlinkat(target, dir.fd(), name).map_err(|e| Error::io(&path, e.into()))?;
        utimensat(dir.fd(), name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io(&path, e.into()))
    }

    fn read_small(&mut self, rel: &Path, entry: &mut impl Read) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        entry
            .take(MAX_JSON * 8 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(self.tree.join(rel), e))?;
        if bytes.len() as u64 > MAX_JSON * 8 {
            return Err(self.refuse(rel, "is too large for a manifest"));
        }
        self.budget(rel, bytes.len() as u64)?;
        Ok(bytes)
    }
}

/// `raw` as a relative path of plain names (`./` and empty parts dropped), `None` for the
/// root itself, or why it is refused.
pub fn safe_path(raw: &[u8]) -> std::result::Result<Option<PathBuf>, &'static str> {
    if raw.starts_with(b"/") {
        return Err("is an absolute path");
    }
    let mut path = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("has a `..` component"),
            part if part.starts_with(b".wh.") => {
                return Err("is a whiteout; runseal images have one complete tree")
            }
            part => path.push(OsStr::from_bytes(part)),
        }
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

/// What `name` in `dir` is, not following a symlink; `None` when nothing is there.
fn kind_of(dir: &DirFd, name: &(impl AsRef<Path> + ?Sized)) -> Result<Option<FileType>> {
    let name = name.as_ref();
    match statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(Error::io(dir.join(name), e.into())),
    }
}

fn times(mtime: i64) -> Timestamps {
    let time = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

fn set_metadata(fd: impl std::os::fd::AsFd, mode: u32, mtime: i64) -> std::io::Result<()> {
    fchmod(&fd, Mode::from_raw_mode(mode))?;
    futimens(&fd, &times(mtime))?;
    Ok(())
}
