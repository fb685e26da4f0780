//! The dynamic loader's library search, replayed on a [`Root`] without running anything:
//! `DT_RPATH` (when there is no `DT_RUNPATH`), `LD_LIBRARY_PATH`, `DT_RUNPATH`, the
//! `ld.so.cache`, then the default dirs, each candidate checked for the right class and machine.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::elf::{self, ElfInfo, Target};
use crate::ldcache::LdCache;
use crate::root::Root;

/// Which step of the search found a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A path in the name, `DT_RPATH`, `LD_LIBRARY_PATH` or `DT_RUNPATH`.
    SearchPath,
    /// The `ld.so.cache`; a job root has none, so such a library needs another way in.
    Cache,
    DefaultDir,
}

/// Where the loader looks for `DT_NEEDED` names in one filesystem.
#[derive(Debug, Clone)]
pub struct LibrarySearch {
    pub root: Root,
    pub cache: Option<LdCache>,
    pub ld_library_path: Vec<String>,
}

impl LibrarySearch {
    /// The library `name` that `requester` (at `requester_path`) would load, as a path under
    /// the root (before resolving symlinks: the loader opens that name).
    pub fn find(&self, name: &str, requester_path: &Path, requester: &ElfInfo) -> Option<PathBuf> {
        self.find_how(name, requester_path, requester)
            .map(|(path, _)| path)
    }

    /// Like [`find`](Self::find), also saying which step found it.
    pub fn find_how(
        &self,
        name: &str,
        requester_path: &Path,
        requester: &ElfInfo,
    ) -> Option<(PathBuf, Via)> {
        if name.contains('/') {
            let path = PathBuf::from(name);
            let found = path.is_absolute() && self.accepts(&path, requester.target);
            return found.then_some((path, Via::SearchPath));
        }
        let origin = requester_path.parent().unwrap_or(Path::new("/"));
        let expand = |dir: &String| expand_tokens(dir, origin, requester.target);
        let rpath = if requester.runpath.is_empty() {
            requester.rpath.as_slice()
        } else {
            &[]
        };
        let search_dirs = rpath
            .iter()
            .chain(&self.ld_library_path)
            .chain(&requester.runpath)
            .map(expand);
        for dir in search_dirs {
            let candidate = Path::new(&dir).join(name);
            if candidate.is_absolute() && self.accepts(&candidate, requester.target) {
                return Some((candidate, Via::SearchPath));
            }
        }
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache
                .lookup(name)
                .map(PathBuf::from)
                .find(|p| self.accepts(p, requester.target))
            {
                let in_default_dir = hit.parent().is_some_and(|d| {
                    default_dirs(requester.target)
                        .iter()
                        .any(|x| Path::new(x) == d)
                });
                return Some((
                    hit,
                    if in_default_dir {
                        Via::DefaultDir
                    } else {
                        Via::Cache
                    },
                ));
            }
        }
        default_dirs(requester.target)
            .into_iter()
            .map(|dir| Path::new(&dir).join(name))
            .find(|p| self.accepts(p, requester.target))
            .map(|p| (p, Via::DefaultDir))
    }

    /// Whether `path` resolves to an ELF object of `target`'s class and machine.
    fn accepts(&self, path: &Path, target: Target) -> bool {
        let Ok(resolved) = self.root.resolve(path) else {
            return false;
        };
        let mut header = [0u8; 20];
        // A candidate can be anything its dir's owner put there, a FIFO included: opened
        // the way every source is, it is skipped, not waited on.
        self.root
            .open_regular(&resolved.path)
            .is_ok_and(|mut f| f.read_exact(&mut header).is_ok())
            && elf::target_of(&header) == Some(target)
    }
}

/// The loader's built-in dirs for a target, as Debian's glibc has them.
pub fn default_dirs(target: Target) -> Vec<String> {
    let mut dirs = Vec::new();
    if let Some(triplet) = elf::multiarch_triplet(target) {
        dirs.push(format!("/lib/{triplet}"));
        dirs.push(format!("/usr/lib/{triplet}"));
    }
    dirs.push("/lib".into());
    dirs.push("/usr/lib".into());
    dirs
}

/// Expands `$ORIGIN`, `$LIB` and `$PLATFORM` (also in `${...}` form).
fn expand_tokens(dir: &str, origin: &Path, target: Target) -> String {
    let lib = elf::multiarch_triplet(target)
        .map(|t| format!("lib/{t}"))
        .unwrap_or_else(|| "lib".into());
    let origin = origin.to_string_lossy();
    let mut out = dir.to_string();
    for (token, value) in [
        ("ORIGIN", origin.as_ref()),
        ("LIB", lib.as_str()),
        ("PLATFORM", elf::platform(target)),
    ] {
        out = out
            .replace(&format!("${{{token}}}"), value)
            .replace(&format!("${token}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_tokens() {
        let t = Target {
            is_64: true,
            machine: object::elf::EM_X86_64.0,
        };
        assert_eq!(
            expand_tokens("$ORIGIN/../lib:${PLATFORM}/$LIB", Path::new("/jdk/bin"), t),
            "/jdk/bin/../lib:x86_64/lib/x86_64-linux-gnu"
        );
    }

    #[test]
    fn finds_libc_of_a_host_binary_both_with_and_without_the_cache() {
        let bytes = std::fs::read("/bin/ls").unwrap();
        let info = elf::parse(&bytes).unwrap();
        let cache = LdCache::parse(&std::fs::read("/etc/ld.so.cache").unwrap()).unwrap();
        for cache in [Some(cache), None] {
            let search = LibrarySearch {
                root: Root::host(),
                cache,
                ld_library_path: vec![],
            };
            let libc = search
                .find("libc.so.6", Path::new("/bin/ls"), &info)
                .unwrap();
            assert!(libc.ends_with("libc.so.6"), "{libc:?}");
            assert!(search
                .find("libnope.so.9", Path::new("/bin/ls"), &info)
                .is_none());
        }
    }
}
