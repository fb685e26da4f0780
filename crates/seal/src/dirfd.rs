//! Every write in a runtime dir goes through a directory fd, one name at a time, never
//! following a symlink and never opening a name it did not create. The runtime dir is written
//! by its author, who is not trusted: a link planted at `runtime.yml.tmp`, `isolated.tmp` or
//! anywhere inside them must make a seal fail, not redirect a root write.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use runseal_spec::beneath::{self, Links};
use rustix::fs::{
    flock, mkdirat, openat, renameat, renameat_with, syncfs, unlinkat, AtFlags, Dir,
    FlockOperation, Mode, OFlags, RenameFlags, CWD,
};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// An open directory and the path it was opened at (for messages only; no lookup uses it).
#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
    path: PathBuf,
}

impl DirFd {
    /// Opens the directory at `path`, a path the operator gave (symlinks in it are followed;
    /// whether its author could have planted them is [`crate::trust`]'s question).
    pub fn open(path: &Path) -> Result<DirFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        openat(CWD, path, flags, Mode::empty())
            .map(|fd| DirFd {
                fd,
                path: path.to_path_buf(),
            })
            .map_err(|e| Error::io(path, e.into()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Where `rel` is, for messages.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// The directory at `rel` (any number of components) below this one.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> Result<DirFd> {
        // Inside it, through no symlink at all: the tree is the runtime author's.
        let rel = rel.as_ref();
        beneath::open(
            &self.fd,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Links::Refuse,
        )
        .map(|fd| DirFd {
            fd,
            path: self.path.join(rel),
        })
        .map_err(|e| Error::io(self.join(rel), e.into()))
    }

    /// The directory holding `rel` and the last name of `rel`.
    pub fn parent_of<'a>(&self, rel: &'a Path) -> Result<(DirFd, &'a OsStr)> {
        let name = rel.file_name().ok_or_else(|| {
            Error::io(
                self.join(rel),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
            )
        })?;
        Ok((self.open_dir(rel.parent().unwrap_or(Path::new("")))?, name))
    }

    /// A new directory `name`, opened; an existing name of any kind is an error.
    pub fn create_dir(&self, name: &str, mode: u32) -> Result<DirFd> {
        self.make_dir(name, mode)?;
        self.open_dir(name)
    }

    /// A new directory `name` (one component) in this one.
    pub fn make_dir(&self, name: impl AsRef<Path>, mode: u32) -> Result<()> {
        let name = self.single(name.as_ref())?;
        mkdirat(&self.fd, name, Mode::from_raw_mode(mode)).map_err(|e| self.create_error(name, e))
    }

    /// A new regular file `name`, open for writing; an existing name of any kind is an error.
    pub fn create_file(&self, name: impl AsRef<Path>, mode: u32) -> Result<File> {
        let name = self.single(name.as_ref())?;
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NOCTTY
            | OFlags::CLOEXEC;
        openat(&self.fd, name, flags, Mode::from_raw_mode(mode))
            .map(File::from)
            .map_err(|e| self.create_error(name, e))
    }

    /// A name that exists although runseal just removed it, or never made it, was put there
    /// by someone else: say so rather than "File exists".
    fn create_error(&self, name: &Path, e: Errno) -> Error {
        match e {
            Errno::EXIST => Error::Unsealable {
                file: self.join(name),
                message: "appeared while runseal was writing the runtime dir; runseal never \
                          writes through a name it did not create"
                    .into(),
            },
            e => Error::io(self.join(name), e.into()),
        }
    }

    /// The regular file at `rel`, open for reading; `None` when nothing is there. Anything
    /// but a regular file (a symlink on the way included) is an error, and a fifo does not
    /// block the open.
    pub fn open_file(&self, rel: impl AsRef<Path>) -> Result<Option<File>> {
        let rel = rel.as_ref();
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        let file = match beneath::open(&self.fd, rel, flags, Links::Refuse) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP | Errno::XDEV) => return Err(self.not_a_file(rel, "a symlink")),
            Err(e) => return Err(Error::io(self.join(rel), e.into())),
        };
        let meta = file.metadata().map_err(|e| Error::io(self.join(rel), e))?;
        if !meta.is_file() {
            return Err(self.not_a_file(rel, "not a regular file"));
        }
        Ok(Some(file))
    }

    /// `name` if it is one component: a longer path would follow symlinks on its way.
    fn single<'a>(&self, name: &'a Path) -> Result<&'a Path> {
        if name.components().count() == 1 && name.file_name().is_some() {
            return Ok(name);
        }
        Err(Error::io(
            self.join(name),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a single file name"),
        ))
    }

    fn not_a_file(&self, rel: &Path, what: &str) -> Error {
        Error::Unsealable {
            file: self.join(rel),
            message: format!("is {what}; runseal reads and replaces only regular files here"),
        }
    }

    pub fn read_to_string(&self, rel: impl AsRef<Path>) -> Result<Option<String>> {
        let rel = rel.as_ref();
        let Some(mut file) = self.open_file(rel)? else {
            return Ok(None);
        };
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| Error::io(self.join(rel), e))?;
        Ok(Some(text))
    }

    /// Replaces `name` so that a reader, or a crash, sees the old bytes or the new: writes
    /// `name.tmp` (created afresh, so a link planted there is removed, not followed), fsyncs
    /// it, renames it over `name` and fsyncs the dir.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let temp = temp_name(name);
        self.remove_file(&temp)?;
        let mut file = self.create_file(&temp, 0o644)?;
        let io = |e| Error::io(self.join(&temp), e);
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        renameat(&self.fd, &temp, &self.fd, name)
            .map_err(|e| Error::io(self.join(name), e.into()))?;
        self.sync()
    }

    pub fn exists(&self, name: impl AsRef<Path>) -> Result<bool> {
        let name = name.as_ref();
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io(self.join(name), e.into())),
        }
    }

    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        renameat(&self.fd, from, &self.fd, to).map_err(|e| Error::io(self.join(to), e.into()))
    }

    pub fn exchange(&self, a: &str, b: &str) -> Result<()> {
        renameat_with(&self.fd, a, &self.fd, b, RenameFlags::EXCHANGE)
            .map_err(|e| Error::io(self.join(b), e.into()))
    }

    /// Removes the non-directory `name` itself (a symlink, not its target); absent is fine.
    pub fn remove_file(&self, name: impl AsRef<Path>) -> Result<()> {
        let name = name.as_ref();
        match unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io(self.join(name), e.into())),
        }
    }

    /// Removes `name` and everything below it, descending only into real directories: a
    /// symlink met anywhere is removed itself. Absent is fine.
    pub fn remove_tree(&self, name: &str) -> Result<()> {
        remove_tree_at(self.fd(), OsStr::new(name)).map_err(|e| Error::io(self.join(name), e))
    }

    pub fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd).map_err(|e| Error::io(&self.path, e.into()))
    }

    /// Flushes the whole filesystem holding this dir.
    pub fn sync_filesystem(&self) -> Result<()> {
        syncfs(&self.fd).map_err(|e| Error::io(&self.path, e.into()))
    }

    /// The names in this dir that start with `prefix` (`.` and `..` never).
    pub fn names_starting(&self, prefix: &str) -> Result<Vec<String>> {
        let io = |e: Errno| Error::io(&self.path, e.into());
        let fd = openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        let mut names = Vec::new();
        for entry in Dir::new(fd).map_err(io)? {
            let entry = entry.map_err(io)?;
            if let Ok(name) = entry.file_name().to_str() {
                if name.starts_with(prefix) && name != "." && name != ".." {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// An exclusive `flock` on this dir, held until the returned fd is closed.
    pub fn lock(&self, wait: bool) -> Result<OwnedFd> {
        let fd = self.fd.try_clone().map_err(|e| Error::io(&self.path, e))?;
        let op = if wait {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        match flock(&fd, op) {
            Ok(()) => Ok(fd),
            Err(Errno::WOULDBLOCK) => Err(Error::Busy {
                path: self.path.clone(),
            }),
            Err(e) => Err(Error::io(&self.path, e.into())),
        }
    }
}

/// The temporary name used while `name` is written.
pub fn temp_name(name: &str) -> String {
    format!("{name}.tmp")
}

fn remove_tree_at(parent: BorrowedFd, name: &OsStr) -> std::io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = match openat(parent, name, flags, Mode::empty()) {
        Ok(dir) => dir,
        Err(Errno::NOENT) => return Ok(()),
        Err(Errno::NOTDIR | Errno::LOOP) => {
            return match unlinkat(parent, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    // Names are collected before any is removed: readdir while unlinking may skip entries.
    let mut names: Vec<CString> = Vec::new();
    for entry in Dir::read_from(&dir)? {
        let entry = entry?;
        let child = entry.file_name();
        if child.to_bytes() != b"." && child.to_bytes() != b".." {
            names.push(child.to_owned());
        }
    }
    for child in &names {
        match unlinkat(&dir, child.as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) => remove_tree_at(dir.as_fd(), OsStr::from_bytes(child.to_bytes()))?,
            Err(e) => return Err(e.into()),
        }
    }
    match unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_planted_temp_link_is_replaced_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "secret").unwrap();
        let runtime = t.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        symlink(&victim, runtime.join("runtime.yml.tmp")).unwrap();
        symlink(&victim, runtime.join("runtime.yml")).unwrap();

        let dir = DirFd::open(&runtime).unwrap();
        dir.write_atomic("runtime.yml", b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        assert_eq!(
            std::fs::read_to_string(runtime.join("runtime.yml")).unwrap(),
            "new"
        );
        assert!(!runtime.join("runtime.yml").is_symlink());
    }

    #[test]
    fn creating_over_a_planted_name_fails_and_reading_through_a_link_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "secret").unwrap();
        std::fs::create_dir(t.path().join("elsewhere")).unwrap();
        let runtime = t.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        symlink(&victim, runtime.join("file")).unwrap();
        symlink(t.path().join("elsewhere"), runtime.join("sub")).unwrap();
        let dir = DirFd::open(&runtime).unwrap();

        assert!(dir.create_file("file", 0o644).is_err());
        assert!(dir.make_dir("sub", 0o755).is_err());
        assert!(dir.open_dir("sub").is_err());
        assert!(dir.make_dir("sub/x", 0o755).is_err());
        let err = dir.read_to_string("file").unwrap_err().to_string();
        assert!(err.contains("is a symlink"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        assert_eq!(
            std::fs::read_dir(t.path().join("elsewhere"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn remove_tree_removes_links_not_their_targets() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let tree = t.path().join("runtime/isolated.tmp");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), "x").unwrap();
        symlink(&outside, tree.join("a/out")).unwrap();
        symlink(&outside, t.path().join("runtime/link")).unwrap();

        let dir = DirFd::open(&t.path().join("runtime")).unwrap();
        dir.remove_tree("isolated.tmp").unwrap();
        dir.remove_tree("link").unwrap();
        dir.remove_tree("absent").unwrap();
        assert!(outside.join("keep").exists());
        assert_eq!(
            std::fs::read_dir(t.path().join("runtime")).unwrap().count(),
            0
        );
    }
}
