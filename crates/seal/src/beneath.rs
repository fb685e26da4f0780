//! Whether a mount source stays inside the runtime dir when the kernel resolves it: the
//! lexical rules cannot see symlinks planted in `isolated/`, `openat2(RESOLVE_BENEATH)` can.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// The runtime dir, opened once for checking all its sources.
pub fn open_runtime_dir(dir: &Path) -> Result<OwnedFd> {
    openat2(
        CWD,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::empty(),
    )
    .map_err(|e| Error::io(dir, e.into()))
}

/// Why `source` (relative to the runtime dir `base`) does not resolve to something inside
/// it, if it does not.
pub fn escape_problem(base: &OwnedFd, source: &str) -> Option<String> {
    match openat2(
        base,
        source,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(_) => None,
        Err(Errno::XDEV) => Some(format!(
            "`{source}` leaves the runtime dir through a symlink (refused by RESOLVE_BENEATH)"
        )),
        Err(Errno::NOENT) => Some(format!("`{source}` does not exist in the runtime dir")),
        Err(Errno::LOOP) => Some(format!("`{source}` runs into a symlink loop")),
        Err(e) => Some(format!("`{source}` cannot be resolved: {e}")),
    }
}
