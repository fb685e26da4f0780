//! Finding a runtime dir from what a user types: a path, `name`, `name@version`,
//! `lang:version` or `lang-version`.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::config::{RuntimeConfig, RUNTIME_YML};
use crate::error::{Error, Result};

/// What a runtimes root holds about one runtime, read without failing on a broken file.
#[derive(Debug, Clone)]
pub struct RuntimeDir {
    pub dir: PathBuf,
    /// The top-level directory's name under the root, which names the runtime too.
    pub dir_name: String,
    pub name: String,
    pub language: Option<String>,
    pub version: Option<String>,
}

/// A parsed runtime argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSpec {
    Path(PathBuf),
    Name(String),
    NameVersion(String, String),
    LangVersion(String, String),
}

impl RuntimeSpec {
    pub fn parse(text: &str) -> Self {
        if text.contains('/') || text == "." || text == ".." {
            RuntimeSpec::Path(PathBuf::from(text))
        } else if let Some((name, version)) = text.split_once('@') {
            RuntimeSpec::NameVersion(name.into(), version.into())
        } else if let Some((lang, version)) = text.split_once(':') {
            RuntimeSpec::LangVersion(lang.into(), version.into())
        } else {
            RuntimeSpec::Name(text.into())
        }
    }
}

/// Every runtime under `root`: `<root>/<name>/runtime.yml` and `<root>/<name>/<version>/runtime.yml`.
pub fn list_runtimes(root: &Path) -> Result<Vec<RuntimeDir>> {
    let mut found = Vec::new();
    for top in sorted_subdirs(root)? {
        let top_name = file_name(&top);
        if top.join(RUNTIME_YML).is_file() {
            found.push(describe(&top, &top_name, None));
        }
        for nested in sorted_subdirs(&top)? {
            if nested.join(RUNTIME_YML).is_file() {
                let version = file_name(&nested);
                found.push(describe(&nested, &top_name, Some(version)));
            }
        }
    }
    Ok(found)
}

/// The runtime dir `spec` names under `root`; the highest matching version wins.
pub fn resolve(root: &Path, spec: &str) -> Result<PathBuf> {
    let parsed = RuntimeSpec::parse(spec);
    if let RuntimeSpec::Path(dir) = parsed {
        return if dir.join(RUNTIME_YML).is_file() {
            Ok(dir)
        } else {
            Err(Error::NotARuntime { path: dir })
        };
    }
    let all = list_runtimes(root)?;
    let mut matches: Vec<&RuntimeDir> = all.iter().filter(|r| r.matches(&parsed)).collect();
    if matches.is_empty() {
        if let RuntimeSpec::Name(text) = &parsed {
            if let Some((lang, version)) = text.rsplit_once('-') {
                let dashed = RuntimeSpec::LangVersion(lang.into(), version.into());
                matches = all.iter().filter(|r| r.matches(&dashed)).collect();
            }
        }
    }
    // The dirs under the root are the operator's; a runtime.yml's `name` is its author's.
    // Where a dir carries the name asked for, another runtime declaring that name cannot
    // take its place.
    if let RuntimeSpec::Name(name) | RuntimeSpec::NameVersion(name, _) = &parsed {
        if matches.iter().any(|r| r.dir_name == *name) {
            matches.retain(|r| r.dir_name == *name);
        }
    }
    matches.sort_by(|a, b| compare_versions(b.version_str(), a.version_str()));
    match matches.as_slice() {
        [] => Err(Error::UnknownSpec {
            spec: spec.into(),
            root: root.into(),
            available: if all.is_empty() {
                "none".into()
            } else {
                all.iter()
                    .map(RuntimeDir::label)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
        [best, rest @ ..] => {
            let tied: Vec<&&RuntimeDir> = rest
                .iter()
                .filter(|r| {
                    compare_versions(r.version_str(), best.version_str()) == Ordering::Equal
                })
                .collect();
            if tied.is_empty() {
                Ok(best.dir.clone())
            } else {
                let mut labels = vec![format!("{} ({})", best.label(), best.dir.display())];
                labels.extend(
                    tied.iter()
                        .map(|r| format!("{} ({})", r.label(), r.dir.display())),
                );
                Err(Error::AmbiguousSpec {
                    spec: spec.into(),
                    root: root.into(),
                    candidates: labels.join(", "),
                })
            }
        }
    }
}

impl RuntimeDir {
    fn version_str(&self) -> &str {
        self.version.as_deref().unwrap_or("")
    }

    fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{}@{v}", self.name),
            None => self.name.clone(),
        }
    }

    fn is_named(&self, name: &str) -> bool {
        self.name == name || self.dir_name == name
    }

    fn matches(&self, spec: &RuntimeSpec) -> bool {
        match spec {
            RuntimeSpec::Path(_) => false,
            RuntimeSpec::Name(name) => self.is_named(name),
            RuntimeSpec::NameVersion(name, version) => {
                self.is_named(name) && version_matches(self.version_str(), version)
            }
            RuntimeSpec::LangVersion(lang, version) => {
                self.language.as_deref() == Some(lang.as_str())
                    && version_matches(self.version_str(), version)
            }
        }
    }
}

/// `17` matches `17` and `17.0.15`, not `170`.
fn version_matches(have: &str, want: &str) -> bool {
    have == want || have.strip_prefix(want).is_some_and(|r| r.starts_with('.'))
}

/// Orders versions by their numeric parts (`17.0.9` < `17.0.15`), text parts compared as text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

fn describe(dir: &Path, dir_name: &str, dir_version: Option<String>) -> RuntimeDir {
    let config = RuntimeConfig::load(&dir.join(RUNTIME_YML)).ok();
    let config = config.as_ref();
    RuntimeDir {
        dir: dir.to_path_buf(),
        dir_name: dir_name.to_string(),
        name: config
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| dir_name.to_string()),
        language: config.and_then(|c| c.language.clone()),
        version: config.and_then(|c| c.version.clone()).or(dir_version),
    }
}

fn sorted_subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(root: &Path, rel: &str, yaml: &str) {
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(RUNTIME_YML), yaml).unwrap();
    }

    fn fixture() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        runtime(
            t.path(),
            "openjdk-17",
            "name: openjdk-17\nlanguage: java\nversion: 17.0.9\n",
        );
        runtime(
            t.path(),
            "openjdk-17b",
            "name: openjdk-17b\nlanguage: java\nversion: 17.0.15\n",
        );
        runtime(
            t.path(),
            "openjdk-21",
            "name: openjdk-21\nlanguage: java\nversion: 21.0.1\n",
        );
        runtime(
            t.path(),
            "python/3.11",
            "name: python\nlanguage: python\nversion: \"3.11\"\n",
        );
        runtime(
            t.path(),
            "python/3.9",
            "name: python\nlanguage: python\nversion: \"3.9\"\n",
        );
        runtime(t.path(), "broken", "name: [\n");
        t
    }

    fn pick(root: &Path, spec: &str) -> String {
        let dir = resolve(root, spec).unwrap();
        dir.strip_prefix(root).unwrap().display().to_string()
    }

    #[test]
    fn every_spec_form_resolves_to_the_highest_match() {
        let t = fixture();
        let root = t.path();
        assert_eq!(pick(root, "openjdk-17"), "openjdk-17");
        assert_eq!(pick(root, "java:17"), "openjdk-17b");
        assert_eq!(pick(root, "java:21"), "openjdk-21");
        assert_eq!(pick(root, "java-17"), "openjdk-17b");
        assert_eq!(pick(root, "python"), "python/3.11");
        assert_eq!(pick(root, "python@3.9"), "python/3.9");
        assert_eq!(pick(root, "python:3"), "python/3.11");
        assert_eq!(pick(root, "broken"), "broken");
        runtime(root, "dir-name", "name: other-name\n");
        assert_eq!(pick(root, "dir-name"), "dir-name");
        assert_eq!(pick(root, "other-name"), "dir-name");
    }

    #[test]
    fn unknown_and_ambiguous_specs_list_what_exists() {
        let t = fixture();
        let err = resolve(t.path(), "java:8").unwrap_err().to_string();
        assert!(
            err.contains("openjdk-21@21.0.1") && err.contains("python@3.9"),
            "{err}"
        );
        runtime(
            t.path(),
            "other-jdk",
            "name: other-jdk\nlanguage: java\nversion: 21.0.1\n",
        );
        let err = resolve(t.path(), "java:21").unwrap_err().to_string();
        assert!(
            err.contains("ambiguous") && err.contains("other-jdk"),
            "{err}"
        );
    }

    #[test]
    fn a_runtime_declaring_another_dirs_name_does_not_take_its_place() {
        let t = fixture();
        // A runtime author's `name` and a higher version do not outrank the operator's dir.
        runtime(
            t.path(),
            "aaa-squat",
            "name: openjdk-21\nlanguage: java\nversion: 21.0.99\n",
        );
        let resolve = |spec: &str| resolve(t.path(), spec).unwrap();
        assert_eq!(resolve("openjdk-21"), t.path().join("openjdk-21"));
        assert_eq!(resolve("openjdk-21@21"), t.path().join("openjdk-21"));
        // A name no dir carries still finds the runtime that declares it.
        assert_eq!(resolve("aaa-squat"), t.path().join("aaa-squat"));
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("17.0.9", "17.0.15"), Ordering::Less);
        assert_eq!(compare_versions("3.11", "3.9"), Ordering::Greater);
        assert_eq!(compare_versions("17", "17.0"), Ordering::Less);
        assert!(version_matches("17.0.1", "17"));
        assert!(!version_matches("170", "17"));
    }
}
