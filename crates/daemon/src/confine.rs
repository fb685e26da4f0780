//! Paths a request names on the host (a build script, a work dir, a volume) must lie beneath one of
//! the dirs the operator configured, reached from it through no symlink and no `..`. Only
//! the path is ever reported back, never anything read from it.

use std::path::{Component, Path, PathBuf};

use runseal_spec::beneath::{self, Links};
use rustix::fs::{FileType, Mode, OFlags};

use crate::errors::{unprocessable, ApiError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    /// A directory or a regular file (a volume's source).
    Either,
}

/// `path`, checked to be a `kind` beneath one of `roots` (absolute, canonical dirs), for
/// the request field `field`, and owned by `owner` where one is given; the roots' flag is
/// `flag`.
pub fn beneath(
    path: &Path,
    roots: &[PathBuf],
    field: &str,
    flag: &str,
    kind: Kind,
    owner: Option<u32>,
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
    let opened = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .and_then(|root| beneath::open(&root, rel, OFlags::PATH, Links::Refuse))
    .and_then(rustix::fs::fstat);
    // To a client other than root, a path it does not own and one that is not there look
    // the same: the daemon looks as root, and must not tell what lies in dirs the client
    // cannot search.
    let not_owned = |owner: u32| {
        ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("{field} {shown}: not a path this client (uid {owner}) owns"),
        )
    };
    let stat = opened.map_err(|e| {
        if let Some(owner) = owner {
            return not_owned(owner);
        }
        let why = match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => {
                format!("reached from {} through a symlink", root.display())
            }
            e => std::io::Error::from(e).to_string(),
        };
        unprocessable(format!("{field} {shown}: {why}"))
    })?;
    if let Some(owner) = owner.filter(|&uid| uid != stat.st_uid) {
        return Err(not_owned(owner));
    }
    let found = FileType::from_raw_mode(stat.st_mode);
    match (kind, found) {
        (Kind::Dir | Kind::Either, FileType::Directory)
        | (Kind::File | Kind::Either, FileType::RegularFile) => Ok(path.to_path_buf()),
        (Kind::Either, _) => Err(unprocessable(format!(
            "{field} {shown}: not a directory or regular file"
        ))),
        (Kind::Dir, _) => Err(unprocessable(format!("{field} {shown}: not a directory"))),
        (Kind::File, _) => Err(unprocessable(format!(
            "{field} {shown}: not a regular file"
        ))),
    }
}
