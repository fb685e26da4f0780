//! Paths a request names on the host (a build script, a work dir) must lie beneath one of
//! the dirs the operator configured, reached from it through no symlink and no `..`. Only
//! the path is ever reported back, never anything read from it.

use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{openat2, FileType, Mode, OFlags, ResolveFlags, CWD};

use crate::errors::{unprocessable, ApiError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// `path`, checked to be a `kind` beneath one of `roots` (absolute, canonical dirs), for
/// the request field `field`; the roots' flag is `flag`.
pub fn beneath(
    path: &Path,
    roots: &[PathBuf],
    field: &str,
    flag: &str,
    kind: Kind,
) -> Result<PathBuf, ApiError> {
    let shown = path.display();
    let outside = || {
        let roots: Vec<_> = roots.iter().map(|r| r.display().to_string()).collect();
        unprocessable(format!(
            "{field} {shown}: not beneath a {flag} of runseald ({})",
            if roots.is_empty() {
                "none configured".to_string()
            } else {
                roots.join(", ")
            }
        ))
    };
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(unprocessable(format!(
            "{field} {shown}: must be an absolute path without `..`"
        )));
    }
    let (root, rel) = roots
        .iter()
        .find_map(|root| Some((root, path.strip_prefix(root).ok()?)))
        .ok_or_else(outside)?;
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let opened = openat2(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::empty(),
    )
    .and_then(|root| {
        openat2(
            root.as_fd(),
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        )
    })
    .and_then(rustix::fs::fstat);
    let stat = opened.map_err(|e| {
        let why = match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => {
                format!("reached from {} through a symlink", root.display())
            }
            e => std::io::Error::from(e).to_string(),
        };
        unprocessable(format!("{field} {shown}: {why}"))
    })?;
    let found = FileType::from_raw_mode(stat.st_mode);
    match (kind, found) {
        (Kind::Dir, FileType::Directory) | (Kind::File, FileType::RegularFile) => {
            Ok(path.to_path_buf())
        }
        (Kind::Dir, _) => Err(unprocessable(format!("{field} {shown}: not a directory"))),
        (Kind::File, _) => Err(unprocessable(format!(
            "{field} {shown}: not a regular file"
        ))),
    }
}
