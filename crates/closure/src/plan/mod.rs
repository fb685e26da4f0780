//! The closure of a runtime as a [`Plan`]: every path of the sealed tree, where it comes from
//! and, for each path that pulled something in, why.
//!
//! Each rule of the closure (DESIGN.md, "The closure, precisely") lives in one file, so that
//! a rule can be read and reviewed without the others: `walk` rule 1, `deps` rules 2 and 4,
//! `extras` rules 3 and 5, `refusal` rule 7. What they all share stays here: the plan's
//! data, the order of the passes (later rules depend on what earlier ones found), and
//! rule 6, which every pass applies alike.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::elf::Target;
use runseal_spec::paths::path_list;

use crate::error::{Error, Result};
use crate::loader::LibrarySearch;
use crate::profile::Profile;
use crate::root::{Resolution, Root};

mod deps;
mod extras;
mod refusal;
mod walk;

pub use refusal::REFUSED_PREFIXES;

/// One path of the sealed tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Where the content comes from, under the planning root; empty for a directory that only
    /// exists to hold a remapped mount.
    pub source: PathBuf,
    #[serde(flatten)]
    pub kind: EntryKind,
    /// Permission bits as on the source (setuid and setgid are stripped when copying).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// Device and inode of the source, so hard links stay hard links.
    #[serde(skip)]
    pub file_id: (u64, u64),
    /// For a directory: its whole tree is included, not only what passes through it.
    #[serde(skip)]
    pub whole: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
    Symlink {
        target: PathBuf,
        /// The target did not exist on the source either; the link is copied as it is.
        dangling: bool,
    },
}

/// Why a path is in the closure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    Mount {
        index: usize,
        source: String,
    },
    SymlinkTarget {
        link: PathBuf,
    },
    Interpreter {
        of: PathBuf,
    },
    Library {
        name: String,
        of: PathBuf,
    },
    Shebang {
        of: PathBuf,
    },
    Profile {
        profile: String,
        why: String,
    },
    /// A library the host finds only through its ld.so.cache, linked into a default dir.
    CacheOnly {
        name: String,
        dir: PathBuf,
    },
    /// A file the learn command opened, executed or mapped while running on the host, which
    /// no other rule brought in.
    Learned {
        command: Vec<String>,
    },
}

impl Reason {
    /// The path whose presence in the closure brought this one in, if any.
    fn from(&self) -> Option<&Path> {
        match self {
            Reason::SymlinkTarget { link } => Some(link),
            Reason::Interpreter { of } | Reason::Library { of, .. } | Reason::Shebang { of } => {
                Some(of)
            }
            Reason::Mount { .. }
            | Reason::Profile { .. }
            | Reason::CacheOnly { .. }
            | Reason::Learned { .. } => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Mount { index, source } => write!(f, "mounts[{index}] ({source})"),
            Reason::SymlinkTarget { link } => write!(f, "target of symlink {}", link.display()),
            Reason::Interpreter { of } => write!(f, "ELF interpreter of {}", of.display()),
            Reason::Library { name, of } => write!(f, "{name}, needed by {}", of.display()),
            Reason::Shebang { of } => write!(f, "script interpreter of {}", of.display()),
            Reason::Profile { profile, why } => write!(f, "profile {profile}: {why}"),
            Reason::CacheOnly { name, dir } => write!(
                f,
                "{name} is found through the host's ld.so.cache in {}; linked here so the job finds it without one",
                dir.display()
            ),
            Reason::Learned { command } => {
                write!(f, "learned from `{}`", command_line(command))
            }
        }
    }
}

/// A command as one line a shell would read back: arguments holding anything but plain
/// characters are single-quoted.
pub fn command_line(command: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    };
    command
        .iter()
        .map(|a| match plain(a) {
            true => a.clone(),
            false => format!("'{}'", a.replace('\'', "'\\''")),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one learn command opened: host paths, each a candidate for the closure under the
/// same rules as any other path (see `extras`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedSet {
    pub command: Vec<String>,
    pub paths: std::collections::BTreeSet<PathBuf>,
}

impl LearnedSet {
    /// The learned sets a sealed tree's inclusions record, by command in order of first
    /// appearance: each path a learn command brought in is one inclusion.
    pub fn from_inclusions(inclusions: &[Inclusion]) -> Vec<LearnedSet> {
        let mut sets: Vec<LearnedSet> = Vec::new();
        for inclusion in inclusions {
            let Reason::Learned { command } = &inclusion.reason else {
                continue;
            };
            let index = match sets.iter().position(|s| &s.command == command) {
                Some(index) => index,
                None => {
                    sets.push(LearnedSet {
                        command: command.clone(),
                        ..LearnedSet::default()
                    });
                    sets.len() - 1
                }
            };
            sets[index].paths.insert(inclusion.path.clone());
        }
        sets
    }
}

/// A path that brought new entries into the closure, with what it brought.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inclusion {
    pub path: PathBuf,
    pub reason: Reason,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub profile: String,
    pub inclusions: Vec<Inclusion>,
    /// Things worth knowing that do not stop the seal (dangling links, unresolvable libraries).
    pub notes: Vec<String>,
    /// Paths whose needs were already unmet on the source (a dangling link, a library or
    /// interpreter that is not installed): the static check does not blame the seal for them.
    pub unmet_on_source: std::collections::BTreeSet<PathBuf>,
    pub files: u64,
    pub bytes: u64,
    pub entries: BTreeMap<PathBuf, Entry>,
}

/// A mount of the runtime being sealed: a source on the planning root and where the job sees it.
#[derive(Debug, Clone)]
pub struct PlanMount {
    pub source: PathBuf,
    pub target: PathBuf,
}

pub struct PlanInput<'a> {
    pub mounts: Vec<PlanMount>,
    pub environment: &'a IndexMap<String, String>,
    /// The language profile first, then any userland the runtime asks for.
    pub profiles: &'a [Profile],
    /// Paths the operator lets the closure hold although [`REFUSED_PREFIXES`] or their
    /// permissions refuse them: each one, everything under it, and the dirs on the way to it.
    pub allow: &'a [PathBuf],
    /// Let the closure read through dirs a user other than root can change (see
    /// [`untrusted_dir`](crate::untrusted_dir)), which are refused by default.
    pub allow_untrusted: bool,
    /// What learn commands opened (see [`LearnedSet`]); added after every other rule, so
    /// only what those missed is `learned`.
    pub learned: &'a [LearnedSet],
}

/// Files and bytes under one top-level directory of the sealed tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopLevel {
    pub path: PathBuf,
    pub files: u64,
    pub bytes: u64,
}

/// Sums files and bytes per top-level directory of `(path, file size)` pairs.
pub fn top_level_sizes<'a>(files: impl Iterator<Item = (&'a Path, u64)>) -> Vec<TopLevel> {
    let mut sums: BTreeMap<PathBuf, (u64, u64)> = BTreeMap::new();
    for (path, size) in files {
        let top: PathBuf = path.components().take(2).collect();
        let slot = sums.entry(top).or_default();
        slot.0 += 1;
        slot.1 += size;
    }
    sums.into_iter()
        .map(|(path, (files, bytes))| TopLevel { path, files, bytes })
        .collect()
}

impl Plan {
    /// Files and bytes per top-level directory.
    pub fn top_level_sizes(&self) -> Vec<TopLevel> {
        top_level_sizes(
            self.entries
                .iter()
                .filter(|(_, e)| e.kind == EntryKind::File)
                .map(|(p, e)| (p.as_path(), e.size)),
        )
    }

    /// The top-level names of the tree: each becomes one read-only mount `isolated/<name>`
    /// on `/<name>`, so the job root is exactly the sealed tree.
    pub fn top_level(&self) -> Vec<String> {
        self.entries
            .keys()
            .filter(|p| p.parent() == Some(Path::new("/")))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }
}

/// Computes the closure of `input` on `root`.
pub fn plan(root: &Root, input: &PlanInput) -> Result<Plan> {
    let mut builder = Builder::new(root, input)?;
    builder.include_mounts(&input.mounts)?;
    builder.include_profile_paths(input.profiles)?;
    builder.settle()?;
    builder.include_anchored(input.profiles)?;
    builder.include_learned(input.learned)?;
    builder.settle()?;
    builder.finish(input.profiles)
}

/// A failed resolution of `path`, needed for `reason`: a missing path says where and why.
fn needed(error: Error, path: &Path, reason: &Reason) -> Error {
    match error {
        Error::Missing { path: missing, .. } => Error::Missing {
            path: if missing == path {
                missing
            } else {
                PathBuf::from(format!("{} (at {})", path.display(), missing.display()))
            },
            needed_as: reason.to_string(),
        },
        other => other,
    }
}

/// The closure as the passes build it, and what they remember between them.
struct Builder {
    /// The host (or the fixture standing for it): where every entry's source is.
    root: Root,
    /// The root as the job sees it, remapped mounts in place: where the paths a job uses
    /// (link targets, interpreters, libraries, profile paths) lead.
    view: Root,
    search: LibrarySearch,
    exec_path: Vec<String>,
    plan: Plan,
    allow: Vec<PathBuf>,
    allow_untrusted: bool,
    /// Files added but not yet read for ELF headers or `#!` lines.
    to_scan: Vec<PathBuf>,
    /// The executable files read so far that are programs (ELF or `#!`), by job path: only
    /// these can be a profile's anchor. Ordered, so the plan is the same every time.
    programs: std::collections::BTreeSet<PathBuf>,
    /// Symlinks added whose targets are not yet followed, by job path.
    links: Vec<PathBuf>,
    /// Paths already passed to `include`: including is idempotent, so repeats are skipped.
    included: HashSet<PathBuf>,
    /// File names of the files in the plan, for libraries satisfied by an earlier load.
    file_names: HashSet<OsString>,
    /// Library lookups already made, by name and the requester's search dirs.
    found: HashMap<deps::LookupKey, Option<PathBuf>>,
    /// Libraries found only through the host's ld.so.cache: (name, path, target).
    cache_only: Vec<(String, PathBuf, Target)>,
    /// Host dirs already found fit to pass through on the way to a source.
    passable: HashSet<PathBuf>,
}

impl Builder {
    fn new(root: &Root, input: &PlanInput) -> Result<Builder> {
        let root = &root.remembering();
        let cache = deps::read_ld_cache(root)?;
        // What the job sees at a remapped target is the mount's source tree, not what the host
        // holds there: paths the job uses are resolved through that view.
        let remapped = input
            .mounts
            .iter()
            .filter(|m| m.source != m.target)
            .filter_map(|m| {
                let source = root.resolve(&m.source).ok()?.path;
                Some((m.target.clone(), source))
            })
            .collect();
        let view = root.with_mounts(remapped);
        Ok(Builder {
            root: root.clone(),
            view: view.clone(),
            search: LibrarySearch {
                root: view,
                cache,
                ld_library_path: path_list(input.environment, "LD_LIBRARY_PATH"),
            },
            exec_path: path_list(input.environment, "PATH"),
            plan: Plan {
                profile: input
                    .profiles
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join("+"),
                ..Plan::default()
            },
            allow: input.allow.to_vec(),
            allow_untrusted: input.allow_untrusted,
            to_scan: Vec::new(),
            programs: std::collections::BTreeSet::new(),
            links: Vec::new(),
            included: HashSet::new(),
            file_names: HashSet::new(),
            found: HashMap::new(),
            cache_only: Vec::new(),
            passable: HashSet::new(),
        })
    }

    /// Follows links and scans files until everything added has been looked at.
    fn settle(&mut self) -> Result<()> {
        while !self.to_scan.is_empty() || !self.links.is_empty() {
            self.follow_links()?;
            self.scan_files()?;
        }
        Ok(())
    }

    /// Adds `path` (resolved as the job sees it, every link on the way kept) at the same path.
    fn include(&mut self, path: &Path, reason: Reason) -> Result<()> {
        if !self.included.insert(path.to_path_buf()) {
            return Ok(());
        }
        let resolution = self.resolve_needed(path, &reason)?;
        let before = (self.plan.files, self.plan.bytes, self.plan.entries.len());
        self.add_resolved(&resolution, &reason)?;
        self.record(path, reason, before);
        Ok(())
    }

    fn resolve_needed(&self, path: &Path, reason: &Reason) -> Result<Resolution> {
        self.resolve(path).map_err(|e| needed(e, path, reason))
    }

    fn record(&mut self, path: &Path, reason: Reason, before: (u64, u64, usize)) {
        if self.plan.entries.len() != before.2 {
            self.plan.inclusions.push(Inclusion {
                path: path.to_path_buf(),
                reason,
                files: self.plan.files - before.0,
                bytes: self.plan.bytes - before.1,
            });
        }
    }

    /// Inserts an entry; true if the path is new. The same path from two sources is a conflict;
    /// a source no job may see is refused, before anything reads its content.
    fn insert(&mut self, job: PathBuf, entry: Entry, why: &Reason) -> Result<bool> {
        self.admit(&entry, why)?;
        if let Some(existing) = self.plan.entries.get_mut(&job) {
            if existing.source != entry.source {
                return Err(Error::Conflict {
                    job_path: job,
                    first: existing.source.clone(),
                    second: entry.source,
                });
            }
            existing.whole |= entry.whole;
            return Ok(false);
        }
        if entry.kind == EntryKind::File {
            self.plan.files += 1;
            self.plan.bytes += entry.size;
            if let Some(name) = job.file_name() {
                self.file_names.insert(name.to_os_string());
            }
        }
        self.plan.entries.insert(job, entry);
        Ok(true)
    }

    /// Resolves as the job sees it, skipping the lstat of directories the plan already holds
    /// at their own path (as it found them on the root).
    fn resolve(&self, path: &Path) -> Result<Resolution> {
        let entries = &self.plan.entries;
        let known_dir = |p: &Path| {
            entries
                .get(p)
                .is_some_and(|e| e.kind == EntryKind::Dir && e.source == p)
        };
        self.view.resolve_knowing(path, &known_dir)
    }

    fn lstat(&self, path: &Path) -> Result<Metadata> {
        self.root
            .symlink_metadata(path)
            .map_err(|e| Error::io(self.root.real(path), e))
    }
}

/// Rule 6: a need the source could not meet either is a note, not a failed seal. The
/// runtime runs on the host with it unmet, so sealing it as it is loses nothing; `verify` is
/// told which paths these are (a dangling link's kind, `unmet_on_source`) so that it does
/// not blame the seal for them. The rule's last clause, `#!` counting only in executable
/// files, is how `deps` reads a file, so it stays there.
impl Builder {
    /// The symlink at `job` leads nowhere on the source either: it is copied as it is.
    fn dangling(&mut self, job: &Path, target: &Path) {
        if let Some(entry) = self.plan.entries.get_mut(job) {
            entry.kind = EntryKind::Symlink {
                target: target.to_path_buf(),
                dangling: true,
            };
        }
        self.plan.notes.push(format!(
            "{}: dangling symlink to {} (copied as it is)",
            job.display(),
            target.display()
        ));
    }

    /// `of` needs what the source does not hold.
    fn unmet(&mut self, of: &Path, note: String) {
        self.plan.unmet_on_source.insert(of.to_path_buf());
        self.plan.notes.push(note);
    }
}

fn entry_of(source: &Path, meta: &Metadata, kind: EntryKind) -> Entry {
    Entry {
        source: source.to_path_buf(),
        size: if kind == EntryKind::File {
            meta.len()
        } else {
            0
        },
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        file_id: (meta.dev(), meta.ino()),
        whole: false,
    }
}

fn made_up_dir() -> Entry {
    Entry {
        source: PathBuf::new(),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        mtime_nsec: 0,
        file_id: (0, 0),
        whole: false,
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The closure of `mounts` on `root` with the generic profile, `allow` let through. The
    /// fixtures are the test runner's, root or not: untrusted dirs are let through too.
    pub(super) fn plan_with(
        root: &Root,
        mounts: &[(&str, &str)],
        allow: &[PathBuf],
    ) -> Result<Plan> {
        plan_trusting(root, mounts, allow, true)
    }

    /// [`plan_with`], untrusted dirs let through only with `allow_untrusted`.
    pub(super) fn plan_trusting(
        root: &Root,
        mounts: &[(&str, &str)],
        allow: &[PathBuf],
        allow_untrusted: bool,
    ) -> Result<Plan> {
        let environment = [("PATH", "/usr/bin")];
        plan_generic(root, mounts, &environment, allow, allow_untrusted)
    }

    /// The closure of `mounts` on `root` with the generic profile, in `environment`.
    pub(super) fn plan_generic(
        root: &Root,
        mounts: &[(&str, &str)],
        environment: &[(&str, &str)],
        allow: &[PathBuf],
        allow_untrusted: bool,
    ) -> Result<Plan> {
        plan_generic_learning(root, mounts, environment, allow, allow_untrusted, &[])
    }

    /// [`plan_generic`] with `learned` added.
    fn plan_generic_learning(
        root: &Root,
        mounts: &[(&str, &str)],
        environment: &[(&str, &str)],
        allow: &[PathBuf],
        allow_untrusted: bool,
        learned: &[LearnedSet],
    ) -> Result<Plan> {
        let environment: IndexMap<String, String> = environment
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let profile = [crate::profile::ProfileSet::builtin()
            .unwrap()
            .get("generic")
            .unwrap()];
        let mounts = mounts
            .iter()
            .map(|(s, t)| PlanMount {
                source: PathBuf::from(s),
                target: PathBuf::from(t),
            })
            .collect();
        plan(
            root,
            &PlanInput {
                mounts,
                environment: &environment,
                profiles: &profile,
                allow,
                allow_untrusted,
                learned,
            },
        )
    }

    /// The closure of the mount `/opt/app` on `root` with `learned` added.
    pub(super) fn plan_learning(root: &Root, learned: &[LearnedSet]) -> Result<Plan> {
        let mounts = [("/opt/app", "/opt/app")];
        plan_generic_learning(root, &mounts, &[], &[], true, learned)
    }

    pub(super) fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}
