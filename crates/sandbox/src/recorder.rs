//! A recording stand-in for the kernel's mount calls, shared by the unit tests of the job
//! root and the builder root: the "mounts" it makes are fresh temp dirs, so the real
//! (unprivileged) creation of targets inside a root can be watched on disk.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, PlaceProblem, Result};
use crate::sys::{MountAttr, MountOps};

/// Records the mount calls; the "mounts" it makes are fresh temp dirs, so that the real
/// (unprivileged) creation of targets in the root can be watched on disk.
pub struct Recorder {
    pub log: Vec<String>,
    pub scratch: tempfile::TempDir,
    names: HashMap<i32, String>,
    made: usize,
    /// Each "mount" made, by name, and the dir standing in for it.
    pub dirs: Vec<(String, PathBuf)>,
    /// The dir an "overlay" shows (a fresh empty one if unset).
    pub overlay_shows: Option<PathBuf>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            log: Vec::new(),
            scratch: tempfile::tempdir().unwrap(),
            names: HashMap::new(),
            made: 0,
            dirs: Vec::new(),
            overlay_shows: None,
        }
    }

    fn fresh(&mut self, name: String) -> OwnedFd {
        self.made += 1;
        let dir = self.scratch.path().join(self.made.to_string());
        std::fs::create_dir(&dir).unwrap();
        let fd = crate::sys::open_dir(&dir).unwrap();
        self.names.insert(fd.as_raw_fd(), name.clone());
        self.dirs.push((name, dir));
        fd
    }

    /// The dir standing in for the first "mount" called `name`.
    pub fn dir_of(&self, name: &str) -> &Path {
        &self.dirs.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// `paths` with each `/proc/self/fd/N` (how an overlay's layers are given) named by
    /// what the fd is: a "mount", or a dir in one as `mount:/path`.
    fn names_of(&self, paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|path| {
                let fd = path
                    .strip_prefix("/proc/self/fd")
                    .ok()
                    .and_then(|n| n.to_str()?.parse::<i32>().ok());
                match fd {
                    Some(fd) => self.fd_name(fd),
                    None => path.display().to_string(),
                }
            })
            .collect()
    }

    fn fd_name(&self, fd: i32) -> String {
        if let Some(name) = self.names.get(&fd) {
            return name.clone();
        }
        let real = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        self.dirs
            .iter()
            .find_map(|(name, dir)| {
                let rest = real.strip_prefix(dir).ok()?;
                Some(format!("{name}:/{}", rest.display()))
            })
            .unwrap_or_else(|| real.display().to_string())
    }

    fn name(&self, fd: BorrowedFd<'_>) -> String {
        self.names
            .get(&fd.as_raw_fd())
            .cloned()
            .unwrap_or_else(|| "?".into())
    }
}

impl MountOps for Recorder {
    fn make_mounts_private(&mut self) -> Result<()> {
        self.log.push("private /".into());
        Ok(())
    }
    fn tmpfs(&mut self, mode: u32, size: Option<u64>) -> Result<OwnedFd> {
        let name = format!("tmpfs {mode:o} {size:?}");
        Ok(self.fresh(name))
    }
    fn proc(&mut self) -> Result<OwnedFd> {
        Ok(self.fresh("proc".into()))
    }
    fn clone_tree(&mut self, _: BorrowedFd<'_>, label: &Path) -> Result<OwnedFd> {
        let name = format!("tree {}", label.file_name().unwrap().to_string_lossy());
        Ok(self.fresh(name))
    }
    fn set_attr(&mut self, tree: BorrowedFd<'_>, attr: MountAttr, label: &Path) -> Result<()> {
        let mode = if attr.writable { "rw" } else { "ro" };
        let line = format!("{mode} {} ({})", label.display(), self.name(tree));
        self.log.push(line);
        Ok(())
    }
    fn attach(&mut self, tree: BorrowedFd<'_>, at: BorrowedFd<'_>, label: &Path) -> Result<()> {
        let line = format!("attach {} at {}", self.name(tree), label.display());
        // What a real proc would show where it is attached: one of the files masked.
        if self.name(tree) == "proc" {
            let flags = rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY;
            rustix::fs::openat(at, "keys", flags, rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
        }
        self.log.push(line);
        Ok(())
    }
    fn pivot(&mut self, root: BorrowedFd<'_>) -> Result<()> {
        let line = format!("pivot {}", self.name(root));
        self.log.push(line);
        Ok(())
    }
    fn overlay(&mut self, lower: &[PathBuf], upper: Option<(PathBuf, PathBuf)>) -> Result<OwnedFd> {
        let mut line = format!("overlay {}", self.names_of(lower).join(":"));
        if let Some((upper, work)) = upper {
            line += &format!(" upper {}", self.names_of(&[upper, work]).join(" work "));
        }
        self.log.push(line);
        let Some(shows) = &self.overlay_shows else {
            return Ok(self.fresh("overlay".into()));
        };
        let fd = crate::sys::open_dir(shows).unwrap();
        self.names.insert(fd.as_raw_fd(), "overlay".into());
        Ok(fd)
    }
}

/// Whether `err` is the refusal of a symlink at `path` in a root being built.
pub fn refused_symlink_at(err: &Error, path: &str) -> bool {
    matches!(
        err,
        Error::Place { path: at, problem: PlaceProblem::Symlink } if at == Path::new(path)
    )
}
