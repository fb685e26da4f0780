//! Whether anyone but root can change a runtime dir, or the path to it, while a seal runs as
//! root in it. Such a user can swap names under every check the seal makes, so by default
//! the seal refuses; the writes themselves never follow links either way (see `dirfd`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use runseal_closure::untrusted_dir;

use crate::error::{Error, Result};

/// Why a non-root user could change `dir` or one of its parents up to `/`, if one could:
/// a dir not owned by root, or writable by its group or others. A sticky parent (`/var/tmp`)
/// is fine, because there only an entry's owner can rename or remove it. The closure
/// applies the same rule to the dirs it reads through.
pub fn untrusted_because(dir: &Path) -> Result<Option<String>> {
    let real = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    for (depth, path) in real.ancestors().enumerate() {
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        // The runtime dir itself takes the seal's writes: sticky is not enough there.
        if let Some(problem) = untrusted_dir(meta.uid(), meta.mode(), depth > 0) {
            let which = if depth == 0 { "it" } else { "its parent" };
            return Ok(Some(format!("{which} {} {problem}", path.display())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn writable_dirs_and_parents_are_named_sticky_parents_are_not() {
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("RUNSEAL_ALLOW_SKIP").is_ok_and(|v| v == "1"),
                "needs root (the dirs must be root's); RUNSEAL_ALLOW_SKIP=1 skips it"
            );
            return;
        }
        let t = tempfile::tempdir_in("/var/tmp").unwrap();
        let runtime = t.path().join("runtimes/app");
        std::fs::create_dir_all(&runtime).unwrap();
        chmod(t.path(), 0o755);
        chmod(&t.path().join("runtimes"), 0o755);
        chmod(&runtime, 0o755);
        assert_eq!(untrusted_because(&runtime).unwrap(), None);

        chmod(&runtime, 0o1777);
        let why = untrusted_because(&runtime).unwrap().unwrap();
        assert!(
            why.starts_with("it ") && why.ends_with("(mode 1777)"),
            "{why}"
        );
        chmod(&runtime, 0o755);

        chmod(&t.path().join("runtimes"), 0o775);
        let why = untrusted_because(&runtime).unwrap().unwrap();
        assert!(
            why.contains("its parent") && why.contains("runtimes"),
            "{why}"
        );
        chmod(&t.path().join("runtimes"), 0o755);

        std::os::unix::fs::chown(&runtime, Some(65534), None).unwrap();
        let why = untrusted_because(&runtime).unwrap().unwrap();
        assert!(why.contains("owned by uid 65534"), "{why}");
    }
}
