//! The static closure check: inside a sealed tree, with no cache and nothing of the host,
//! every symlink, ELF interpreter, needed library and script interpreter must resolve.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::loader::LibrarySearch;
use crate::root::Root;
use crate::scan::{scan, FileKind};

/// Something that would fail inside the job, named by its path in the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub problem: String,
}

/// Checks the tree at `tree` as a job root. `ld_library_path` is the runtime's own; paths in
/// `known_unmet` were already broken on the source (a dangling link, a library or
/// interpreter not installed) and are not reported.
pub fn check_tree(
    tree: &Path,
    ld_library_path: &[String],
    known_unmet: &BTreeSet<PathBuf>,
) -> Result<Vec<Problem>> {
    let root = Root::new(tree);
    let search = LibrarySearch {
        root: root.clone(),
        cache: None,
        ld_library_path: ld_library_path.to_vec(),
    };
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for item in walkdir::WalkDir::new(tree)
        .follow_links(false)
        .sort_by_file_name()
    {
        let item = item.map_err(|e| {
            Error::io(
                e.path().map(Path::to_path_buf).unwrap_or_default(),
                e.into(),
            )
        })?;
        let job = Path::new("/").join(item.path().strip_prefix(tree).expect("under tree"));
        let meta = item
            .metadata()
            .map_err(|e| Error::io(item.path(), e.into()))?;
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            if let Some(problem) = check_link(&root, &job, known_unmet) {
                problems.push(Problem { path: job, problem });
            }
        } else if file_type.is_file() {
            if meta.mode() & 0o6000 != 0 {
                problems.push(Problem {
                    path: job.clone(),
                    problem: "has the setuid or setgid bit".into(),
                });
            }
            files.push((job, meta.mode() & 0o111 != 0));
        } else if !file_type.is_dir() {
            problems.push(Problem {
                path: job,
                problem: "is a device, fifo or socket".into(),
            });
        }
    }
    let names: BTreeSet<&std::ffi::OsStr> =
        files.iter().filter_map(|(f, _)| f.file_name()).collect();
    let file_problems: Vec<Vec<Problem>> = files
        .par_iter()
        .map(|(job, executable)| check_file(&root, &search, &names, job, *executable))
        .collect::<Result<_>>()?;
    problems.extend(
        file_problems
            .into_iter()
            .flatten()
            .filter(|p| !known_unmet.contains(&p.path)),
    );
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(problems)
}

fn check_link(root: &Root, job: &Path, known_unmet: &BTreeSet<PathBuf>) -> Option<String> {
    let text = root.read_link(job).unwrap_or_default();
    if climbs_above(job.parent().unwrap_or(Path::new("/")), &text) {
        return Some(format!(
            "symlink climbs out of the tree with `..` ({})",
            text.display()
        ));
    }
    // Every link of the tree passes here, so the lexical check above also covers the links
    // a resolution passes through.
    match root.resolve(job) {
        Ok(_) => None,
        Err(Error::SymlinkLoop { limit, .. }) => {
            Some(format!("symlink loop (more than {limit} links)"))
        }
        Err(Error::Missing { .. } | Error::NotADirectory { .. }) if known_unmet.contains(job) => {
            None
        }
        Err(e) => Some(format!(
            "symlink to {} does not resolve in the tree ({e})",
            root.read_link(job).unwrap_or_default().display()
        )),
    }
}

fn check_file(
    root: &Root,
    search: &LibrarySearch,
    loaded_earlier: &BTreeSet<&std::ffi::OsStr>,
    job: &Path,
    executable: bool,
) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let mut report = |problem: String| {
        problems.push(Problem {
            path: job.to_path_buf(),
            problem,
        })
    };
    match scan(root, job, executable)? {
        FileKind::Elf(info) => {
            if let Some(interpreter) = &info.interpreter {
                if !root.resolves_to_file(Path::new(interpreter)) {
                    report(format!("ELF interpreter {interpreter} is not in the tree"));
                }
            }
            for name in &info.needed {
                let found = search.find(name, job, &info).is_some()
                    || loaded_earlier.contains(std::ffi::OsStr::new(name));
                if !found {
                    report(format!(
                        "needs {name}, which the loader would not find in the tree"
                    ));
                }
            }
        }
        FileKind::Script { interpreter, .. } => {
            if !root.resolves_to_file(Path::new(&interpreter)) {
                report(format!(
                    "script interpreter {interpreter} is not in the tree"
                ));
            }
        }
        FileKind::BadElf(_) | FileKind::Other => {}
    }
    Ok(problems)
}

/// Whether the relative link text `target`, read in `dir`, climbs above `/` on its own.
fn climbs_above(dir: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = dir.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_link_climbing_above_the_root_is_seen() {
        assert!(climbs_above(
            Path::new("/usr/lib"),
            Path::new("../../../../etc")
        ));
        assert!(climbs_above(Path::new("/"), Path::new("../x")));
        assert!(!climbs_above(Path::new("/usr/lib"), Path::new("../../etc")));
        assert!(!climbs_above(Path::new("/usr/lib"), Path::new("/etc")));
        assert!(!climbs_above(Path::new("/usr/lib"), Path::new("x/../../y")));
    }
}
