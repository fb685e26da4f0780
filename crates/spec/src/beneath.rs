//! Lookups below a directory fd: the one way every crate opens a path inside a tree that a
//! runtime's author or a setup script controls (a runtime dir, `isolated/`, a builder's
//! overlay, a plan's sources). Such trees can hold symlinks planted to lead out of them, and
//! names can be swapped while root works on them; `openat2` with `RESOLVE_BENEATH` keeps
//! every lookup inside the dir, whatever the tree holds, and the kernel says which rule
//! refused it. One definition, so seal, closure and sandbox cannot drift apart on it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{openat2, FileType, Mode, OFlags, ResolveFlags};

/// How a lookup below a dir treats symlinks on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Any symlink on the way is refused (`ELOOP`; `EXDEV` for a `..` or an absolute
    /// path): where runseal creates, writes or mounts things, and where a path is already
    /// resolved, a symlink can only be a trap.
    Refuse,
    /// Symlinks are followed while they stay below the dir (one that leaves it is
    /// `EXDEV`): a runtime's own links inside its tree are the author's to make.
    StayBeneath,
}

/// Opens `relative` (empty for the dir itself) below `base` with `flags` (`O_CLOEXEC` is
/// added). `/proc`-style magic links are never followed.
pub fn open(
    base: impl AsFd,
    relative: &Path,
    flags: OFlags,
    links: Links,
) -> rustix::io::Result<OwnedFd> {
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    if links == Links::Refuse {
        resolve |= ResolveFlags::NO_SYMLINKS;
    }
    openat2(
        base,
        relative,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
}

/// What an fd refers to (for an `O_NOFOLLOW` fd, the symlink itself).
pub fn file_type(fd: impl AsFd) -> rustix::io::Result<FileType> {
    rustix::fs::fstat(fd).map(|stat| FileType::from_raw_mode(stat.st_mode))
}

/// Whether two fds refer to the same file.
pub fn same_file(a: impl AsFd, b: impl AsFd) -> rustix::io::Result<bool> {
    let (a, b) = (rustix::fs::fstat(a)?, rustix::fs::fstat(b)?);
    Ok((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;

    fn tree() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/file"), "x").unwrap();
        std::os::unix::fs::symlink("file", dir.path().join("a/inside")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("a/out")).unwrap();
        std::os::unix::fs::symlink("../..", dir.path().join("a/up")).unwrap();
        let fd = rustix::fs::open(dir.path(), OFlags::PATH, Mode::empty()).unwrap();
        (dir, fd)
    }

    #[test]
    fn links_inside_are_followed_only_when_allowed_and_never_out() {
        let (_dir, base) = tree();
        let open = |rel: &str, links| open(&base, Path::new(rel), OFlags::RDONLY, links);
        assert!(open("a/inside", Links::StayBeneath).is_ok());
        assert_eq!(open("a/inside", Links::Refuse).err(), Some(Errno::LOOP));
        assert_eq!(open("a/out", Links::StayBeneath).err(), Some(Errno::XDEV));
        assert_eq!(open("a/out", Links::Refuse).err(), Some(Errno::LOOP));
        for links in [Links::StayBeneath, Links::Refuse] {
            assert!(open("a/up/x", links).is_err(), "{links:?}");
            assert_eq!(
                open("/etc/passwd", links).err(),
                Some(Errno::XDEV),
                "{links:?}"
            );
            assert_eq!(open("a/../..", links).err(), Some(Errno::XDEV), "{links:?}");
        }
    }

    #[test]
    fn the_empty_path_is_the_dir_and_nofollow_sees_the_link_itself() {
        let (_dir, base) = tree();
        let dir = open(&base, Path::new(""), OFlags::PATH, Links::Refuse).unwrap();
        assert!(same_file(&dir, &base).unwrap());
        assert_eq!(file_type(&dir).unwrap(), FileType::Directory);
        let flags = OFlags::PATH | OFlags::NOFOLLOW;
        let link = open(&base, Path::new("a/out"), flags, Links::Refuse).unwrap();
        assert_eq!(file_type(&link).unwrap(), FileType::Symlink);
    }
}
