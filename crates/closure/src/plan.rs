//! The closure of a runtime as a [`Plan`]: every path of the sealed tree, where it comes from
//! and, for each path that pulled something in, why.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::elf::{ElfInfo, Target};
use runseal_spec::paths::{ancestors, path_list};

use crate::error::{Error, Result};
use crate::ldcache::LdCache;
use crate::loader::{default_dirs, LibrarySearch, Via};
use crate::profile::{Profile, ProfileLinks};
use crate::root::{special_kind, untrusted_dir, Resolution, Root};
use crate::scan::{scan, FileKind};

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
}

impl Reason {
    /// The path whose presence in the closure brought this one in, if any.
    fn from(&self) -> Option<&Path> {
        match self {
            Reason::SymlinkTarget { link } => Some(link),
            Reason::Interpreter { of } | Reason::Library { of, .. } | Reason::Shebang { of } => {
                Some(of)
            }
            Reason::Mount { .. } | Reason::Profile { .. } | Reason::CacheOnly { .. } => None,
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
        }
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
}

/// Where a host keeps per-process, per-device, per-boot and per-user state: nothing a runtime
/// needs, and what a job must never read (`/proc/self/environ`, `/root/.ssh`, ...).
pub const REFUSED_PREFIXES: [&str; 6] = ["/proc", "/sys", "/dev", "/run", "/root", "/home"];

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
    let cache = read_ld_cache(root)?;
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
    let mut builder = Builder {
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
        links: Vec::new(),
        included: HashSet::new(),
        file_names: HashSet::new(),
        found: HashMap::new(),
        cache_only: Vec::new(),
        passable: HashSet::new(),
    };
    for (index, mount) in input.mounts.iter().enumerate() {
        let reason = Reason::Mount {
            index,
            source: mount.source.display().to_string(),
        };
        if mount.source == mount.target {
            builder.include(&mount.source, reason)?;
        } else {
            builder.include_remapped(&mount.source, &mount.target, reason)?;
        }
    }
    for profile in input.profiles {
        for item in profile
            .include
            .iter()
            .filter(|i| !Profile::is_templated(&i.path))
        {
            builder.include_profile_path(&profile.name, &item.path, &item.why, item.optional)?;
        }
    }
    builder.settle()?;
    // Anchored paths ({prefix}/lib/python{version}) follow the interpreters found so far;
    // what they bring in can hold further interpreters, so repeat until nothing new.
    let mut anchored: HashSet<PathBuf> = HashSet::new();
    loop {
        let mut found = Vec::new();
        for profile in input.profiles.iter().filter(|p| !p.anchors.is_empty()) {
            for (path, entry) in &builder.plan.entries {
                if entry.kind == EntryKind::File && !anchored.contains(path) {
                    if let Some(anchor) = profile.anchor_of(path) {
                        found.push((profile, anchor));
                    }
                }
            }
        }
        if found.is_empty() {
            break;
        }
        for (profile, anchor) in found {
            anchored.insert(anchor.path.clone());
            for item in profile
                .include
                .iter()
                .filter(|i| Profile::is_templated(&i.path))
            {
                let (path, why) = (anchor.fill(&item.path), anchor.fill(&item.why));
                builder.include_profile_path(&profile.name, &path, &why, item.optional)?;
            }
        }
        builder.settle()?;
    }
    let cache_only = std::mem::take(&mut builder.cache_only);
    let mut plan = builder.plan;
    for (name, path, target) in cache_only {
        link_into_default_dir(&mut plan, &name, &path, target);
    }
    for profile in input.profiles {
        for links in &profile.links {
            add_links(&mut plan, &profile.name, links)?;
        }
    }
    Ok(plan)
}

/// The root's `/etc/ld.so.cache`, if it has one. In a build the root is what the setup
/// script left, so the cache may be anything: it is opened like any source.
fn read_ld_cache(root: &Root) -> Result<Option<LdCache>> {
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
    /// Symlinks added whose targets are not yet followed, by job path.
    links: Vec<PathBuf>,
    /// Paths already passed to `include`: including is idempotent, so repeats are skipped.
    included: HashSet<PathBuf>,
    /// File names of the files in the plan, for libraries satisfied by an earlier load.
    file_names: HashSet<OsString>,
    /// Library lookups already made, by name and the requester's search dirs.
    found: HashMap<LookupKey, Option<PathBuf>>,
    /// Libraries found only through the host's ld.so.cache: (name, path, target).
    cache_only: Vec<(String, PathBuf, Target)>,
    /// Host dirs already found fit to pass through on the way to a source.
    passable: HashSet<PathBuf>,
}

/// What a library lookup depends on: the name, the requester's dir (for `$ORIGIN`), its
/// search paths and its class and machine.
type LookupKey = (String, PathBuf, Vec<String>, Vec<String>, Target);

impl Builder {
    /// Follows links and scans files until everything added has been looked at.
    fn settle(&mut self) -> Result<()> {
        while !self.to_scan.is_empty() || !self.links.is_empty() {
            self.follow_links()?;
            self.scan_files()?;
        }
        Ok(())
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

    /// Adds what `resolution` passed and reached, each from where the job's view has it.
    fn add_resolved(&mut self, resolution: &Resolution, why: &Reason) -> Result<()> {
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

    /// Inserts an entry; true if the path is new. The same path from two sources is a conflict;
    /// a source no job may see is refused, before anything reads its content.
    fn insert(&mut self, job: PathBuf, entry: Entry, why: &Reason) -> Result<bool> {
        let refused = match self.refusal(&entry) {
            Some(refusal) => Some((entry.source.clone(), refusal)),
            None => self.way_refusal(&entry.source)?,
        };
        if let Some((path, refusal)) = refused {
            return Err(refusal.error(path, self.trace(why)));
        }
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

    fn follow_links(&mut self) -> Result<()> {
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
                    if let Some(entry) = self.plan.entries.get_mut(&job) {
                        entry.kind = EntryKind::Symlink {
                            target: target.clone(),
                            dangling: true,
                        };
                    }
                    self.plan.notes.push(format!(
                        "{}: dangling symlink to {} (copied as it is)",
                        job.display(),
                        target.display()
                    ));
                }
                Err(Error::SymlinkLoop { limit, .. }) => {
                    return Err(Error::SymlinkLoop { path: job, limit })
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    fn scan_files(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.to_scan);
        let scanned: Vec<(PathBuf, FileKind)> = batch
            .par_iter()
            .map(|job| {
                let entry = &self.plan.entries[job];
                let executable = entry.mode & 0o111 != 0;
                scan(&self.root, &entry.source, executable).map(|kind| (entry.source.clone(), kind))
            })
            .collect::<Result<_>>()?;
        for (source, kind) in scanned {
            match kind {
                FileKind::Elf(info) => {
                    if let Some(interpreter) = &info.interpreter {
                        let reason = Reason::Interpreter { of: source.clone() };
                        self.include(Path::new(interpreter), reason)?;
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
                            None => {
                                self.plan.unmet_on_source.insert(source.clone());
                                self.plan.notes.push(format!(
                                    "{}: needs {name}, which is not installed",
                                    source.display()
                                ));
                            }
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
            self.plan.unmet_on_source.insert(script.to_path_buf());
            self.plan.notes.push(format!(
                "{}: its interpreter {interpreter} is not installed",
                script.display()
            ));
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
    fn refusal(&self, entry: &Entry) -> Option<Refusal> {
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
    fn way_refusal(&mut self, source: &Path) -> Result<Option<(PathBuf, Refusal)>> {
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

    fn lstat(&self, path: &Path) -> Result<Metadata> {
        self.root
            .symlink_metadata(path)
            .map_err(|e| Error::io(self.root.real(path), e))
    }
}

/// Why a source is refused.
enum Refusal {
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
mod tests {
    use super::*;
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
        super::tests_support::plan_with(root, mounts, &[])
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
mod refusal_tests {
    use super::tests_support::*;
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

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
mod remap_tests {
    use super::tests_support::*;
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

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

#[cfg(test)]
mod fifo_tests {
    use super::*;
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
        let environment: IndexMap<String, String> =
            [("LD_LIBRARY_PATH".to_string(), "/opt/lib".to_string())].into();
        let profiles = [crate::profile::ProfileSet::builtin()
            .unwrap()
            .get("generic")
            .unwrap()];
        let mounts = vec![PlanMount {
            source: "/opt/app".into(),
            target: "/opt/app".into(),
        }];
        plan(
            &Root::new(host),
            &PlanInput {
                mounts,
                environment: &environment,
                profiles: &profiles,
                allow: &[],
                allow_untrusted: true,
            },
        )
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

#[cfg(test)]
mod trust_tests {
    use super::tests_support::*;
    use super::*;
    use std::os::unix::fs::{chown, PermissionsExt};

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

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

#[cfg(test)]
mod tests_support {
    use super::*;

    /// The closure of `mounts` on `root` with the generic profile, `allow` let through. The
    /// fixtures are the test runner's, root or not: untrusted dirs are let through too.
    pub fn plan_with(root: &Root, mounts: &[(&str, &str)], allow: &[PathBuf]) -> Result<Plan> {
        plan_trusting(root, mounts, allow, true)
    }

    /// [`plan_with`], untrusted dirs let through only with `allow_untrusted`.
    pub fn plan_trusting(
        root: &Root,
        mounts: &[(&str, &str)],
        allow: &[PathBuf],
        allow_untrusted: bool,
    ) -> Result<Plan> {
        let environment: IndexMap<String, String> =
            [("PATH".to_string(), "/usr/bin".to_string())].into();
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
            },
        )
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
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

        let environment = IndexMap::new();
        let profiles = [crate::profile::ProfileSet::builtin()
            .unwrap()
            .get("generic")
            .unwrap()];
        let input = PlanInput {
            mounts: vec![PlanMount {
                source: "/usr/bin/app".into(),
                target: "/usr/bin/app".into(),
            }],
            environment: &environment,
            profiles: &profiles,
            allow: &[],
            allow_untrusted: true,
        };
        let plan = plan(&Root::new(b), &input).unwrap();
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
