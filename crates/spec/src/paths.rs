//! Lexical checks of the path strings found in runtime.yml.
//!
//! These work on the text only: a path passes when its components are plain names, so the
//! same string means the same place however it is joined.

use std::path::{Path, PathBuf};

/// Why a path string is not a plain normalized path.
pub fn lexical_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("is empty");
    }
    if path.contains('\0') {
        return Some("contains a NUL byte");
    }
    let body = path.strip_prefix('/').unwrap_or(path);
    if body.is_empty() {
        return None;
    }
    for component in body.split('/') {
        match component {
            "" => return Some("has an empty component (`//` or a trailing `/`)"),
            "." => return Some("has a `.` component"),
            ".." => return Some("has a `..` component"),
            _ => {}
        }
    }
    None
}

/// Whether `path` is `dir` or lies beneath it, comparing whole components.
pub fn is_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || (path.starts_with(dir) && path[dir.len()..].starts_with('/')) || dir.is_empty()
}

/// The non-empty entries of a `:`-separated variable (`PATH`, `LD_LIBRARY_PATH`) in an
/// environment, or none when it is unset.
pub fn path_list(environment: &indexmap::IndexMap<String, String>, key: &str) -> Vec<String> {
    environment
        .get(key)
        .map(|v| {
            v.split(':')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `path` (absolute, as a job sees it) relative to the root it lives in: the part to join
/// onto a sealed tree, an overlay or any dir standing for `/`.
pub fn below_root(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// Every proper ancestor of an absolute path, outermost first, without `/`.
pub fn ancestors(path: &Path) -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = path
        .ancestors()
        .skip(1)
        .filter(|a| a.parent().is_some())
        .map(Path::to_path_buf)
        .collect();
    list.reverse();
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_every_non_plain_component() {
        for bad in [
            "", "a//b", "a/", "./a", "a/./b", "a/..", "../a", "/a/../b", "a\0b",
        ] {
            assert!(lexical_problem(bad).is_some(), "{bad:?} accepted");
        }
        for good in ["/", "/a", "a/b", "/usr/lib/jvm", "isolated/usr"] {
            assert_eq!(lexical_problem(good), None, "{good:?} refused");
        }
    }

    #[test]
    fn ancestors_are_outermost_first_without_the_root() {
        assert_eq!(
            ancestors(Path::new("/a/b/c")),
            [PathBuf::from("/a"), PathBuf::from("/a/b")]
        );
        assert!(ancestors(Path::new("/a")).is_empty());
    }

    #[test]
    fn within_compares_components() {
        assert!(is_within("/proc", "/proc"));
        assert!(is_within("/proc/sys", "/proc"));
        assert!(!is_within("/procfs", "/proc"));
        assert!(is_within("/anything", "/"));
    }
}
