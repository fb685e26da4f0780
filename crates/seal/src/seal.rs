//! `runseal seal`: plan the closure, build it beside the old tree, swap it in, then rewrite
//! runtime.yml. Every step that a crash can interrupt leaves either the old runtime or the
//! new one; a failed seal removes what it staged, and what a crash left (`isolated.tmp/`,
//! `runtime.yml.tmp`) is removed by the next seal. Every write goes through the runtime
//! dir's fd (see `dirfd`), so nothing its author planted redirects one.

use std::path::{Path, PathBuf};

use runseal_closure::{
    plan, EntryKind, LearnedSet, Plan, PlanInput, PlanMount, Profile, ProfileSet, Root,
};
use runseal_spec::{
    validate, Mount, MountKind, RuleOptions, RuntimeConfig, Violation, ISOLATED_DIR, RUNTIME_YML,
};
use serde::Serialize;

use crate::adopt::{complete_from_host, copy_on_write_mounts, lenient, plan_mounts};
use crate::copy::{materialize, stamp, Materialized, Previous};
use crate::dirfd::{temp_name, DirFd};
use crate::error::{Error, Result};
use crate::integrity::matches_quickly;
use crate::layout::{Layout, MANIFEST_NAME, ORIGINAL_YML, PREVIOUS_DIR, STAGING_DIR};
use crate::manifest::{Manifest, ManifestEntry, ManifestKind, SEALED_OWNER};
use crate::progress::Progress;
use crate::sbom::{sbom_path, Subject, SBOM_NAME};
use crate::store::Store;
use crate::trust::untrusted_because;
use crate::validate::architecture_violation;

#[derive(Debug, Clone, Default)]
pub struct SealOptions {
    /// Compute and report the plan; write nothing.
    pub dry_run: bool,
    /// Profiles to seal with instead of the one `language` selects or detection finds.
    pub profiles: Vec<String>,
    /// Dirs whose `*.yml` profiles join or replace the built-in ones.
    pub profile_dirs: Vec<PathBuf>,
    /// Accept writable mounts in the input.
    pub allow_writable: bool,
    /// Fail at once instead of waiting when another seal holds the lock.
    pub no_wait: bool,
    /// Paths the closure may hold although it refuses them by default (anything under
    /// `/proc`, `/sys`, `/dev`, `/run`, `/root` or `/home`, and what not everyone may read):
    /// each one and everything under it.
    pub allow_paths: Vec<PathBuf>,
    /// Seal although a non-root user can write the runtime dir or one of its parents, or a
    /// dir the closure reads through.
    pub allow_untrusted_dir: bool,
    /// What learn commands opened in this seal's run (see [`learn_commands`]). They join
    /// the sets the current tree's manifest records (a set of the same command replaces
    /// the recorded one), so a re-seal keeps what was learned without running anything.
    pub learned: Vec<LearnedSet>,
    /// The runtimes root whose store (see [`crate::store`]) the sealed files are shared
    /// through; without one every file is the runtime's own copy.
    pub store: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The tree or runtime.yml was written.
    Sealed,
    /// Everything was already as the plan asks: nothing was written.
    Unchanged,
    /// `--dry-run`: nothing was written.
    Planned,
}

#[derive(Debug, Clone, Serialize)]
pub struct SealReport {
    pub runtime: PathBuf,
    pub outcome: Outcome,
    pub profile: String,
    pub files: u64,
    pub bytes: u64,
    pub copied_files: u64,
    pub copied_bytes: u64,
    pub reused_files: u64,
    pub mounts: Vec<Mount>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

/// Seals the runtime in `dir` using the host (`/`) as the source of every path.
pub fn seal(dir: &Path, options: &SealOptions, progress: &dyn Progress) -> Result<SealReport> {
    seal_from(&Root::host(), dir, options, progress)
}

/// Seals with sources read from `root` (a fixture tree in tests).
pub fn seal_from(
    root: &Root,
    dir: &Path,
    options: &SealOptions,
    progress: &dyn Progress,
) -> Result<SealReport> {
    let layout = Layout::new(dir);
    if !options.allow_untrusted_dir {
        if let Some(reason) = untrusted_because(dir)? {
            return Err(Error::UntrustedDir {
                dir: dir.to_path_buf(),
                reason,
            });
        }
    }
    let runtime = DirFd::open(dir)?;
    let _lock = if options.dry_run {
        None
    } else {
        let lock = runtime.lock(!options.no_wait)?;
        remove_leftovers(&runtime)?;
        Some(lock)
    };

    let current_text = runtime
        .read_to_string(RUNTIME_YML)?
        .ok_or_else(|| Error::io(layout.runtime_yml(), std::io::ErrorKind::NotFound.into()))?;
    let current = RuntimeConfig::parse(&current_text, &layout.runtime_yml())?;
    let (input, input_file, adopting) = sealing_input(&runtime, &layout, &current)?;
    let rules = RuleOptions {
        allow_writable: options.allow_writable,
        allow_host_sources: true,
    };
    let mut notes = Vec::new();
    let dir_abs = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let planned = plan_mounts(root, &dir_abs, &input, &mut notes);
    // The sandbox's own places were dropped with a note; the rest must pass every rule.
    let kept = RuntimeConfig {
        mounts: planned
            .iter()
            .map(|(i, _)| input.mounts[*i].clone())
            .collect(),
        ..input.clone()
    };
    let mut violations: Vec<Violation> = validate(&kept, rules)
        .into_iter()
        .map(|v| renumber(v, &planned))
        .collect();
    violations.extend(architecture_violation(&current));
    if !violations.is_empty() {
        return Err(Error::Invalid {
            file: input_file,
            violations,
        });
    }
    if planned.is_empty() {
        return Err(Error::Unsealable {
            file: input_file,
            message: format!("has no mount left to seal ({})", notes.join("; ")),
        });
    }

    let previous_tree = match runtime.exists(ISOLATED_DIR)? {
        true => Some(runtime.open_dir(ISOLATED_DIR)?),
        false => None,
    };
    // Read once: it holds both what was learned (an input of the plan) and the stamps the
    // new tree is checked against. A tree without a readable manifest records nothing; the
    // seal replaces it.
    let previous = previous_tree
        .as_ref()
        .and_then(|tree| Manifest::load_from(tree).ok().flatten());
    let recorded = previous.as_ref().map(Manifest::learned).unwrap_or_default();
    let learned = merge_learned(recorded, &options.learned);
    // The previous tree is checked on one core while the closure is planned on the other:
    // both only read, and the lock keeps every other seal out.
    let (planned_closure, previous_intact) = rayon::join(
        || {
            let set = ProfileSet::load(&options.profile_dirs)?;
            let config = RuntimeConfig {
                base: current.base.clone(),
                ..input.clone()
            };
            let mounts: Vec<PlanMount> = planned.iter().map(|(_, m)| m.clone()).collect();
            let plan_with = |profiles: &[Profile]| {
                let lenient_profiles = lenient(profiles);
                let input = PlanInput {
                    mounts: mounts.clone(),
                    environment: &current.environment,
                    profiles: if adopting {
                        &lenient_profiles
                    } else {
                        profiles
                    },
                    allow: &options.allow_paths,
                    allow_untrusted: options.allow_untrusted_dir,
                    learned: &learned,
                };
                let planned = plan(root, &input)?;
                Ok::<_, Error>(if adopting {
                    complete_from_host(root, planned, profiles, &input)
                } else {
                    planned
                })
            };
            let mut profiles = profiles_for(&config, &options.profiles, &set, std::iter::empty())?;
            let mut plan = plan_with(&profiles)?;
            if needs_detection(&config, &options.profiles, &set) {
                let files = plan
                    .entries
                    .iter()
                    .filter(|(_, e)| e.kind == EntryKind::File);
                if let Some(detected) = set.detect(files.map(|(p, _)| p.as_path())) {
                    profiles.insert(0, detected);
                    plan = plan_with(&profiles)?;
                }
            }
            Ok::<_, Error>((plan, profiles))
        },
        || {
            previous
                .as_ref()
                .is_some_and(|m| matches_quickly(&layout.isolated(), m))
        },
    );
    let (mut plan, profiles) = planned_closure?;
    plan.notes.splice(0..0, notes);
    let mut notes = Vec::new();
    let writable = copy_on_write_mounts(&input, &planned, &plan, &mut notes);
    plan.notes.extend(notes);

    // A writable top-level dir is mounted once, as its copy-on-write layer.
    let mut sealed_mounts: Vec<Mount> = plan
        .top_level()
        .into_iter()
        .map(|name| Mount::sealed(&name))
        .filter(|sealed| !writable.iter().any(|w| w.target == sealed.target))
        .collect();
    sealed_mounts.extend(writable);
    let sealed = RuntimeConfig {
        mounts: sealed_mounts.clone(),
        ..current.clone()
    };
    let sealed_text = sealed.to_yaml(&layout.runtime_yml())?;
    let tree_current = previous_intact && previous.as_ref().is_some_and(|m| m.matches_plan(&plan));
    let yml_current = sealed_text == current_text;

    let mut report = SealReport {
        runtime: dir.to_path_buf(),
        outcome: Outcome::Unchanged,
        profile: plan.profile.clone(),
        files: plan.files,
        bytes: plan.bytes,
        copied_files: 0,
        copied_bytes: 0,
        reused_files: 0,
        mounts: sealed_mounts,
        notes: plan.notes.clone(),
        plan: None,
    };
    if options.dry_run {
        report.outcome = Outcome::Planned;
        report.plan = Some(plan);
        return Ok(report);
    }

    if !runtime.exists(ORIGINAL_YML)? {
        runtime.write_atomic(ORIGINAL_YML, current_text.as_bytes())?;
    }
    if !tree_current {
        let staging = runtime.create_dir(STAGING_DIR, 0o755)?;
        let previous = previous_tree
            .as_ref()
            .zip(previous.as_ref())
            .map(|(tree, manifest)| Previous { tree, manifest });
        let (version, unnamed) = (current.effective_version(), dir_name(dir));
        let record = Record {
            profiles: &profiles,
            subject: Subject {
                name: current.name.as_deref().unwrap_or(&unnamed),
                version: version.as_deref(),
            },
        };
        let store = match &options.store {
            Some(root) => Store::open(root, &runtime)?,
            None => None,
        };
        let built = build(
            root,
            &plan,
            (&runtime, &staging),
            previous,
            store.as_ref(),
            &record,
            progress,
        );
        let done = match built {
            Ok(done) => done,
            Err(e) => {
                // The error that stopped the seal is the one to report; a staging tree that
                // cannot be removed now is removed by the next seal.
                let _ = runtime.remove_tree(STAGING_DIR);
                return Err(e);
            }
        };
        swap_in(&runtime)?;
        report.copied_files = done.copied_files;
        report.copied_bytes = done.copied_bytes;
        report.reused_files = done.reused_files;
        report.outcome = Outcome::Sealed;
    }
    if !yml_current {
        runtime.write_atomic(RUNTIME_YML, sealed_text.as_bytes())?;
        report.outcome = Outcome::Sealed;
    }
    Ok(report)
}

/// The learned sets the manifest of the runtime's current tree records.
fn recorded_learned(runtime: &DirFd) -> Result<Vec<LearnedSet>> {
    if !runtime.exists(ISOLATED_DIR)? {
        return Ok(Vec::new());
    }
    let tree = runtime.open_dir(ISOLATED_DIR)?;
    // A tree without a readable manifest records nothing; the seal replaces it.
    Ok(Manifest::load_from(&tree)
        .ok()
        .flatten()
        .map(|m| m.learned())
        .unwrap_or_default())
}

/// `recorded` with each set of `fresh` in place of the recorded one of its command.
fn merge_learned(mut recorded: Vec<LearnedSet>, fresh: &[LearnedSet]) -> Vec<LearnedSet> {
    for set in fresh {
        match recorded.iter_mut().find(|r| r.command == set.command) {
            Some(slot) => *slot = set.clone(),
            None => recorded.push(set.clone()),
        }
    }
    recorded
}

/// What a seal of `dir` should learn by running it: the environment to run in and each
/// learn command that runtime.yml (the sealing input) or a profile names and that the
/// current tree's manifest does not record yet. Profiles are those `options.profiles`
/// names or the runtime's `language` selects (a detected profile's commands need
/// `--profile`). With `relearn`, recorded commands are due again too.
pub fn learn_commands(dir: &Path, options: &SealOptions, relearn: bool) -> Result<LearnPlan> {
    let (runtime, current, input, set) = learning_input(dir, options)?;
    let profiles = profiles_for(&input, &options.profiles, &set, std::iter::empty())?;
    let recorded = recorded_learned(&runtime)?;
    let mut commands: Vec<Vec<String>> = Vec::new();
    if relearn {
        commands.extend(recorded.iter().map(|r| r.command.clone()));
    }
    let named = current
        .learn
        .iter()
        .chain(&input.learn)
        .chain(profiles.iter().flat_map(|p| &p.learn));
    for command in named {
        let known = recorded.iter().any(|r| &r.command == command) || commands.contains(command);
        if !command.is_empty() && !known {
            commands.push(command.clone());
        }
    }
    Ok(LearnPlan {
        commands,
        environment: current.environment.into_iter().collect(),
    })
}

/// Whether a seal of `dir` may detect, from its closure, a profile with learn commands of
/// its own. Those are due too, but [`learn_commands`] sees only the profiles named or
/// selected by `language`: the caller finds the detected one (a dry run) and names it.
pub fn detection_may_learn(dir: &Path, options: &SealOptions) -> Result<bool> {
    let (_, _, input, set) = learning_input(dir, options)?;
    Ok(needs_detection(&input, &options.profiles, &set) && set.detected_may_learn())
}

/// What [`learn_commands`] reads: the runtime dir, its runtime.yml, the sealing input and
/// the profiles.
fn learning_input(
    dir: &Path,
    options: &SealOptions,
) -> Result<(DirFd, RuntimeConfig, RuntimeConfig, ProfileSet)> {
    let layout = Layout::new(dir);
    let runtime = DirFd::open(dir)?;
    let text = runtime
        .read_to_string(RUNTIME_YML)?
        .ok_or_else(|| Error::io(layout.runtime_yml(), std::io::ErrorKind::NotFound.into()))?;
    let current = RuntimeConfig::parse(&text, &layout.runtime_yml())?;
    let (input, _, _) = sealing_input(&runtime, &layout, &current)?;
    let set = ProfileSet::load(&options.profile_dirs)?;
    Ok((runtime, current, input, set))
}

/// See [`learn_commands`].
#[derive(Debug, Clone, Default)]
pub struct LearnPlan {
    pub commands: Vec<Vec<String>>,
    /// The runtime's environment, as its jobs get it.
    pub environment: Vec<(String, String)>,
}

/// What the manifest and the SBOM say of the runtime besides its files.
struct Record<'a> {
    profiles: &'a [Profile],
    subject: Subject<'a>,
}

/// Writes the new tree into `staging`, complete with its SBOM and manifest and flushed to
/// disk.
fn build(
    root: &Root,
    plan: &Plan,
    (runtime, staging): (&DirFd, &DirFd),
    previous: Option<Previous>,
    store: Option<&Store>,
    record: &Record,
    progress: &dyn Progress,
) -> Result<Materialized> {
    if plan.entries.contains_key(&sbom_path()) {
        return Err(Error::Unsealable {
            file: sbom_path(),
            message: "is where the sealed tree keeps its SBOM; a runtime cannot hold it".into(),
        });
    }
    let mut done = materialize(root, plan, staging, previous, store, progress)?;
    // Replaced trees go now rather than after the swap: unlinking their files changes the
    // ctime of those the new tree shares with them, and the manifest records ctimes.
    prune_replaced(runtime)?;
    write_sbom(root, staging, &mut done.manifest, &record.subject)?;
    stamp(staging, &mut done.manifest)?;
    done.manifest.profiles = record.profiles.iter().map(|p| p.name.clone()).collect();
    staging.write_atomic(MANIFEST_NAME, &done.manifest.to_json())?;
    // A power cut must not leave a swapped-in tree of empty files.
    staging.sync_filesystem()?;
    Ok(done)
}

/// Writes the SBOM of the tree `manifest` records into it, with the time its document says
/// it was created (so a second seal of the same files writes the same file), and records it.
fn write_sbom(
    root: &Root,
    staging: &DirFd,
    manifest: &mut Manifest,
    subject: &Subject,
) -> Result<()> {
    let (sbom, created) = crate::sbom::generate(staging, manifest, root, subject)?;
    staging.write_atomic(SBOM_NAME, &sbom)?;
    let file = staging
        .open_file(SBOM_NAME)?
        .ok_or_else(|| Error::io(staging.join(SBOM_NAME), std::io::ErrorKind::NotFound.into()))?;
    let io = |e: std::io::Error| Error::io(staging.join(SBOM_NAME), e);
    let time = rustix::fs::Timespec {
        tv_sec: created,
        tv_nsec: 0,
    };
    rustix::fs::futimens(
        &file,
        &rustix::fs::Timestamps {
            last_access: time,
            last_modification: time,
        },
    )
    .map_err(|e| io(e.into()))?;
    let meta = file.metadata().map_err(io)?;
    manifest.record_sbom(ManifestEntry {
        kind: ManifestKind::File {
            size: meta.len(),
            blake3: blake3::hash(&sbom).to_hex().to_string(),
            copy: None,
        },
        mode: std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        uid: SEALED_OWNER.0,
        gid: SEALED_OWNER.1,
        mtime: created,
        mtime_nsec: 0,
        source: sbom_path(),
    });
    Ok(())
}

/// A runtime dir's own name, for a runtime.yml that declares none.
fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The profile every runtime is sealed with (a UTF-8 locale).
const BASE_PROFILE: &str = "base";

/// The profiles a runtime is sealed and verified with: those `names` lists, else the one its
/// `language` selects, else the one whose interpreter is among `paths` (generic when none),
/// then the base userland it asks for, then [`BASE_PROFILE`].
pub fn profiles_for<'a>(
    config: &RuntimeConfig,
    names: &[String],
    set: &ProfileSet,
    paths: impl Iterator<Item = &'a Path>,
) -> Result<Vec<Profile>> {
    let mut profiles = if !names.is_empty() {
        names
            .iter()
            .map(|n| set.get(n))
            .collect::<std::result::Result<Vec<_>, _>>()?
    } else if let Some(profile) = config.language.as_deref().and_then(|l| set.for_language(l)) {
        vec![profile]
    } else if let Some(profile) = set.detect(paths) {
        vec![profile]
    } else {
        vec![set.get("generic")?]
    };
    if let Some(base) = config.base.as_deref() {
        profiles.push(set.get(base)?);
    }
    if !profiles.iter().any(|p| p.name == BASE_PROFILE) {
        profiles.push(set.get(BASE_PROFILE)?);
    }
    Ok(profiles)
}

fn needs_detection(config: &RuntimeConfig, names: &[String], set: &ProfileSet) -> bool {
    names.is_empty()
        && config
            .language
            .as_deref()
            .and_then(|l| set.for_language(l))
            .is_none()
}

/// The runtime.yml whose mounts define the closure, its file, and whether it is Joblet's
/// registry form to adopt: the current one while it names host or in-place sources; else
/// the copy kept at the first seal; else (all sources in `isolated/`, none kept) the
/// current one, adopted.
fn sealing_input(
    runtime: &DirFd,
    layout: &Layout,
    current: &RuntimeConfig,
) -> Result<(RuntimeConfig, PathBuf, bool)> {
    let file = layout.runtime_yml();
    if current.mounts.is_empty() {
        return Err(Error::Unsealable {
            file,
            message: "has no mounts: there is nothing to seal".into(),
        });
    }
    let sealed: Vec<usize> = current
        .mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| MountKind::of(&m.source) == MountKind::Sealed)
        .map(|(i, _)| i)
        .collect();
    if sealed.is_empty() {
        return Ok((current.clone(), file, false));
    }
    if sealed.len() != current.mounts.len() {
        return Err(Error::Unsealable {
            file,
            message: format!(
                "mixes sources in {ISOLATED_DIR}/ ({}) with host or in-place sources; seal \
                 from a runtime.yml with one kind only",
                sealed
                    .iter()
                    .map(|i| format!("mounts[{i}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let original = layout.original_yml();
    match runtime.read_to_string(ORIGINAL_YML)? {
        Some(text) => {
            let config = RuntimeConfig::parse(&text, &original)?;
            let adopting = config
                .mounts
                .iter()
                .any(|m| MountKind::of(&m.source) == MountKind::Sealed);
            Ok((config, original, adopting))
        }
        None => Ok((current.clone(), file, true)),
    }
}

/// A violation of the mounts kept for planning, numbered as in the runtime.yml.
fn renumber(violation: Violation, planned: &[(usize, PlanMount)]) -> Violation {
    let Some(rest) = violation.field.strip_prefix("mounts[") else {
        return violation;
    };
    let Some((index, tail)) = rest.split_once(']') else {
        return violation;
    };
    match index.parse::<usize>().ok().and_then(|k| planned.get(k)) {
        Some((i, _)) => Violation {
            field: format!("mounts[{i}]{tail}"),
            ..violation
        },
        None => violation,
    }
}

/// Removes the runtime in `dir`, refusing while a seal of it runs or a job runs on any of
/// its trees. The dir is first renamed to a hidden name beside it, so that a removal killed
/// half-way leaves no half-deleted runtime, only that hidden dir (which the next removal of
/// the same runtime, or `gc`, clears). The runtime's lock and its trees' are held from
/// before the rename to the end, which is how `gc` tells a live removal from a dead one.
pub fn remove_runtime(dir: &Path) -> Result<()> {
    let not_named = || Error::io(dir, std::io::ErrorKind::InvalidInput.into());
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(not_named)?;
    let parent = DirFd::open(dir.parent().ok_or_else(not_named)?)?;
    let trash = format!(".{name}{REMOVING_SUFFIX}");
    parent.remove_tree(&trash)?;
    let runtime = parent.open_dir(name)?;
    let _lock = runtime.lock(false)?;
    let Some(_unused) = lock_unused_trees(&runtime)? else {
        return Err(Error::InUse { path: dir.into() });
    };
    parent.rename(name, &trash)?;
    parent.sync()?;
    parent.remove_tree(&trash)
}

/// How the hidden name a removal renames a runtime dir to ends (`.NAME.removing`).
pub(crate) const REMOVING_SUFFIX: &str = ".removing";

/// The exclusive locks of every tree in `runtime`, the sealed one and those replaced, when
/// no job holds any of them (jobs hold their tree's shared); `None` when a job runs on one.
/// A name that is not a directory (a link the author planted) has no job on it.
pub(crate) fn lock_unused_trees(runtime: &DirFd) -> Result<Option<Vec<rustix::fd::OwnedFd>>> {
    let mut names = replaced_trees(runtime)?;
    names.push(ISOLATED_DIR.to_string());
    let mut held = Vec::new();
    for name in names {
        let Ok(tree) = runtime.open_dir(&name) else {
            continue;
        };
        match lock_if_unused(&tree)? {
            Some(lock) => held.push(lock),
            None => return Ok(None),
        }
    }
    Ok(Some(held))
}

/// Trees a re-seal replaced while jobs still ran on them, named by this prefix and the
/// tree's inode number, kept until no job holds its shared lock.
const RETIRED_PREFIX: &str = "isolated.retired-";

/// Removes each replaced tree that no job uses any more (a job holds a shared `flock` on
/// its tree for its whole life). The tree before last, still in use, moves to a retired
/// name, so the tree the coming swap replaces can take its place.
fn prune_replaced(runtime: &DirFd) -> Result<()> {
    for (name, _unused) in unused_replaced(runtime)? {
        runtime.remove_tree(&name)?;
    }
    if runtime.exists(PREVIOUS_DIR)? {
        let tree = runtime.open_dir(PREVIOUS_DIR)?;
        let inode = rustix::fs::fstat(tree.fd())
            .map_err(|e| Error::io(tree.path(), e.into()))?
            .st_ino;
        runtime.rename(PREVIOUS_DIR, &format!("{RETIRED_PREFIX}{inode}"))?;
    }
    Ok(())
}

/// The replaced trees in `runtime` that no job uses, each with the exclusive lock that
/// keeps jobs off it until it is removed (none for a name that is not a directory: a link
/// the author planted, on which no job runs).
pub(crate) fn unused_replaced(
    runtime: &DirFd,
) -> Result<Vec<(String, Option<rustix::fd::OwnedFd>)>> {
    let mut unused = Vec::new();
    for name in replaced_trees(runtime)? {
        let Ok(tree) = runtime.open_dir(&name) else {
            unused.push((name, None));
            continue;
        };
        if let Some(held) = lock_if_unused(&tree)? {
            unused.push((name, Some(held)));
        }
    }
    Ok(unused)
}

/// The trees earlier seals replaced that are still in the runtime dir.
fn replaced_trees(runtime: &DirFd) -> Result<Vec<String>> {
    let mut names = runtime.names_starting(RETIRED_PREFIX)?;
    names.push(PREVIOUS_DIR.to_string());
    let mut present = Vec::new();
    for name in names {
        if runtime.exists(&name)? {
            present.push(name);
        }
    }
    Ok(present)
}

/// The exclusive lock of `tree` if no job holds it (jobs hold it shared), else `None`.
fn lock_if_unused(tree: &DirFd) -> Result<Option<rustix::fd::OwnedFd>> {
    match tree.lock(false) {
        Ok(held) => Ok(Some(held)),
        Err(Error::Busy { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Puts the staged tree in place with one atomic rename (an exchange when a tree exists).
/// The replaced tree moves to `isolated.prev/` rather than being deleted at once, so jobs
/// still running on it keep their files; [`prune_replaced`] removes it once none does.
fn swap_in(runtime: &DirFd) -> Result<()> {
    if runtime.exists(ISOLATED_DIR)? {
        runtime.exchange(STAGING_DIR, ISOLATED_DIR)?;
        runtime.sync()?;
        runtime.rename(STAGING_DIR, PREVIOUS_DIR)
    } else {
        runtime.rename(STAGING_DIR, ISOLATED_DIR)?;
        runtime.sync()
    }
}

/// What an interrupted seal left behind; never part of either runtime.
fn remove_leftovers(runtime: &DirFd) -> Result<()> {
    for name in leftovers(runtime)? {
        runtime.remove_tree(&name)?;
    }
    Ok(())
}

/// The names in `runtime` that only a seal writes, and only while it holds the runtime's
/// lock: whoever holds it now finds there what a seal that died left.
pub(crate) fn leftovers(runtime: &DirFd) -> Result<Vec<String>> {
    let mut present = Vec::new();
    for name in [
        STAGING_DIR.to_string(),
        temp_name(RUNTIME_YML),
        temp_name(ORIGINAL_YML),
    ] {
        if runtime.exists(&name)? {
            present.push(name);
        }
    }
    Ok(present)
}
