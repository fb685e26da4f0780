//! Path resolution inside a directory treated as `/`, the way the kernel resolves paths in a
//! job whose root is that directory: absolute symlinks restart at the root, `..` at the root
//! stays there. Every symlink passed on the way is reported, because the sealed tree must hold
//! each link of a chain, not only its end.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use runseal_spec::beneath::{self, Links};
use rustix::fs::{Mode, OFlags};

use crate::error::{Error, Result};

/// Linux's own limit on symlinks followed in one lookup (`MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// A directory seen as the root of a filesystem, optionally with trees of it mounted
/// elsewhere (the job's view of a runtime's remapped mounts).
#[derive(Debug, Clone)]
pub struct Root {
    base: PathBuf,
    /// (target, source): the tree at `source` (resolved) is what is seen at `target`.
    mounts: Vec<(PathBuf, PathBuf)>,
    /// What `lstat` and `readlink` said of each real path, where this root remembers it.
    seen: Option<Arc<Mutex<Seen>>>,
}

/// The answers a planning root remembers: one plan resolves the same few dirs and links
/// (`/lib`, `/usr`, the loader) hundreds of times, each a full path lookup.
#[derive(Debug, Default)]
struct Seen {
    metadata: HashMap<PathBuf, Metadata>,
    links: HashMap<PathBuf, PathBuf>,
}

/// A symlink met while resolving: where it is (a path under the root) and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// The outcome of resolving a path under a [`Root`].
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The path with every symlink resolved.
    pub path: PathBuf,
    /// Each symlink followed, in order.
    pub links: Vec<Link>,
}

impl Root {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Root {
            base: base.into(),
            mounts: Vec::new(),
            seen: None,
        }
    }

    /// This root as a job sees it: at each `(target, source)`, the tree at `source` (a
    /// resolved path of this root) instead of what this root holds there.
    pub fn with_mounts(&self, mounts: Vec<(PathBuf, PathBuf)>) -> Self {
        Root {
            base: self.base.clone(),
            mounts,
            seen: self.seen.clone(),
        }
    }

    /// This root, remembering what `lstat` and `readlink` answer for as long as it (and the
    /// roots made from it) live: for one plan, which reads and changes nothing.
    pub fn remembering(&self) -> Self {
        Root {
            seen: Some(Arc::default()),
            ..self.clone()
        }
    }

    /// `seen`'s answer for `real`, else `ask`'s, kept when it succeeds.
    fn recall<T: Clone>(
        &self,
        real: PathBuf,
        table: fn(&mut Seen) -> &mut HashMap<PathBuf, T>,
        ask: impl FnOnce(&Path) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let Some(seen) = &self.seen else {
            return ask(&real);
        };
        if let Some(known) = seen
            .lock()
            .ok()
            .and_then(|mut s| table(&mut s).get(&real).cloned())
        {
            return Ok(known);
        }
        let answer = ask(&real)?;
        if let Ok(mut seen) = seen.lock() {
            table(&mut seen).insert(real, answer.clone());
        }
        Ok(answer)
    }

    /// Where `path`, as seen through the mounts, is on this root: under the longest target
    /// that holds it, the same path under that mount's source.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        let mount = self
            .mounts
            .iter()
            .filter(|(target, _)| path.starts_with(target))
            .max_by_key(|(target, _)| target.as_os_str().len());
        match mount {
            Some((target, source)) => match path.strip_prefix(target) {
                Ok(rest) if !rest.as_os_str().is_empty() => source.join(rest),
                _ => source.clone(),
            },
            None => path.to_path_buf(),
        }
    }

    /// The host's own root.
    pub fn host() -> Self {
        Root::new("/")
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The real location of `path` (absolute, seen from inside the root, through its mounts).
    pub fn real(&self, path: &Path) -> PathBuf {
        let path = self.host_path(path);
        match path.strip_prefix("/") {
            Ok(rel) if rel.as_os_str().is_empty() => self.base.clone(),
            Ok(rel) => self.base.join(rel),
            Err(_) => self.base.join(&path),
        }
    }

    pub fn symlink_metadata(&self, path: &Path) -> std::io::Result<Metadata> {
        self.recall(
            self.real(path),
            |s| &mut s.metadata,
            |p| std::fs::symlink_metadata(p),
        )
    }

    /// Whether `path` resolves, links followed, to a regular file under the root.
    pub fn resolves_to_file(&self, path: &Path) -> bool {
        self.resolve(path)
            .is_ok_and(|r| self.real(&r.path).is_file())
    }

    /// Opens the regular file at `path` for reading its content, `path` being resolved
    /// already (no component a symlink, as in a [`Resolution`] or a plan's sources). Sources
    /// belong to a runtime's author, who can swap names while root reads them: a FIFO would
    /// block the open or the read forever, a device would be read, a symlink would lead
    /// anywhere. So the open does not block (`O_NONBLOCK`), crosses no symlink on the way
    /// (`RESOLVE_NO_SYMLINKS` from the root's fd, which also keeps it beneath the root), and
    /// anything but a regular file is an error.
    pub fn open_regular(&self, path: &Path) -> Result<File> {
        let real = self.real(path);
        let base = rustix::fs::open(
            &self.base,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(&self.base, e.into()))?;
        let host = self.host_path(path);
        let rel = runseal_spec::paths::below_root(&host);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = beneath::open(&base, Path::new(rel), flags, Links::Refuse)
            .map_err(|e| Error::io(&real, e.into()))?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| Error::io(&real, e))?;
        if meta.is_dir() {
            return Err(Error::io(&real, std::io::ErrorKind::IsADirectory.into()));
        }
        if !meta.is_file() {
            return Err(Error::SpecialFile {
                path: real,
                kind: special_kind(&meta),
            });
        }
        Ok(file)
    }

    pub fn read_link(&self, path: &Path) -> Result<PathBuf> {
        let real = self.real(path);
        self.recall(real.clone(), |s| &mut s.links, |p| std::fs::read_link(p))
            .map_err(|e| Error::io(real, e))
    }

    /// Resolves every component of `path`, following symlinks, including the last one.
    pub fn resolve(&self, path: &Path) -> Result<Resolution> {
        self.resolve_knowing(path, &|_| false)
    }

    /// [`resolve`](Self::resolve), trusting `known_dir` for components already known to be
    /// real directories (not symlinks) instead of asking the filesystem again.
    pub fn resolve_knowing(
        &self,
        path: &Path,
        known_dir: &dyn Fn(&Path) -> bool,
    ) -> Result<Resolution> {
        let mut pending: VecDeque<OsString> = components(path).collect();
        let mut current = PathBuf::from("/");
        let mut links = Vec::new();
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                current.pop();
                continue;
            }
            let next = current.join(&name);
            if !pending.is_empty() && known_dir(&next) {
                current = next;
                continue;
            }
            let meta = match self.symlink_metadata(&next) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::Missing {
                        path: next,
                        needed_as: format!("a component of {}", path.display()),
                    })
                }
                Err(e) if e.raw_os_error() == Some(20) => {
                    return Err(Error::NotADirectory { path: next })
                }
                Err(e) => return Err(Error::io(self.real(&next), e)),
            };
            if meta.file_type().is_symlink() {
                if links.len() >= MAX_SYMLINKS {
                    return Err(Error::SymlinkLoop {
                        path: path.to_path_buf(),
                        limit: MAX_SYMLINKS,
                    });
                }
                let target = self.read_link(&next)?;
                if target.is_absolute() {
                    current = PathBuf::from("/");
                }
                for c in components(&target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(c);
                }
                links.push(Link { path: next, target });
            } else {
                if !pending.is_empty() && !meta.is_dir() {
                    return Err(Error::NotADirectory { path: next });
                }
                current = next;
            }
        }
        Ok(Resolution {
            path: current,
            links,
        })
    }
}

/// Why a user other than root could change the dir of `uid` and `mode`, if one could: its
/// owner is not root, or its group or others may write it. With `sticky_ok`, the sticky bit
/// (`/var/tmp`) makes group and other writes harmless: there only an entry's owner can rename
/// or remove it, and what others add is theirs, which this rule refuses in turn.
pub fn untrusted_dir(uid: u32, mode: u32, sticky_ok: bool) -> Option<String> {
    let mode = mode & 0o7777;
    if uid != 0 {
        Some(format!("is owned by uid {uid}, not root"))
    } else if mode & 0o022 != 0 && !(sticky_ok && mode & 0o1000 != 0) {
        Some(format!(
            "is writable by its group or others (mode {mode:o})"
        ))
    } else {
        None
    }
}

/// What a non-regular, non-directory, non-symlink file is, for errors.
pub fn special_kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// The names and `..`s of a path; `.` and the root drop out.
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        std::fs::create_dir_all(b.join("usr/lib/jvm/jdk/bin")).unwrap();
        std::fs::create_dir_all(b.join("etc/alternatives")).unwrap();
        std::fs::create_dir_all(b.join("usr/bin")).unwrap();
        std::fs::write(b.join("usr/lib/jvm/jdk/bin/java"), "x").unwrap();
        symlink("/usr/lib/jvm/jdk/bin/java", b.join("etc/alternatives/java")).unwrap();
        symlink("/etc/alternatives/java", b.join("usr/bin/java")).unwrap();
        symlink("usr/lib", b.join("lib")).unwrap();
        symlink("loop2", b.join("loop1")).unwrap();
        symlink("loop1", b.join("loop2")).unwrap();
        symlink("../../../../etc", b.join("usr/lib/up")).unwrap();
        t
    }

    #[test]
    fn follows_absolute_chains_inside_the_root() {
        let t = tree();
        let r = Root::new(t.path())
            .resolve(Path::new("/usr/bin/java"))
            .unwrap();
        assert_eq!(r.path, Path::new("/usr/lib/jvm/jdk/bin/java"));
        let via: Vec<_> = r.links.iter().map(|l| l.path.clone()).collect();
        assert_eq!(
            via,
            [
                PathBuf::from("/usr/bin/java"),
                PathBuf::from("/etc/alternatives/java")
            ]
        );
    }

    #[test]
    fn resolves_links_in_the_middle_of_a_path() {
        let t = tree();
        let r = Root::new(t.path())
            .resolve(Path::new("/lib/jvm/jdk/bin/java"))
            .unwrap();
        assert_eq!(r.path, Path::new("/usr/lib/jvm/jdk/bin/java"));
        assert_eq!(r.links[0].path, Path::new("/lib"));
    }

    #[test]
    fn loops_are_bounded_and_climbing_stops_at_the_root() {
        let t = tree();
        let root = Root::new(t.path());
        assert!(matches!(
            root.resolve(Path::new("/loop1")),
            Err(Error::SymlinkLoop { .. })
        ));
        let up = root.resolve(Path::new("/usr/lib/up")).unwrap();
        assert_eq!(
            up.path,
            Path::new("/etc"),
            "`..` at the root stays at the root"
        );
        assert!(matches!(
            root.resolve(Path::new("/nope/x")),
            Err(Error::Missing { .. })
        ));
        assert!(matches!(
            root.resolve(Path::new("/usr/lib/jvm/jdk/bin/java/x")),
            Err(Error::NotADirectory { .. })
        ));
    }
}
