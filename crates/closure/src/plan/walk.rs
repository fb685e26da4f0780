//! Rule 1 of the closure: the mount trees, copied as they are, and every symlink chain that
//! leads out of them, followed to its end. Links are kept rather than flattened because the
//! runtime was built against those paths; where a link leads is resolved as the job will see
//! it, remapped mounts in place, because that, not the host's view, is what the job reads.

use std::fs::Metadata;
use std::path::Path;

use runseal_spec::paths::ancestors;

use super::{entry_of, made_up_dir, needed, Builder, EntryKind, PlanMount, Reason};
use crate::error::{Error, Result};
use crate::root::{special_kind, Resolution};

impl Builder {
    /// Each mount's tree, where the job sees it.
    pub(super) fn include_mounts(&mut self, mounts: &[PlanMount]) -> Result<()> {
        for (index, mount) in mounts.iter().enumerate() {
            let reason = Reason::Mount {
                index,
                source: mount.source.display().to_string(),
            };
            if mount.source == mount.target {
                self.include(&mount.source, reason)?;
            } else {
                self.include_remapped(&mount.source, &mount.target, reason)?;
            }
        }
        Ok(())
    }

    /// Adds what `resolution` passed and reached, each from where the job's view has it.
    pub(super) fn add_resolved(&mut self, resolution: &Resolution, why: &Reason) -> Result<()> {
        self.add_chain(resolution, why)?;
        let source = self.view.host_path(&resolution.path);
        self.add_object(&source, &resolution.path, why)
    }

    /// Adds the tree at `source` so that the job sees it at `target`.
    fn include_remapped(&mut self, source: &Path, target: &Path, reason: Reason) -> Result<()> {
        // The source is a host path, whatever another mount puts there in the job's view.
        let resolution = self
            .root
            .resolve(source)
            .map_err(|e| needed(e, source, &reason))?;
        let before = (self.plan.files, self.plan.bytes, self.plan.entries.len());
        // The job sees the host's dir here only if it may see that dir and every dir above
        // it; below a refused one, every dir on the way is made up.
        let mut visible = true;
        for ancestor in ancestors(target) {
            if !self.plan.entries.contains_key(&ancestor) {
                let host = self.view.host_path(&ancestor);
                let entry = match self.view.symlink_metadata(&ancestor) {
                    Ok(meta) if visible && meta.is_dir() => entry_of(&host, &meta, EntryKind::Dir),
                    _ => made_up_dir(),
                };
                visible &= self.refusal(&entry).is_none() && self.way_refusal(&host)?.is_none();
                let entry = if visible { entry } else { made_up_dir() };
                self.insert(ancestor, entry, &reason)?;
            }
        }
        self.add_object(&resolution.path, target, &reason)?;
        self.record(target, reason, before);
        Ok(())
    }

    /// The links passed while resolving, and the directories holding them and the result.
    fn add_chain(&mut self, resolution: &Resolution, why: &Reason) -> Result<()> {
        for link in &resolution.links {
            self.add_parents(&link.path, why)?;
            if !self.plan.entries.contains_key(&link.path) {
                let source = self.view.host_path(&link.path);
                let meta = self.lstat(&source)?;
                let kind = EntryKind::Symlink {
                    target: link.target.clone(),
                    dangling: false,
                };
                self.insert(link.path.clone(), entry_of(&source, &meta, kind), why)?;
            }
        }
        self.add_parents(&resolution.path, why)
    }

    fn add_parents(&mut self, path: &Path, why: &Reason) -> Result<()> {
        for ancestor in ancestors(path) {
            if !self.plan.entries.contains_key(&ancestor) {
                let source = self.view.host_path(&ancestor);
                let meta = self.lstat(&source)?;
                let entry = entry_of(&source, &meta, EntryKind::Dir);
                self.insert(ancestor.clone(), entry, why)?;
            }
        }
        Ok(())
    }

    /// Adds the resolved object at `source` as `job`: a whole tree for a directory.
    fn add_object(&mut self, source: &Path, job: &Path, why: &Reason) -> Result<()> {
        let meta = self.lstat(source)?;
        if !meta.is_dir() {
            return self.add_entry(source, job, &meta, why);
        }
        if self.plan.entries.get(job).is_some_and(|e| e.whole) {
            return Ok(());
        }
        let walker = walkdir::WalkDir::new(self.root.real(source))
            .follow_links(false)
            .sort_by_file_name();
        for item in walker {
            let item = item.map_err(|e| {
                let path = e.path().map(Path::to_path_buf).unwrap_or_default();
                Error::io(path, e.into())
            })?;
            let rel = item
                .path()
                .strip_prefix(self.root.real(source))
                .expect("walkdir yields paths under its root");
            let (source_path, job_path) = if rel.as_os_str().is_empty() {
                (source.to_path_buf(), job.to_path_buf())
            } else {
                (source.join(rel), job.join(rel))
            };
            let meta = item
                .metadata()
                .map_err(|e| Error::io(item.path(), e.into()))?;
            self.add_entry(&source_path, &job_path, &meta, why)?;
        }
        Ok(())
    }

    fn add_entry(
        &mut self,
        source: &Path,
        job: &Path,
        meta: &Metadata,
        why: &Reason,
    ) -> Result<()> {
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_file() {
            EntryKind::File
        } else if file_type.is_symlink() {
            EntryKind::Symlink {
                target: self.root.read_link(source)?,
                dangling: false,
            }
        } else {
            return Err(Error::SpecialFile {
                path: self.root.real(source),
                kind: special_kind(meta),
            });
        };
        let mut entry = entry_of(source, meta, kind);
        entry.whole = true;
        let is_new = self.insert(job.to_path_buf(), entry.clone(), why)?;
        if is_new {
            match entry.kind {
                EntryKind::File => self.to_scan.push(job.to_path_buf()),
                EntryKind::Symlink { .. } => self.links.push(job.to_path_buf()),
                EntryKind::Dir => {}
            }
        }
        Ok(())
    }

    pub(super) fn follow_links(&mut self) -> Result<()> {
        for job in std::mem::take(&mut self.links) {
            let Some(EntryKind::Symlink { target, .. }) =
                self.plan.entries.get(&job).map(|e| e.kind.clone())
            else {
                continue;
            };
            // A relative target is relative to where the job sees the link.
            let wanted = if target.is_absolute() {
                target.clone()
            } else {
                job.parent().unwrap_or(Path::new("/")).join(&target)
            };
            let reason = Reason::SymlinkTarget { link: job.clone() };
            match self.resolve(&wanted) {
                Ok(resolution) => {
                    let before = (self.plan.files, self.plan.bytes, self.plan.entries.len());
                    self.add_resolved(&resolution, &reason)?;
                    self.record(&resolution.path, reason, before);
                }
                Err(Error::Missing { .. } | Error::NotADirectory { .. }) => {
                    self.dangling(&job, &target)
                }
                Err(Error::SymlinkLoop { limit, .. }) => {
                    return Err(Error::SymlinkLoop { path: job, limit })
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::plan_with;
    use crate::plan::Plan;
    use crate::root::Root;
    use std::os::unix::fs::symlink;

    /// A host-like tree: a script run through `env`, an alternatives chain, a link to a
    /// config dir outside the mounted tree, and a dangling link.
    fn fixture() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        for dir in [
            "opt/app/bin",
            "usr/bin",
            "etc/alternatives",
            "etc/app",
            "srv/data/sub",
        ] {
            std::fs::create_dir_all(b.join(dir)).unwrap();
        }
        std::fs::write(b.join("opt/app/bin/run"), "#!/usr/bin/env tool -x\n").unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(b.join("opt/app/bin/run"), executable).unwrap();
        std::fs::write(b.join("usr/bin/env"), "not really env").unwrap();
        std::fs::write(b.join("usr/bin/tool"), "a tool").unwrap();
        std::fs::write(b.join("usr/bin/unrelated"), "left out").unwrap();
        std::fs::write(b.join("etc/app/app.conf"), "x=1").unwrap();
        std::fs::write(b.join("srv/data/sub/file"), "data").unwrap();
        symlink("/opt/app/bin/run", b.join("etc/alternatives/app")).unwrap();
        symlink("/etc/alternatives/app", b.join("usr/bin/app")).unwrap();
        symlink("/etc/app", b.join("opt/app/conf")).unwrap();
        symlink("../nowhere", b.join("opt/app/broken")).unwrap();
        t
    }

    fn plan_of(root: &Root, mounts: &[(&str, &str)]) -> Result<Plan> {
        plan_with(root, mounts, &[])
    }

    #[test]
    fn follows_chains_links_and_interpreters_and_nothing_else() {
        let t = fixture();
        let root = Root::new(t.path());
        let mounts = [
            ("/usr/bin/app", "/usr/bin/app"),
            ("/srv/data", "/data"),
            ("/opt/app", "/opt/app"),
        ];
        let plan = plan_of(&root, &mounts).unwrap();
        let paths: Vec<&str> = plan.entries.keys().map(|p| p.to_str().unwrap()).collect();
        for expected in [
            "/usr/bin/app",
            "/etc/alternatives/app",
            "/opt/app/bin/run",
            "/opt/app/conf",
            "/etc/app/app.conf",
            "/usr/bin/env",
            "/usr/bin/tool",
            "/data/sub/file",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        assert!(!paths.contains(&"/usr/bin/unrelated"));
        assert!(!paths.iter().any(|p| p.starts_with("/srv")), "{paths:?}");
        assert_eq!(plan.top_level(), ["data", "etc", "opt", "usr"]);
        assert_eq!(
            plan.entries[Path::new("/data/sub/file")].source,
            Path::new("/srv/data/sub/file")
        );

        let why = |path: &str| {
            plan.inclusions
                .iter()
                .find(|i| i.path == Path::new(path))
                .map(|i| i.reason.to_string())
                .unwrap_or_else(|| panic!("no inclusion for {path}: {:#?}", plan.inclusions))
        };
        assert_eq!(why("/usr/bin/app"), "mounts[0] (/usr/bin/app)");
        assert_eq!(
            why("/usr/bin/env"),
            "script interpreter of /opt/app/bin/run"
        );
        assert_eq!(
            why("/usr/bin/tool"),
            "script interpreter of /opt/app/bin/run"
        );
        assert_eq!(why("/etc/app"), "target of symlink /opt/app/conf");
        assert!(matches!(
            plan.entries[Path::new("/opt/app/broken")].kind,
            EntryKind::Symlink { dangling: true, .. }
        ));
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("/opt/app/broken: dangling")));
    }

    #[test]
    fn special_files_missing_sources_and_loops_are_errors() {
        let t = fixture();
        let root = Root::new(t.path());
        let status = std::process::Command::new("mkfifo")
            .arg(t.path().join("opt/app/pipe"))
            .status()
            .unwrap();
        assert!(status.success());
        let err = plan_of(&root, &[("/opt/app", "/opt/app")])
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("opt/app/pipe: is a fifo; a sealed runtime holds only files, directories and symlinks"), "{err}");

        let err = plan_of(&root, &[("/opt/none", "/opt/none")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/opt/none: does not exist (needed as mounts[0] (/opt/none))"
        );

        std::fs::remove_file(t.path().join("opt/app/pipe")).unwrap();
        symlink("loop-b", t.path().join("opt/app/loop-a")).unwrap();
        symlink("loop-a", t.path().join("opt/app/loop-b")).unwrap();
        let err = plan_of(&root, &[("/opt/app", "/opt/app")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("symlink loop"), "{err}");
    }
}

#[cfg(test)]
mod remap_tests {
    use super::*;
    use crate::plan::tests_support::*;
    use crate::root::Root;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::PathBuf;

    /// A host with a dir only root may enter, `/srv/hidden`, holding a world-readable key,
    /// and an author's tree `/srv/author/src` holding a link to that key.
    fn host() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        for dir in ["srv/hidden/pub", "srv/author/src"] {
            std::fs::create_dir_all(b.join(dir)).unwrap();
        }
        std::fs::write(b.join("srv/hidden/key"), "host key").unwrap();
        std::fs::write(b.join("srv/hidden/pub/file"), "behind a closed door").unwrap();
        symlink("/srv/hidden/key", b.join("srv/author/src/lnk")).unwrap();
        std::fs::set_permissions(b.join("srv/hidden"), PermissionsExt::from_mode(0o700)).unwrap();
        t
    }

    /// Mounted on `/srv/hidden`, the author's tree is what the job sees there: its link
    /// leads into that tree, never to the host's file it hides.
    #[test]
    fn a_path_under_a_remapped_target_is_the_mount_source_not_the_host() {
        let t = host();
        let root = Root::new(t.path());
        let mounts = [("/srv/author/src", "/srv/hidden")];
        let plan = plan_with(&root, &mounts, &[]).unwrap();
        assert!(
            plan.entries
                .values()
                .all(|e| !e.source.starts_with("/srv/hidden")),
            "{:#?}",
            plan.entries
        );
        assert_eq!(
            plan.entries[Path::new("/srv/hidden/lnk")].kind,
            EntryKind::Symlink {
                target: "/srv/hidden/key".into(),
                dangling: true
            }
        );

        // Where the author's tree has the name, the link resolves to the author's file,
        // as it will in the job; relative links are relative to where the job sees them.
        std::fs::write(t.path().join("srv/author/src/key"), "author's key").unwrap();
        symlink("../hidden/key", t.path().join("srv/author/src/rel")).unwrap();
        let plan = plan_with(&root, &mounts, &[]).unwrap();
        assert_eq!(
            plan.entries[Path::new("/srv/hidden/key")].source,
            Path::new("/srv/author/src/key")
        );
        assert_eq!(
            plan.entries[Path::new("/srv/hidden/rel")].kind,
            EntryKind::Symlink {
                target: "../hidden/key".into(),
                dangling: false
            }
        );
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    }

    /// A remapped source's own parents are nowhere in the plan: they are checked on the host.
    #[test]
    fn a_source_behind_a_dir_not_everyone_may_enter_is_refused_even_remapped() {
        let t = host();
        let root = Root::new(t.path());
        for mounts in [
            [("/srv/hidden/pub", "/opt/pub")],
            [("/srv/hidden/pub/file", "/opt/file")],
        ] {
            let err = plan_with(&root, &mounts, &[]).unwrap_err().to_string();
            assert!(
                err.starts_with(
                    "/srv/hidden: is a directory that not everyone may pass through (mode 700)"
                ),
                "{err}"
            );
        }
        let allowed = plan_with(
            &root,
            &[("/srv/hidden/pub", "/opt/pub")],
            &[PathBuf::from("/srv/hidden/pub")],
        )
        .unwrap();
        assert!(allowed.entries.contains_key(Path::new("/opt/pub/file")));
    }
}
