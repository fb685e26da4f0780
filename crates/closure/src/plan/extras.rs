//! Rules 3 and 5 of the closure: what no ELF header or `#!` line names, so the files alone
//! cannot tell. Profiles, data rather than code, name what a language loads by name at run
//! time (CA bundles, NSS and gconv modules, a stdlib found from where its interpreter is) and
//! the links a userland expects; and since the job root has no ld.so.cache, a library the
//! host found only through its cache gets a link where the loader's default search finds it.
//! Anchored paths and links come after the other rules because they depend on what those
//! found. Rule 5's ban on devices, fifos and sockets stays where the walk meets one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::refusal::Refusal;
use super::{
    command_line, entry_of, made_up_dir, Builder, Entry, EntryKind, Inclusion, LearnedSet, Plan,
    Reason,
};
use crate::elf::Target;
use crate::error::{Error, Result};
use crate::loader::default_dirs;
use crate::profile::{Profile, ProfileLinks};

impl Builder {
    /// The profiles' paths that hold no anchor, so need nothing found first.
    pub(super) fn include_profile_paths(&mut self, profiles: &[Profile]) -> Result<()> {
        for profile in profiles {
            for item in profile
                .include
                .iter()
                .filter(|i| !Profile::is_templated(&i.path))
            {
                self.include_profile_path(&profile.name, &item.path, &item.why, item.optional)?;
            }
        }
        Ok(())
    }

    /// Anchored paths ({prefix}/lib/python{version}) follow the interpreters found so far;
    /// what they bring in can hold further interpreters, so this repeats until nothing new.
    pub(super) fn include_anchored(&mut self, profiles: &[Profile]) -> Result<()> {
        let mut anchored: HashSet<PathBuf> = HashSet::new();
        loop {
            let mut found = Vec::new();
            for profile in profiles.iter().filter(|p| !p.anchors.is_empty()) {
                // An anchor is a program: a man page named `python3.12.1` is not one.
                for path in &self.programs {
                    if !anchored.contains(path) {
                        if let Some(anchor) = profile.anchor_of(path) {
                            found.push((profile, anchor));
                        }
                    }
                }
            }
            if found.is_empty() {
                return Ok(());
            }
            for (profile, anchor) in found {
                anchored.insert(anchor.path.clone());
                for item in profile
                    .include
                    .iter()
                    .filter(|i| Profile::is_templated(&i.path))
                {
                    let (path, why) = (anchor.fill(&item.path), anchor.fill(&item.why));
                    self.include_profile_path(&profile.name, &path, &why, item.optional)?;
                }
            }
            self.settle()?;
        }
    }

    /// What learn commands opened that no other rule brought in, each path under the same
    /// refusals as any other source; a refused one is dropped with a note, never copied.
    /// A command whose paths were all in the closure already still gets one inclusion (of
    /// such a path, bringing nothing), so the manifest remembers every learn command.
    pub(super) fn include_learned(&mut self, learned: &[LearnedSet]) -> Result<()> {
        for set in learned {
            let reason = Reason::Learned {
                command: set.command.clone(),
            };
            let mut brought = false;
            let mut present = None;
            for path in &set.paths {
                if self.plan.entries.contains_key(path) {
                    present.get_or_insert(path);
                    continue;
                }
                if let Some(problem) = self.learned_refusal(path)? {
                    self.plan.notes.push(format!(
                        "{}: not learned from `{}`: {problem}",
                        path.display(),
                        command_line(&set.command)
                    ));
                    continue;
                }
                let before = self.plan.inclusions.len();
                self.include(path, reason.clone())?;
                brought |= self.plan.inclusions.len() != before;
            }
            if let (false, Some(path)) = (brought, present) {
                self.plan.inclusions.push(Inclusion {
                    path: path.clone(),
                    reason,
                    files: 0,
                    bytes: 0,
                });
            }
        }
        Ok(())
    }

    /// Why the learned `path` stays out, if it does: it no longer resolves, is not a regular
    /// file, or it, a link on the way to it or a dir above either is refused (rule 7).
    fn learned_refusal(&mut self, path: &Path) -> Result<Option<String>> {
        let text = |refusal: Refusal| match refusal {
            Refusal::Hidden(problem) | Refusal::Untrusted(problem) => problem,
        };
        let resolution = match self.resolve(path) {
            Ok(resolution) => resolution,
            Err(e) => return Ok(Some(format!("cannot be resolved now ({e})"))),
        };
        let mut sources: Vec<(PathBuf, EntryKind)> = resolution
            .links
            .iter()
            .map(|link| {
                let kind = EntryKind::Symlink {
                    target: link.target.clone(),
                    dangling: false,
                };
                (self.view.host_path(&link.path), kind)
            })
            .collect();
        sources.push((self.view.host_path(&resolution.path), EntryKind::File));
        for (source, kind) in sources {
            let meta = self.lstat(&source)?;
            if kind == EntryKind::File && !meta.is_file() {
                return Ok(Some("is not a regular file".into()));
            }
            if let Some(refusal) = self.refusal(&entry_of(&source, &meta, kind)) {
                return Ok(Some(text(refusal)));
            }
            if let Some((dir, refusal)) = self.way_refusal(&source)? {
                return Ok(Some(format!("{}: {}", dir.display(), text(refusal))));
            }
        }
        Ok(None)
    }

    fn include_profile_path(
        &mut self,
        profile: &str,
        path: &str,
        why: &str,
        optional: bool,
    ) -> Result<()> {
        let path = Path::new(path);
        if optional && self.resolve(path).is_err() {
            return Ok(());
        }
        let reason = Reason::Profile {
            profile: profile.into(),
            why: why.into(),
        };
        self.include(path, reason)
    }

    /// The links the tree needs once it is complete: they go into dirs it must already hold,
    /// and yield to whatever the runtime's own files put at their paths.
    pub(super) fn finish(self, profiles: &[Profile]) -> Result<Plan> {
        let mut plan = self.plan;
        for (name, path, target) in self.cache_only {
            link_into_default_dir(&mut plan, &name, &path, target);
        }
        for profile in profiles {
            for links in &profile.links {
                add_links(&mut plan, &profile.name, links)?;
            }
        }
        Ok(plan)
    }
}

/// The job root has no ld.so.cache (the host's would name host paths), so a library the
/// host finds only through its cache gets a link in the first default dir the tree holds as
/// a real directory, where the loader's own search finds it.
fn link_into_default_dir(plan: &mut Plan, name: &str, path: &Path, target: Target) {
    let Some(dir) = default_dirs(target)
        .into_iter()
        .map(PathBuf::from)
        .find(|d| {
            plan.entries
                .get(d)
                .is_some_and(|e| e.kind == EntryKind::Dir)
        })
    else {
        plan.notes.push(format!(
            "{name}: no default library dir in the tree to link {} from",
            path.display()
        ));
        return;
    };
    let link = dir.join(name);
    if plan.entries.contains_key(&link) {
        return;
    }
    plan.entries
        .insert(link.clone(), made_up_link(path.to_path_buf()));
    plan.inclusions.push(Inclusion {
        path: link,
        reason: Reason::CacheOnly {
            name: name.into(),
            dir: path.parent().unwrap_or(Path::new("/")).to_path_buf(),
        },
        files: 0,
        bytes: 0,
    });
}

/// Adds a profile's links where the tree has nothing yet; the runtime's own files win.
fn add_links(plan: &mut Plan, profile: &str, links: &ProfileLinks) -> Result<()> {
    let dir = Path::new(&links.dir);
    if !plan.entries.contains_key(dir) {
        return Err(Error::Profile {
            name: profile.into(),
            message: format!(
                "links go into {}, which the sealed tree does not hold",
                dir.display()
            ),
        });
    }
    let mut added = 0;
    for name in &links.names {
        let path = dir.join(name);
        if plan.entries.contains_key(&path) {
            continue;
        }
        plan.entries
            .insert(path, made_up_link(PathBuf::from(&links.target)));
        added += 1;
    }
    if added > 0 {
        plan.inclusions.push(Inclusion {
            path: dir.to_path_buf(),
            reason: Reason::Profile {
                profile: profile.into(),
                why: format!("{added} links to {}", links.target),
            },
            files: 0,
            bytes: 0,
        });
    }
    Ok(())
}

/// A link the tree gets that has no source on the root (applet links, cache-only libraries).
fn made_up_link(target: PathBuf) -> Entry {
    Entry {
        kind: EntryKind::Symlink {
            target,
            dangling: false,
        },
        mode: 0o777,
        ..made_up_dir()
    }
}

#[cfg(test)]
mod learned_tests {
    use super::*;
    use crate::plan::tests_support::{chmod, plan_learning};
    use crate::root::Root;
    use std::collections::BTreeSet;

    fn learned(paths: &[&str]) -> Vec<LearnedSet> {
        vec![LearnedSet {
            command: vec!["app".into(), "-e".into(), "x y".into()],
            paths: paths.iter().map(PathBuf::from).collect::<BTreeSet<_>>(),
        }]
    }

    /// A host whose app reads /opt/data/conf, /etc/secret (0640), a file under /run and
    /// one under a dir others may not enter; the static rules find none of them.
    fn host() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        for dir in ["opt/app", "opt/data", "etc", "run/app", "srv/closed"] {
            std::fs::create_dir_all(b.join(dir)).unwrap();
        }
        for file in [
            "opt/app/main",
            "opt/data/conf",
            "etc/secret",
            "run/app/state",
            "srv/closed/x",
        ] {
            std::fs::write(b.join(file), "x").unwrap();
        }
        chmod(&b.join("etc/secret"), 0o640);
        chmod(&b.join("srv/closed"), 0o700);
        std::os::unix::fs::symlink("/opt/data/conf", b.join("etc/conf")).unwrap();
        t
    }

    #[test]
    fn what_the_static_rules_missed_joins_with_the_command_as_its_reason() {
        let t = host();
        let paths = ["/opt/app/main", "/opt/data/conf"];
        let plan = plan_learning(&Root::new(t.path()), &learned(&paths)).unwrap();
        assert!(plan.entries.contains_key(Path::new("/opt/data/conf")));
        let reasons: Vec<String> = plan
            .inclusions
            .iter()
            .filter(|i| matches!(i.reason, Reason::Learned { .. }))
            .map(|i| format!("{} {}", i.path.display(), i.reason))
            .collect();
        // /opt/app/main came with the mount: only the file the mount missed is learned.
        assert_eq!(reasons, ["/opt/data/conf learned from `app -e 'x y'`"]);
        assert_eq!(
            LearnedSet::from_inclusions(&plan.inclusions)[0].paths.len(),
            1
        );
    }

    #[test]
    fn learned_paths_obey_the_refusals_and_are_dropped_with_a_note() {
        let t = host();
        let paths = [
            "/etc/secret",
            "/run/app/state",
            "/srv/closed/x",
            "/opt/gone",
            "/opt/app/main",
        ];
        let plan = plan_learning(&Root::new(t.path()), &learned(&paths)).unwrap();
        for path in [
            "/etc/secret",
            "/run/app/state",
            "/srv/closed/x",
            "/etc",
            "/run",
            "/srv",
        ] {
            assert!(!plan.entries.contains_key(Path::new(path)), "{path} sealed");
        }
        let notes = plan.notes.join("\n");
        for expected in [
            "/etc/secret: not learned from `app -e 'x y'`: is not world-readable (mode 640)",
            "/run/app/state: not learned from `app -e 'x y'`: is under /run",
            "/srv/closed/x: not learned from `app -e 'x y'`: /srv/closed: is a directory that not everyone may pass through",
            "/opt/gone: not learned from `app -e 'x y'`: cannot be resolved now",
        ] {
            assert!(notes.contains(expected), "{expected} not in {notes}");
        }
        // Nothing new was learned, yet the command stays on record.
        let sets = LearnedSet::from_inclusions(&plan.inclusions);
        assert_eq!(sets[0].command, ["app", "-e", "x y"]);
        assert_eq!(
            sets[0].paths,
            BTreeSet::from([PathBuf::from("/opt/app/main")])
        );
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::plan::tests_support::plan_generic;
    use crate::root::Root;
    use std::process::Command;

    fn run(cmd: &mut Command) {
        let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(status.success(), "{cmd:?} failed");
    }

    /// A host (fixture root) whose app needs a library in /opt/lib, which only its
    /// ld.so.cache (built by `ldconfig -r`) knows about.
    #[test]
    fn a_library_only_the_cache_finds_is_linked_into_a_default_dir() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        for dir in [
            "opt/lib",
            "usr/bin",
            "usr/lib/x86_64-linux-gnu",
            "etc",
            "src",
            "lib64",
        ] {
            std::fs::create_dir_all(b.join(dir)).unwrap();
        }
        std::fs::write(b.join("src/foo.c"), "int foo(void) { return 42; }\n").unwrap();
        std::fs::write(
            b.join("src/main.c"),
            "int foo(void);\nint main(void) { return foo(); }\n",
        )
        .unwrap();
        run(Command::new("cc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o"])
            .arg(b.join("opt/lib/libfoo.so.1"))
            .arg(b.join("src/foo.c")));
        run(Command::new("cc")
            .arg("-o")
            .arg(b.join("usr/bin/app"))
            .arg(b.join("src/main.c"))
            .arg(b.join("opt/lib/libfoo.so.1")));
        std::fs::copy(
            "/lib/x86_64-linux-gnu/libc.so.6",
            b.join("usr/lib/x86_64-linux-gnu/libc.so.6"),
        )
        .unwrap();
        std::fs::copy(
            "/lib64/ld-linux-x86-64.so.2",
            b.join("lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        std::fs::write(b.join("etc/ld.so.conf"), "/opt/lib\n").unwrap();
        run(Command::new("ldconfig").arg("-r").arg(b));

        let mounts = [("/usr/bin/app", "/usr/bin/app")];
        let plan = plan_generic(&Root::new(b), &mounts, &[], &[], true).unwrap();
        let link = Path::new("/usr/lib/x86_64-linux-gnu/libfoo.so.1");
        assert_eq!(
            plan.entries[link].kind,
            EntryKind::Symlink {
                target: "/opt/lib/libfoo.so.1".into(),
                dangling: false
            },
            "{:#?}",
            plan.inclusions
        );
        assert!(plan.entries.contains_key(Path::new("/opt/lib/libfoo.so.1")));
        let why = plan
            .inclusions
            .iter()
            .find(|i| i.path == link)
            .unwrap()
            .reason
            .to_string();
        assert!(why.contains("ld.so.cache in /opt/lib"), "{why}");
    }
}
