//! Whether a mount source stays inside the runtime dir when the kernel resolves it: the
//! lexical rules cannot see symlinks planted in `isolated/`, a lookup below the runtime dir's
//! fd ([`runseal_spec::beneath`]) can.

use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use runseal_spec::RuntimeConfig;

use runseal_spec::beneath::{self, Links};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// The runtime dir, opened once for checking all its sources.
pub fn open_runtime_dir(dir: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(dir, e.into()))
}

/// Why `source` (relative to the runtime dir `base`) does not resolve to something inside
/// it, if it does not.
pub fn escape_problem(base: &OwnedFd, source: &str) -> Option<String> {
    match beneath::open(base, Path::new(source), OFlags::PATH, Links::StayBeneath) {
        Ok(_) => None,
        Err(Errno::XDEV) => Some(format!(
            "`{source}` leaves the runtime dir through a symlink (refused by RESOLVE_BENEATH)"
        )),
        Err(Errno::NOENT) => Some(format!("`{source}` does not exist in the runtime dir")),
        Err(Errno::LOOP) => Some(format!("`{source}` runs into a symlink loop")),
        Err(e) => Some(format!("`{source}` cannot be resolved: {e}")),
    }
}

/// Why `config.mounts[index]`'s target cannot be made in a job root, if it cannot: its path
/// runs through another mount's tree, and there it crosses a symlink. The sandbox makes and
/// mounts nothing through a symlink (a runtime with `s/evil -> /` and a mount on
/// `/s/evil/dev` once got its files bound over the host's /dev), so such a runtime could
/// never start a job; validate says so first.
pub fn crossing_problem(base: &OwnedFd, config: &RuntimeConfig, index: usize) -> Option<String> {
    let target = Path::new(&config.mounts[index].target);
    for (other, mount) in config.mounts.iter().enumerate() {
        let Ok(rest) = target.strip_prefix(&mount.target) else {
            continue;
        };
        if other == index || rest.as_os_str().is_empty() {
            continue;
        }
        let mut path = Path::new(&mount.source).to_path_buf();
        let inner: Vec<Component> = rest.components().collect();
        // The source itself, then each directory on the way to the target: any of them a
        // symlink is a crossing. The target's own last component is made by the sandbox.
        for component in std::iter::once(None).chain(inner[..inner.len() - 1].iter().map(Some)) {
            if let Some(component) = component {
                path.push(component);
            }
            let flags = OFlags::PATH | OFlags::NOFOLLOW;
            match beneath::open(base, &path, flags, Links::StayBeneath) {
                Ok(fd) if is_a(&fd, FileType::Symlink) => {
                    return Some(format!(
                        "runs through `{}` of mounts[{other}], a symlink: nothing is mounted \
                         through one",
                        path.display()
                    ))
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    None
}

/// Whether `relative` under `base` is a regular file, reached through no symlink.
pub fn is_file_beneath(base: &OwnedFd, relative: &Path) -> bool {
    beneath::open(base, relative, OFlags::PATH, Links::Refuse)
        .is_ok_and(|fd| is_a(&fd, FileType::RegularFile))
}

fn is_a(fd: &OwnedFd, kind: FileType) -> bool {
    beneath::file_type(fd).is_ok_and(|found| found == kind)
}
