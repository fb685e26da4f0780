//! Rules 2 and 4 of the closure: what a file names as needed to run it, an ELF file its
//! interpreter and libraries, a script its `#!` interpreter. They are read from the files,
//! never by running them (`ldd` executes the binary), and looked up as the loader and `env`
//! will look them up in the job, so that the seal holds what the job will load.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Builder, Reason};
use crate::elf::{ElfInfo, Target};
use crate::error::{Error, Result};
use crate::ldcache::LdCache;
use crate::loader::Via;
use crate::root::Root;
use crate::scan::{scan, FileKind};

/// The root's `/etc/ld.so.cache`, if it has one. In a build the root is what the setup
/// script left, so the cache may be anything: it is opened like any source.
pub(super) fn read_ld_cache(root: &Root) -> Result<Option<LdCache>> {
    let path = match root.resolve(Path::new("/etc/ld.so.cache")) {
        Ok(resolution) => resolution.path,
        Err(Error::Missing { .. } | Error::NotADirectory { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    root.open_regular(&path)?
        .read_to_end(&mut data)
        .map_err(|e| Error::io(root.real(&path), e))?;
    let cache = LdCache::parse(&data).map_err(|message| Error::LdCache {
        path: root.real(&path),
        message,
    })?;
    Ok(Some(cache))
}

/// What a library lookup depends on: the name, the requester's dir (for `$ORIGIN`), its
/// search paths and its class and machine.
pub(super) type LookupKey = (String, PathBuf, Vec<String>, Vec<String>, Target);

impl Builder {
    pub(super) fn scan_files(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.to_scan);
        let scanned: Vec<(&PathBuf, PathBuf, FileKind)> = batch
            .par_iter()
            .map(|job| {
                let entry = &self.plan.entries[job];
                let executable = entry.mode & 0o111 != 0;
                scan(&self.root, &entry.source, executable)
                    .map(|kind| (job, entry.source.clone(), kind))
            })
            .collect::<Result<_>>()?;
        for (job, source, kind) in scanned {
            let executable = self.plan.entries[job].mode & 0o111 != 0;
            if executable && matches!(kind, FileKind::Elf(_) | FileKind::Script { .. }) {
                self.programs.insert(job.clone());
            }
            match kind {
                FileKind::Elf(info) => {
                    // A loader that is not there is unmet like a missing library: the
                    // program cannot run on its source either (a copy that took the
                    // loader's link but not its target), which adoption completes.
                    match &info.interpreter {
                        Some(interpreter) if self.resolve(Path::new(interpreter)).is_err() => {
                            let note = format!(
                                "{}: its ELF interpreter {interpreter} is not installed",
                                source.display()
                            );
                            self.unmet(&source, note);
                        }
                        Some(interpreter) => {
                            let reason = Reason::Interpreter { of: source.clone() };
                            self.include(Path::new(interpreter), reason)?;
                        }
                        None => {}
                    }
                    for name in &info.needed {
                        match self.find_library(name, &source, &info) {
                            Some(found) => {
                                let reason = Reason::Library {
                                    name: name.clone(),
                                    of: source.clone(),
                                };
                                self.include(&found, reason)?;
                            }
                            None if self.has_file_named(name) => {}
                            None => self.unmet(
                                &source,
                                format!(
                                    "{}: needs {name}, which is not installed",
                                    source.display()
                                ),
                            ),
                        }
                    }
                }
                FileKind::BadElf(message) => self.plan.notes.push(format!(
                    "{}: not a loadable ELF file ({message}); its dependencies are not followed",
                    source.display()
                )),
                FileKind::Script {
                    interpreter,
                    argument,
                } => self.include_interpreter(&source, &interpreter, argument.as_deref())?,
                FileKind::Other => {}
            }
        }
        Ok(())
    }

    /// A `#!` interpreter joins the closure; for `env NAME`, so does NAME found on the
    /// runtime's `PATH`.
    fn include_interpreter(
        &mut self,
        script: &Path,
        interpreter: &str,
        argument: Option<&str>,
    ) -> Result<()> {
        let reason = Reason::Shebang {
            of: script.to_path_buf(),
        };
        // Libraries ship scripts whose `#!` names an interpreter nobody installed
        // (`/usr/lib/python3.11/cgi.py` says /usr/local/bin/python): the script cannot run
        // on the host either, so this is a note, not a failed seal.
        if self.resolve(Path::new(interpreter)).is_err() {
            let note = format!(
                "{}: its interpreter {interpreter} is not installed",
                script.display()
            );
            self.unmet(script, note);
            return Ok(());
        }
        self.include(Path::new(interpreter), reason.clone())?;
        let is_env = Path::new(interpreter).file_name() == Some("env".as_ref());
        let Some(program) = argument.filter(|a| is_env && !a.starts_with('-')) else {
            return Ok(());
        };
        let program = program.split_whitespace().next().unwrap_or(program);
        let found = self
            .exec_path
            .iter()
            .map(|dir| Path::new(dir).join(program))
            .find(|p| self.view.resolves_to_file(p));
        match found {
            Some(path) => self.include(&path, reason),
            None => {
                self.plan.notes.push(format!(
                    "{}: runs `{program}` through env, not found on the runtime's PATH",
                    script.display()
                ));
                Ok(())
            }
        }
    }

    /// A needed name the search cannot find can still be satisfied at run time by an object
    /// of that name loaded earlier, as the JDK's libraries find `lib/server/libjvm.so`
    /// that the launcher dlopen()s first.
    fn has_file_named(&self, name: &str) -> bool {
        self.file_names.contains(OsStr::new(name))
    }

    fn find_library(&mut self, name: &str, requester: &Path, info: &ElfInfo) -> Option<PathBuf> {
        let key = (
            name.to_string(),
            requester.parent().unwrap_or(Path::new("/")).to_path_buf(),
            info.rpath.clone(),
            info.runpath.clone(),
            info.target,
        );
        if let Some(found) = self.found.get(&key) {
            return found.clone();
        }
        let found = self.search.find_how(name, requester, info);
        if let Some((path, Via::Cache)) = &found {
            self.cache_only
                .push((name.to_string(), path.clone(), info.target));
        }
        let found = found.map(|(path, _)| path);
        self.found.insert(key, found.clone());
        found
    }
}

#[cfg(test)]
mod loader_tests {
    use super::*;
    use crate::plan::tests_support::plan_generic;
    use crate::plan::Plan;
    use crate::testing::{mkfifo, within_seconds};

    /// A host whose app is a copy of /bin/true, run with `LD_LIBRARY_PATH=/opt/lib`.
    fn host() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for dir in ["opt/app/bin", "opt/lib", "etc", "lib64"] {
            std::fs::create_dir_all(t.path().join(dir)).unwrap();
        }
        for (from, to) in [
            ("/bin/true", "opt/app/bin/true"),
            ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
        ] {
            std::fs::copy(from, t.path().join(to)).unwrap();
        }
        t
    }

    fn plan_of(host: &Path) -> Result<Plan> {
        let mounts = [("/opt/app", "/opt/app")];
        let environment = [("LD_LIBRARY_PATH", "/opt/lib")];
        plan_generic(&Root::new(host), &mounts, &environment, &[], true)
    }

    /// Go ships a FreeBSD binary among its test data, whose loader (/libexec/ld-elf.so.1)
    /// no Linux host has: a file for another OS or machine is noted, not followed.
    #[test]
    fn an_elf_for_another_os_or_machine_is_a_note_not_an_error() {
        let t = host();
        std::fs::remove_file(t.path().join("lib64/ld-linux-x86-64.so.2")).unwrap();
        let app = t.path().join("opt/app/bin/true");
        for (offset, byte, why) in [(7, 9u8, "another OS"), (18, 40u8, "another machine")] {
            let mut bytes = std::fs::read("/bin/true").unwrap();
            bytes[offset] = byte;
            std::fs::write(&app, bytes).unwrap();
            let plan = plan_of(t.path()).unwrap();
            assert!(
                plan.notes.iter().any(|n| n
                    .contains("/opt/app/bin/true: not a loadable ELF file (built for")
                    && n.contains(why)),
                "{:?}",
                plan.notes
            );
            assert!(!plan
                .entries
                .contains_key(Path::new("/lib64/ld-linux-x86-64.so.2")));
        }
        // The same file for this host needs its loader, which this host lacks: unmet on
        // the source, like a missing library (adoption completes it from the host).
        std::fs::copy("/bin/true", &app).unwrap();
        let plan = plan_of(t.path()).unwrap();
        let note = "its ELF interpreter /lib64/ld-linux-x86-64.so.2 is not installed";
        assert!(
            plan.notes.iter().any(|n| n.contains(note)),
            "{:?}",
            plan.notes
        );
        assert!(plan
            .unmet_on_source
            .contains(Path::new("/opt/app/bin/true")));
    }

    /// The loader's search opens every candidate it meets: one that is a FIFO is skipped.
    #[test]
    fn a_fifo_among_library_candidates_is_skipped_not_waited_on() {
        let t = host();
        mkfifo(&t.path().join("opt/lib/libc.so.6"));
        let host = t.path().to_path_buf();
        let plan = within_seconds(move || plan_of(&host)).unwrap();
        assert!(!plan.entries.contains_key(Path::new("/opt/lib/libc.so.6")));
        assert!(
            plan.notes.iter().any(|n| n.contains("needs libc.so.6")),
            "{:?}",
            plan.notes
        );
    }

    /// In a build the root is what the setup script left, ld.so.cache included.
    #[test]
    fn a_fifo_as_ld_so_cache_is_an_error_not_a_hang() {
        let t = host();
        mkfifo(&t.path().join("etc/ld.so.cache"));
        let host = t.path().to_path_buf();
        let err = within_seconds(move || plan_of(&host))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("etc/ld.so.cache: is a fifo; a sealed runtime holds only files, directories and symlinks"), "{err}");
    }
}
