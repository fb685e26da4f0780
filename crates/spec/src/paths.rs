//! Lexical checks of the path strings found in runtime.yml.
//!
//! These work on the text only: a path passes when its components are plain names, so the
//! same string means the same place however it is joined.

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
    fn within_compares_components() {
        assert!(is_within("/proc", "/proc"));
        assert!(is_within("/proc/sys", "/proc"));
        assert!(!is_within("/procfs", "/proc"));
        assert!(is_within("/anything", "/"));
    }
}
