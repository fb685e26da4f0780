//! Rule 7 of the closure: where it never goes. A seal runs as root, but every job reads the
//! sealed copy, so a source is refused if an unprivileged host user could not read it (host
//! state, closed files and dirs) or could change what root reads through it (a dir someone
//! but root can rename entries in), unless the operator allows that path. A refusal names
//! the chain of reasons that reached the path, so the operator can see what to allow or fix.

use std::path::{Path, PathBuf};

use runseal_spec::paths::ancestors;

use super::{entry_of, Builder, Entry, EntryKind, Reason};
use crate::error::{Error, Result};
use crate::root::untrusted_dir;

/// Where a host keeps per-process, per-device, per-boot and per-user state: nothing a runtime
/// needs, and what a job must never read (`/proc/self/environ`, `/root/.ssh`, ...).
pub const REFUSED_PREFIXES: [&str; 6] = ["/proc", "/sys", "/dev", "/run", "/root", "/home"];

impl Builder {
    /// Refuses the source of `entry` if no job may see it, before anything reads its content.
    pub(super) fn admit(&mut self, entry: &Entry, why: &Reason) -> Result<()> {
        let refused = match self.refusal(entry) {
            Some(refusal) => Some((entry.source.clone(), refusal)),
            None => self.way_refusal(&entry.source)?,
        };
        if let Some((path, refusal)) = refused {
            return Err(refusal.error(path, self.trace(why)));
        }
        Ok(())
    }

    /// Why the source of `entry` must not be sealed, if so.
    ///
    /// First, what an unprivileged user of the host may see, unless the operator allowed
    /// more: a file readable by others, a dir passed through searchable by others, a dir
    /// copied whole also listable. Every job would read the sealed copy.
    ///
    /// Then, for a dir, whether only root can change it, unless the operator allowed
    /// untrusted dirs: whoever can rename its entries can swap one for a symlink between
    /// the checks and the reads of a seal running as root (walkdir opens subdirectories by
    /// path), and so get it to read through to anything, `/root` included.
    pub(super) fn refusal(&self, entry: &Entry) -> Option<Refusal> {
        let source = entry.source.as_path();
        if source.as_os_str().is_empty() {
            return None;
        }
        self.hidden(entry).map(Refusal::Hidden).or_else(|| {
            let check = entry.kind == EntryKind::Dir && !self.allow_untrusted;
            check
                .then(|| untrusted_dir(entry.uid, entry.mode, true))
                .flatten()
                .map(Refusal::Untrusted)
        })
    }

    /// Why an unprivileged host user may not see the source of `entry`, unless allowed.
    fn hidden(&self, entry: &Entry) -> Option<String> {
        let source = entry.source.as_path();
        let is_dir = entry.kind == EntryKind::Dir;
        let allowed = self
            .allow
            .iter()
            .any(|a| source.starts_with(a) || (!entry.whole && is_dir && a.starts_with(source)));
        if allowed {
            return None;
        }
        if let Some(prefix) = REFUSED_PREFIXES.iter().find(|p| source.starts_with(p)) {
            return Some(format!(
                "is under {prefix}, host state (processes, devices, users' homes) that a seal never copies"
            ));
        }
        let mode = entry.mode;
        if entry.kind == EntryKind::File && mode & 0o004 == 0 {
            Some(format!("is not world-readable (mode {mode:o})"))
        } else if is_dir && entry.whole && mode & 0o005 != 0o005 {
            Some(format!(
                "is a directory that not everyone may list and enter (mode {mode:o}), and all of it would be copied"
            ))
        } else if is_dir && mode & 0o001 == 0 {
            Some(format!(
                "is a directory that not everyone may pass through (mode {mode:o})"
            ))
        } else {
            None
        }
    }

    /// The first host dir on the way to `source` that a job may not pass through, and why,
    /// if there is one. These are the real dirs above the source, whatever the plan holds at
    /// those paths: a remapped mount's target holds the author's tree in the plan, not the
    /// host's dir, and a remapped source's own parents are nowhere in the plan.
    pub(super) fn way_refusal(&mut self, source: &Path) -> Result<Option<(PathBuf, Refusal)>> {
        // A dir joins `passable` only after every dir above it, so its children need no more.
        if source.parent().is_none_or(|p| self.passable.contains(p)) {
            return Ok(None);
        }
        for dir in ancestors(source) {
            if self.passable.contains(&dir) {
                continue;
            }
            let meta = self.lstat(&dir)?;
            // The source was resolved through here: anything but a dir now was swapped in.
            if !meta.is_dir() {
                return Err(Error::NotADirectory { path: dir });
            }
            if let Some(problem) = self.refusal(&entry_of(&dir, &meta, EntryKind::Dir)) {
                return Ok(Some((dir, problem)));
            }
            self.passable.insert(dir);
        }
        Ok(None)
    }

    /// How `why` leads back to a mount or a profile, through the inclusions so far:
    /// `ELF interpreter of /opt/app/bin/x <- mounts[0] (/opt/app)`.
    fn trace(&self, why: &Reason) -> String {
        let mut steps = vec![why.to_string()];
        let mut reason = why;
        while let Some(from) = reason.from() {
            let covering = self.plan.inclusions.iter().filter(|i| {
                from.starts_with(&i.path)
                    || matches!(&i.reason, Reason::Mount { source, .. } if from.starts_with(source))
            });
            let Some(inclusion) = covering.max_by_key(|i| i.path.as_os_str().len()) else {
                break;
            };
            let step = inclusion.reason.to_string();
            // A cycle (a link into a tree that holds it) adds nothing after its first turn.
            if steps.contains(&step) || steps.len() > 16 {
                break;
            }
            steps.push(step);
            reason = &inclusion.reason;
        }
        steps.join(" <- ")
    }
}

/// Why a source is refused.
pub(super) enum Refusal {
    /// Every job would read what an unprivileged host user may not.
    Hidden(String),
    /// A user other than root can change the dir, so what the seal reads through it.
    Untrusted(String),
}

impl Refusal {
    fn error(self, path: PathBuf, trace: String) -> Error {
        match self {
            Refusal::Hidden(problem) => Error::Refused {
                path,
                problem,
                trace,
            },
            Refusal::Untrusted(problem) => Error::Untrusted {
                path,
                problem,
                trace,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::tests_support::*;
    use crate::root::Root;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    #[test]
    fn a_file_not_everyone_may_read_is_refused_with_the_chain_that_reached_it() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        std::fs::create_dir_all(b.join("opt/app")).unwrap();
        std::fs::create_dir_all(b.join("etc")).unwrap();
        std::fs::write(b.join("etc/secret"), "x").unwrap();
        chmod(&b.join("etc/secret"), 0o640);
        symlink("/etc/secret", b.join("opt/app/key")).unwrap();
        let root = Root::new(b);
        let mounts = [("/opt/app", "/opt/app")];
        let err = plan_with(&root, &mounts, &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            "/etc/secret: is not world-readable (mode 640); a sealed copy would be readable by \
             every job (reached as target of symlink /opt/app/key <- mounts[0] (/opt/app)); \
             `--allow-path /etc/secret` seals it anyway"
        );
        let plan = plan_with(&root, &mounts, &[PathBuf::from("/etc/secret")]).unwrap();
        assert!(plan.entries.contains_key(Path::new("/etc/secret")));
    }

    #[test]
    fn host_state_prefixes_are_refused_and_an_allowed_path_opens_the_dirs_on_its_way() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        std::fs::create_dir_all(b.join("root/app/bin")).unwrap();
        std::fs::write(b.join("root/app/bin/tool"), "x").unwrap();
        chmod(&b.join("root"), 0o700);
        let root = Root::new(b);
        let mounts = [("/root/app", "/root/app")];
        let err = plan_with(&root, &mounts, &[]).unwrap_err().to_string();
        assert!(err.starts_with("/root: is under /root"), "{err}");
        let plan = plan_with(&root, &mounts, &[PathBuf::from("/root/app")]).unwrap();
        assert!(plan.entries.contains_key(Path::new("/root/app/bin/tool")));

        // The dirs on the way are passed through, not copied whole: a mount of /root itself
        // is still refused.
        let err = plan_with(&root, &[("/root", "/root")], &[PathBuf::from("/root/app")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/root: is under /root"), "{err}");
    }

    #[test]
    fn a_dir_copied_whole_must_be_listable_a_dir_passed_through_only_searchable() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        std::fs::create_dir_all(b.join("opt/app/lib")).unwrap();
        std::fs::write(b.join("opt/app/lib/libx.so"), "x").unwrap();
        chmod(&b.join("opt/app/lib"), 0o711);
        let root = Root::new(b);
        let err = plan_with(&root, &[("/opt/app", "/opt/app")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "/opt/app/lib: is a directory that not everyone may list and enter (mode 711)"
            ),
            "{err}"
        );
        plan_with(
            &root,
            &[("/opt/app/lib/libx.so", "/opt/app/lib/libx.so")],
            &[],
        )
        .unwrap();
        chmod(&b.join("opt/app/lib"), 0o700);
        let err = plan_with(
            &root,
            &[("/opt/app/lib/libx.so", "/opt/app/lib/libx.so")],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("not everyone may pass through (mode 700)"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;
    use crate::plan::tests_support::*;
    use crate::root::Root;
    use std::os::unix::fs::chown;

    fn untrusted(root: &Root, mounts: &[(&str, &str)]) -> String {
        let err = plan_trusting(root, mounts, &[], false).unwrap_err();
        assert!(matches!(err, Error::Untrusted { .. }), "{err}");
        plan_trusting(root, mounts, &[], true).unwrap();
        err.to_string()
    }

    /// Whoever can rename entries of a dir the closure reads through can swap one for a
    /// symlink while root reads: such a dir, in a tree or on the way to one, is refused.
    #[test]
    fn a_dir_someone_but_root_can_change_is_refused_unless_allowed() {
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("RUNSEAL_ALLOW_SKIP").is_ok_and(|v| v == "1"),
                "needs root (the fixture's dirs must be root's); RUNSEAL_ALLOW_SKIP=1 skips it"
            );
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        std::fs::create_dir_all(b.join("srv/app/sub")).unwrap();
        std::fs::write(b.join("srv/app/sub/file"), "x").unwrap();
        let root = Root::new(b);
        let mounts = [("/srv/app", "/srv/app")];
        plan_trusting(&root, &mounts, &[], false).unwrap();

        chown(b.join("srv/app/sub"), Some(1000), None).unwrap();
        let err = untrusted(&root, &mounts);
        assert_eq!(
            err,
            "/srv/app/sub: is owned by uid 1000, not root, so its owner could swap what the \
             seal reads through it for a symlink to anything root may read (reached as \
             mounts[0] (/srv/app)); `--allow-untrusted-dir` seals it anyway"
        );
        chown(b.join("srv/app/sub"), Some(0), None).unwrap();

        chmod(&b.join("srv/app/sub"), 0o775);
        let err = untrusted(&root, &mounts);
        assert!(
            err.starts_with("/srv/app/sub: is writable by its group or others (mode 775)"),
            "{err}"
        );
        // Sticky: others may add entries, which are theirs, but not rename root's.
        chmod(&b.join("srv/app/sub"), 0o1777);
        plan_trusting(&root, &mounts, &[], false).unwrap();
        chmod(&b.join("srv/app/sub"), 0o755);

        // On the way to a source, remapped or not, whatever the plan holds there.
        chmod(&b.join("srv"), 0o777);
        for mounts in [
            [("/srv/app", "/opt/app")],
            [("/srv/app/sub/file", "/srv/app/sub/file")],
        ] {
            let err = untrusted(&root, &mounts);
            assert!(
                err.starts_with("/srv: is writable by its group or others (mode 777)"),
                "{err}"
            );
        }
    }
}
