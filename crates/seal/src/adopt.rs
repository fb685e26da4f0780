//! Joblet's runtime.yml forms, read as inputs to a seal.
//!
//! - **Host form** (runseal's own, and Joblet's first): sources are host paths
//!   (`usr/lib/jvm/x` or `/usr/lib/jvm/x`).
//! - **In-place form** (Joblet's `java-17`): a relative source whose first component is in
//!   the runtime dir (`jdk/lib`, `bin`) is that path of the runtime dir, read like a host path.
//! - **Registry form** (Joblet's registry setups): the setup script already copied the
//!   system into `isolated/` and mounts `isolated/X`. `seal` adopts it: the closure is
//!   computed on what is there, as the job would see it, and where the copy left gaps (a
//!   library no copied dir holds, a link into a dir it did not copy, a file the profile
//!   needs) the host's file at that path completes it.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use runseal_closure::{plan, EntryKind, FileKind, Plan, PlanInput, PlanMount, Profile, Root};
use runseal_spec::{reserved_target, Mount, MountKind, RuntimeConfig};

/// The mounts of `input` to plan, each with its index in `input.mounts`, and a note for
/// each one left out: a target the sandbox makes for every job (Joblet mounts `/tmp` and
/// `/proc`), or, when adopting, a copy the setup script never made.
pub(crate) fn plan_mounts(
    root: &Root,
    dir: &Path,
    input: &RuntimeConfig,
    notes: &mut Vec<String>,
) -> Vec<(usize, PlanMount)> {
    let mut mounts = Vec::new();
    for (i, mount) in input.mounts.iter().enumerate() {
        if let Some(place) = reserved_target(&mount.target) {
            notes.push(format!(
                "mounts[{i}] (`{}` on `{}`) dropped: the sandbox makes {place} for every job",
                mount.source, mount.target
            ));
            continue;
        }
        let source = source_path(root, dir, mount);
        if MountKind::of(&mount.source) == MountKind::Sealed && root.resolve(&source).is_err() {
            notes.push(format!(
                "mounts[{i}] (`{}`) dropped: the setup script made no {}",
                mount.source,
                source.display()
            ));
            continue;
        }
        mounts.push((
            i,
            PlanMount {
                source,
                target: PathBuf::from(&mount.target),
            },
        ));
    }
    mounts
}

/// Where the source of `mount` is on `root`: inside the runtime dir for a sealed source or
/// a relative one whose first component the runtime dir holds, else on the host.
fn source_path(root: &Root, dir: &Path, mount: &Mount) -> PathBuf {
    let source = Path::new(&mount.source);
    let in_place = source.is_relative()
        && match source.components().next() {
            Some(Component::Normal(first)) => root.symlink_metadata(&dir.join(first)).is_ok(),
            _ => false,
        };
    if in_place || MountKind::of(&mount.source) == MountKind::Sealed {
        dir.join(source)
    } else {
        Path::new("/").join(source)
    }
}

/// The writable mounts of `input` that the sealed runtime.yml keeps, as per-job
/// copy-on-write layers of the sealed tree, and a note for one whose target the tree lacks.
pub(crate) fn copy_on_write_mounts(
    input: &RuntimeConfig,
    planned: &[(usize, PlanMount)],
    plan: &Plan,
    notes: &mut Vec<String>,
) -> Vec<Mount> {
    let mut out = Vec::new();
    for (i, mount) in planned {
        if input.mounts[*i].readonly != Some(false) {
            continue;
        }
        match plan.entries.get(&mount.target).map(|e| &e.kind) {
            Some(EntryKind::Dir) => {
                out.push(Mount::copy_on_write(&mount.target.to_string_lossy()));
                notes.push(format!(
                    "mounts[{i}] on `{}` is writable: each job gets its own copy-on-write layer \
                     of it",
                    mount.target.display()
                ));
            }
            _ => notes.push(format!(
                "mounts[{i}] on `{}` is writable but not a directory in the sealed tree: \
                 sealed read-only",
                mount.target.display()
            )),
        }
    }
    out
}

/// `profiles` with every path optional: an adopted copy may lack what a profile needs, and
/// [`complete_from_host`] brings it from the host instead of failing the plan.
pub(crate) fn lenient(profiles: &[Profile]) -> Vec<Profile> {
    let mut out = profiles.to_vec();
    for item in out.iter_mut().flat_map(|p| p.include.iter_mut()) {
        item.optional = true;
    }
    out
}

/// Completes the plan of an adopted tree from `root` (the host): for each gap, the closure
/// of the host's path there joins the plan where the tree has nothing, or replaces the
/// copy whose needs were unmet. A gap the host cannot fill stays a note.
pub(crate) fn complete_from_host(
    root: &Root,
    mut adopted: Plan,
    profiles: &[Profile],
    input: &PlanInput,
) -> Plan {
    let mut unmet: BTreeSet<PathBuf> = adopted
        .entries
        .iter()
        .filter(|(path, e)| {
            adopted.unmet_on_source.contains(&e.source) || adopted.unmet_on_source.contains(*path)
        })
        .map(|(path, _)| path.clone())
        .collect();
    // Each gap is a path the job needs: a copy whose needs were unmet (the host's file
    // there is whole), the interpreter of a copied script, a link's missing target, a
    // file a profile names.
    let mut gaps: BTreeSet<(PathBuf, bool)> = BTreeSet::new();
    let mut replaced = Vec::new();
    for path in &unmet {
        let kind = adopted
            .entries
            .get(path)
            .and_then(|e| runseal_closure::scan(root, &e.source, true).ok());
        match kind {
            Some(FileKind::Script { interpreter, .. }) => {
                gaps.insert((interpreter.into(), true));
            }
            // The loader is a gap of its own: the host's program has it at the same path,
            // which the copy may hold as a dir of its own (a real `lib64` where the host's
            // links to `usr/lib64`), where nothing else would put it.
            Some(FileKind::Elf(info)) => {
                if let Some(loader) = info.interpreter {
                    gaps.insert((loader.into(), true));
                }
                gaps.insert((path.clone(), true));
            }
            _ => {
                gaps.insert((path.clone(), true));
            }
        }
    }
    for (path, entry) in &adopted.entries {
        if let EntryKind::Symlink {
            target,
            dangling: true,
        } = &entry.kind
        {
            let wanted = normalize(&path.parent().unwrap_or(Path::new("/")).join(target));
            // A target the host reaches only through a linked dir (`/lib` -> `usr/lib`)
            // where the copy has a real one: the link itself becomes the host's file.
            if !parent_is_real(root, &wanted) && root.resolve(path).is_ok() {
                replaced.push(path.clone());
            } else {
                gaps.insert((wanted, true));
            }
        }
    }
    for path in replaced {
        unmet.insert(path.clone());
        gaps.insert((path, true));
    }
    for item in profiles.iter().flat_map(|p| &p.include) {
        let path = PathBuf::from(&item.path);
        if !Profile::is_templated(&item.path) && !adopted.entries.contains_key(&path) {
            gaps.insert((path, !item.optional));
        }
    }
    for (gap, needed) in gaps {
        let gap = normalize(&gap);
        if adopted.entries.contains_key(&gap) && !unmet.contains(&gap) {
            continue;
        }
        let Ok(resolution) = root.resolve(&gap) else {
            if needed {
                adopted.notes.push(format!(
                    "{}: missing in the copy and on the host, not completed",
                    gap.display()
                ));
            }
            continue;
        };
        // Where the host reaches it through a linked dir (`/bin` -> `usr/bin`), the copy's
        // own dir stays and the host's file is placed at the path the job uses.
        let is_link = matches!(
            adopted.entries.get(&gap).map(|e| &e.kind),
            Some(EntryKind::Symlink { .. })
        );
        let source = if parent_is_real(root, &gap) && !is_link {
            gap.clone()
        } else {
            resolution.path
        };
        let host = plan(
            root,
            &PlanInput {
                mounts: vec![PlanMount {
                    source,
                    target: gap.clone(),
                }],
                environment: input.environment,
                profiles: &[],
                allow: input.allow,
                allow_untrusted: input.allow_untrusted,
                learned: &[],
            },
        );
        match host {
            Ok(host) => merge(&mut adopted, host, &unmet, &gap),
            Err(e) => adopted.notes.push(format!(
                "{}: not completed from the host: {e}",
                gap.display()
            )),
        }
    }
    settle_links(root, &mut adopted);
    // The job's paths of what stays unmet, as `verify` looks them up (the plan names the
    // copies by their place in the runtime dir).
    let unmet_jobs: Vec<PathBuf> = adopted
        .entries
        .iter()
        .filter(|(_, e)| adopted.unmet_on_source.contains(&e.source))
        .map(|(path, _)| path.clone())
        .collect();
    adopted.unmet_on_source.extend(unmet_jobs);
    adopted
}

/// Whether the host reaches the dir holding `path` through no symlink.
fn parent_is_real(root: &Root, path: &Path) -> bool {
    path.parent()
        .and_then(|p| root.resolve(p).ok())
        .is_none_or(|r| Some(r.path.as_path()) == path.parent())
}

/// Adds what `host` holds and `adopted` lacks (or holds as a copy with unmet needs) where
/// its parent is a directory of `adopted`.
fn merge(adopted: &mut Plan, host: Plan, unmet: &BTreeSet<PathBuf>, gap: &Path) {
    let mut added = 0u64;
    for (path, entry) in host.entries {
        let replace = unmet.contains(&path);
        if adopted.entries.contains_key(&path) && !replace {
            continue;
        }
        let parent_is_dir = path.parent().is_none_or(|parent| {
            parent == Path::new("/")
                || adopted
                    .entries
                    .get(parent)
                    .is_some_and(|e| e.kind == EntryKind::Dir)
        });
        if !parent_is_dir {
            adopted.notes.push(format!(
                "{}: not completed from the host: the copy has no directory {}",
                path.display(),
                path.parent().unwrap_or(Path::new("/")).display()
            ));
            continue;
        }
        if let Some(old) = adopted.entries.remove(&path) {
            adopted.unmet_on_source.remove(&old.source);
            if old.kind == EntryKind::File {
                adopted.files -= 1;
                adopted.bytes -= old.size;
            }
        }
        if entry.kind == EntryKind::File {
            adopted.files += 1;
            adopted.bytes += entry.size;
        }
        adopted.entries.insert(path, entry);
        added += 1;
    }
    adopted.unmet_on_source.extend(host.unmet_on_source);
    adopted.inclusions.extend(host.inclusions);
    adopted.notes.extend(host.notes);
    if added > 0 {
        adopted.notes.push(format!(
            "{}: completed from the host ({added} entries the copy lacked)",
            gap.display()
        ));
    }
}

/// A dangling link whose target the completion brought in is a link like any other, which
/// `verify` checks.
/// A link the host brought that leads through a dir the host links elsewhere (`/lib` ->
/// `usr/lib`) while the copy has a real dir there points at the host's real path instead.
fn settle_links(root: &Root, plan: &mut Plan) {
    let present: BTreeSet<PathBuf> = plan.entries.keys().cloned().collect();
    for (path, entry) in plan.entries.iter_mut() {
        if let EntryKind::Symlink { target, dangling } = &mut entry.kind {
            let wanted = normalize(&path.parent().unwrap_or(Path::new("/")).join(&*target));
            if present.contains(&wanted) {
                *dangling = false;
                continue;
            }
            if let Ok(real) = root.resolve(&wanted) {
                if present.contains(&real.path) {
                    *target = real.path;
                    *dangling = false;
                }
            }
        }
    }
}

/// `path` with `.` and `..` folded lexically (a link target as the job reads it, `..` at
/// the root staying there).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_fold_lexically_inside_the_root() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), Path::new("/a/c/d"));
        assert_eq!(normalize(Path::new("/../../etc")), Path::new("/etc"));
    }
}
