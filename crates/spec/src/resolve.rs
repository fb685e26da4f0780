//! Finding a runtime dir from what a user types, as Joblet finds it: a path, an exact name
//! (a dir under the root, a nested `<name>/<version>/` dir, or a declared `name`), then
//! `name@version` (`@latest` for the highest), `lang:version` with Joblet's `+tag`s
//! (`python:3.11+ml`), `name+tag` and `lang-version`.

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
    /// The nested dir's name in the `<name>/<version>/` layout (`3.11`, or Joblet's older
    /// `java/java-17`).
    pub leaf: Option<String>,
    pub name: String,
    pub language: Option<String>,
    /// The version as runseal reads it (a `${VAR:-default}` left by a setup script is its
    /// default), else the nested dir's name.
    pub version: Option<String>,
}

/// A parsed runtime argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSpec {
    Path(PathBuf),
    Name(String),
    /// `name@version`; `latest` asks for the highest.
    NameVersion(String, String),
    /// `lang:version`, with Joblet's `+tag`s (`python:3.11+ml+gpu`).
    LangVersion(String, String, Vec<String>),
}

/// The version that asks for the highest one, as in Joblet's `python-3.11@latest`.
const LATEST: &str = "latest";

impl RuntimeSpec {
    pub fn parse(text: &str) -> Self {
        if text.contains('/') || text == "." || text == ".." {
            RuntimeSpec::Path(PathBuf::from(text))
        } else if let Some((name, version)) = text.split_once('@') {
            RuntimeSpec::NameVersion(name.into(), version.into())
        } else if let Some((lang, rest)) = text.split_once(':') {
            let mut parts = rest.split('+');
            let version = parts.next().unwrap_or_default().to_string();
            RuntimeSpec::LangVersion(lang.into(), version, parts.map(str::to_string).collect())
        } else if let Some((base, tags)) = text.split_once('+') {
            // Joblet's `python-3.11-ml+gpu`: python 3.11 with the tags ml and gpu.
            match NameParts::of(base) {
                Some(parts) => {
                    let mut all = parts.tags;
                    all.extend(tags.split('+').map(str::to_string));
                    RuntimeSpec::LangVersion(parts.lang, parts.version, all)
                }
                None => RuntimeSpec::Name(text.into()),
            }
        } else {
            RuntimeSpec::Name(text.into())
        }
    }
}

/// A name of Joblet's shape `lang-version[-tag...]` (`python-3.11-ml`, `openjdk-21`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NameParts {
    lang: String,
    version: String,
    tags: Vec<String>,
}

impl NameParts {
    fn of(name: &str) -> Option<Self> {
        let mut parts = name.split('-');
        let lang = parts
            .next()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))?;
        let version = parts
            .next()
            .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))?;
        let tags: Vec<String> = parts.map(str::to_string).collect();
        if tags.iter().any(String::is_empty) {
            return None;
        }
        Some(NameParts {
            lang: lang.into(),
            version: version.into(),
            tags,
        })
    }
}

/// The language Joblet's names stand for: `java:17` finds `openjdk-17`, `temurin-17`, ...
pub fn canonical_language(lang: &str) -> &str {
    match lang {
        "openjdk" | "jdk" | "graalvmjdk" | "graalvm" | "temurin" | "java" => "java",
        "nodejs" | "node" => "node",
        "python3" | "python" => "python",
        other => other,
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
                let leaf = file_name(&nested);
                found.push(describe(&nested, &top_name, Some(leaf)));
            }
        }
    }
    Ok(found)
}

/// The runtime dir `spec` names under `root`. An exact name comes first, whatever the text
/// looks like (`python:3.11` may be a dir's name); among several matches the highest
/// version wins, and a tie is an error, never the first found.
pub fn resolve(root: &Path, spec: &str) -> Result<PathBuf> {
    let parsed = RuntimeSpec::parse(spec);
    if let RuntimeSpec::Path(dir) = parsed {
        return if dir.join(RUNTIME_YML).is_file() {
            Ok(dir)
        } else {
            Err(Error::NotARuntime { path: dir })
        };
    }
    if let Some(dir) = only_runtime_in_dir(root, spec) {
        return Ok(dir);
    }
    let all = list_runtimes(root)?;
    let mut matches = named(&all, spec);
    if matches.is_empty() {
        matches = match &parsed {
            RuntimeSpec::Path(_) => Vec::new(),
            RuntimeSpec::Name(text) => match NameParts::of(text) {
                Some(p) => by_language(&all, &p.lang, &p.version, &p.tags),
                None => Vec::new(),
            },
            RuntimeSpec::NameVersion(name, version) => named(&all, name)
                .into_iter()
                .filter_map(|(r, _)| r.has_version(version).map(|v| (r, v)))
                .collect(),
            RuntimeSpec::LangVersion(lang, version, tags) => {
                let mut dashed = format!("{lang}-{version}");
                for tag in tags {
                    dashed = format!("{dashed}-{tag}");
                }
                // Joblet maps `python:3.11` to the dir `python-3.11`, whose own `version`
                // is the package's release (`1.3.4`), not the language's.
                match named(&all, &dashed) {
                    found if !found.is_empty() => found,
                    _ => by_language(&all, lang, version, tags),
                }
            }
        };
    }
    pick(root, spec, &all, matches)
}

/// `<root>/<name>` when it is a runtime dir with no runtime nested in it: the one runtime
/// an exact dir name finds ([`named`]'s first tier), found without reading every runtime
/// under the root, as each job start on a root of many runtimes would.
fn only_runtime_in_dir(root: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.starts_with('.') {
        return None;
    }
    let dir = root.join(name);
    let real_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
    if !real_dir || !dir.join(RUNTIME_YML).is_file() {
        return None;
    }
    let nested = sorted_subdirs(&dir)
        .ok()?
        .iter()
        .any(|sub| sub.join(RUNTIME_YML).is_file());
    (!nested).then_some(dir)
}

/// The runtimes called `name`: by the operator's dir of that name if there is one (a
/// runtime.yml's `name` is its author's and cannot take that dir's place), else by a nested
/// dir of that name, else by the `name` they declare. Each with its version.
fn named<'a>(all: &'a [RuntimeDir], name: &str) -> Vec<(&'a RuntimeDir, String)> {
    let tiers: [&dyn Fn(&RuntimeDir) -> bool; 3] = [
        &|r| r.dir_name == name,
        &|r| r.leaf.as_deref() == Some(name),
        &|r| r.name == name,
    ];
    tiers
        .iter()
        .map(|tier| {
            all.iter()
                .filter(|r| tier(r))
                .map(|r| (r, r.version_str().to_string()))
                .collect::<Vec<_>>()
        })
        .find(|found| !found.is_empty())
        .unwrap_or_default()
}

/// Runtimes of language `lang` (declared, else inferred from the name as Joblet does)
/// whose version, or the version in their name, is `version` or starts with `version.`,
/// carrying every tag asked for; those carrying exactly those tags first.
fn by_language<'a>(
    all: &'a [RuntimeDir],
    lang: &str,
    version: &str,
    tags: &[String],
) -> Vec<(&'a RuntimeDir, String)> {
    let lang = canonical_language(lang);
    let found: Vec<(&RuntimeDir, String, bool)> = all
        .iter()
        .filter(|r| r.language_is(lang))
        .filter_map(|r| {
            let have = r.tags();
            if !tags.iter().all(|t| have.contains(t)) {
                return None;
            }
            let exact = have.len() == tags.len();
            r.language_version(version).map(|v| (r, v, exact))
        })
        .collect();
    let any_exact = found.iter().any(|(_, _, exact)| *exact);
    found
        .into_iter()
        .filter(|(_, _, exact)| *exact || !any_exact)
        .map(|(r, v, _)| (r, v))
        .collect()
}

/// The highest of `matches` by the version each matched with; a tie is ambiguous.
fn pick(
    root: &Path,
    spec: &str,
    all: &[RuntimeDir],
    mut matches: Vec<(&RuntimeDir, String)>,
) -> Result<PathBuf> {
    // By the version each matched with, then by its own (a package release).
    let order = |a: &(&RuntimeDir, String), b: &(&RuntimeDir, String)| {
        compare_versions(&a.1, &b.1).then(compare_versions(a.0.version_str(), b.0.version_str()))
    };
    matches.sort_by(|a, b| order(b, a));
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
        [first, rest @ ..] => {
            let best = first.0;
            let tied: Vec<&RuntimeDir> = rest
                .iter()
                .filter(|other| order(other, first) == Ordering::Equal)
                .map(|(r, _)| *r)
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

    /// The Joblet-shaped name this runtime carries: its declared name, its nested dir's,
    /// or its dir's, the first of them with that shape.
    fn name_parts(&self) -> Option<NameParts> {
        [
            Some(self.name.as_str()),
            self.leaf.as_deref(),
            Some(&self.dir_name),
        ]
        .into_iter()
        .flatten()
        .find_map(NameParts::of)
    }

    fn language_is(&self, lang: &str) -> bool {
        match &self.language {
            Some(declared) => canonical_language(declared) == lang,
            None => self
                .name_parts()
                .is_some_and(|p| canonical_language(&p.lang) == lang),
        }
    }

    fn tags(&self) -> Vec<String> {
        self.name_parts().map(|p| p.tags).unwrap_or_default()
    }

    /// `version` as asked of this runtime by name (`@latest` for any), or `None`.
    fn has_version(&self, want: &str) -> Option<String> {
        let have = self.version_str();
        let leaf = self.leaf.as_deref() == Some(want);
        (want == LATEST || leaf || version_matches(have, want)).then(|| have.to_string())
    }

    /// The language version that matches `want`: the declared version, else the one in
    /// the name (a registry runtime's `version` is its package's release).
    fn language_version(&self, want: &str) -> Option<String> {
        if let Some(v) = self.has_version(want) {
            return Some(v);
        }
        self.name_parts()
            .map(|p| p.version)
            .filter(|v| version_matches(v, want))
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

fn describe(dir: &Path, dir_name: &str, leaf: Option<String>) -> RuntimeDir {
    let config = RuntimeConfig::load(&dir.join(RUNTIME_YML)).ok();
    let config = config.as_ref();
    RuntimeDir {
        dir: dir.to_path_buf(),
        dir_name: dir_name.to_string(),
        name: config
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| dir_name.to_string()),
        language: config.and_then(|c| c.language.clone()),
        version: config
            .and_then(RuntimeConfig::effective_version)
            .or_else(|| leaf.clone()),
        leaf,
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
        // Hidden names are runseal's own: its store, imports and removals under way.
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
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

    /// The dir of an exact name is read alone unless a runtime is nested in it, when the
    /// highest version among it and those nested wins as before.
    #[test]
    fn an_exact_dir_name_finds_its_runtime_and_the_highest_nested_in_it() {
        let t = fixture();
        let root = t.path();
        runtime(root, "tool", "name: tool\nversion: \"1\"\n");
        assert_eq!(pick(root, "tool"), "tool");
        runtime(root, "tool/2", "name: tool\nversion: \"2\"\n");
        assert_eq!(pick(root, "tool"), "tool/2");
        // A symlink is no runtime dir of the root's, whatever it points at.
        std::os::unix::fs::symlink(root.join("openjdk-21"), root.join("linked")).unwrap();
        assert!(resolve(root, "linked").is_err());
    }

    #[test]
    fn hidden_dirs_are_runseals_own_and_never_runtimes() {
        let t = fixture();
        // An import under way holds a runtime.yml; the store is a dir no one else may read.
        runtime(
            t.path(),
            ".openjdk-99.importing-1",
            "name: openjdk-99\nversion: \"99\"\n",
        );
        let store = t.path().join(".runseal-store");
        std::fs::create_dir(&store).unwrap();
        std::fs::set_permissions(&store, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let names: Vec<String> = list_runtimes(t.path())
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names.len(), 6, "{names:?}");
        assert!(!names.iter().any(|n| n.contains("99")), "{names:?}");
        assert!(resolve(t.path(), "openjdk-99").is_err());
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

    /// Joblet's own layouts: registry dirs named `lang-version` whose `version` is the
    /// package's release and which declare no language, the older nested `java/java-17`
    /// in-place dir, and a literal `python:3.11` dir.
    fn joblet() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        runtime(
            root,
            "python-3.11",
            "name: python-3.11\nversion: \"1.3.4\"\n",
        );
        runtime(
            root,
            "python-3.11-ml",
            "name: python-3.11-ml\nversion: \"1.3.2\"\n",
        );
        runtime(
            root,
            "openjdk-21",
            "name: openjdk-21\nversion: \"${RUNTIME_VERSION:-21.0.1}\"\n",
        );
        runtime(root, "java/java-17", "name: java-17\nversion: 17.0.12\n");
        runtime(root, "node/1.0.0", "name: nodejs-20\nversion: 1.0.0\n");
        runtime(root, "node/1.2.0", "name: nodejs-20\nversion: 1.2.0\n");
        t
    }

    #[test]
    fn joblet_specs_resolve_as_joblet_resolves_them() {
        let t = joblet();
        let root = t.path();
        // `lang:version` with no `language`: the dir `lang-version`, whatever its version says.
        assert_eq!(pick(root, "python:3.11"), "python-3.11");
        assert_eq!(pick(root, "python:3.11+ml"), "python-3.11-ml");
        assert_eq!(pick(root, "python-3.11+ml"), "python-3.11-ml");
        // The language inferred from the name, the version from the name or the field.
        assert_eq!(pick(root, "java:17"), "java/java-17");
        assert_eq!(pick(root, "java:21"), "openjdk-21");
        assert_eq!(pick(root, "openjdk:21"), "openjdk-21");
        assert_eq!(pick(root, "java-21"), "openjdk-21");
        assert_eq!(pick(root, "node:20"), "node/1.2.0");
        // `@latest`, `@version`, and a nested dir by its name.
        assert_eq!(pick(root, "nodejs-20@latest"), "node/1.2.0");
        assert_eq!(pick(root, "node@latest"), "node/1.2.0");
        assert_eq!(pick(root, "node@1.0.0"), "node/1.0.0");
        assert_eq!(pick(root, "openjdk-21@21.0.1"), "openjdk-21");
        assert_eq!(pick(root, "java-17"), "java/java-17");
        // An exact name comes first, even one that reads as `lang:version`.
        runtime(root, "python:3.11", "name: literal\nversion: \"0.1\"\n");
        assert_eq!(pick(root, "python:3.11"), "python:3.11");
        assert!(resolve(root, "java:11").is_err());
        assert!(resolve(root, "python:3.11+gpu").is_err());
    }

    #[test]
    fn joblet_names_split_into_language_version_and_tags() {
        let parts = NameParts::of("python-3.11-ml").unwrap();
        assert_eq!(
            (parts.lang.as_str(), parts.version.as_str()),
            ("python", "3.11")
        );
        assert_eq!(parts.tags, ["ml"]);
        assert_eq!(NameParts::of("python"), None);
        assert_eq!(NameParts::of("my-runtime"), None);
        assert_eq!(NameParts::of("3.11-python"), None);
        assert_eq!(canonical_language("temurin"), "java");
        assert_eq!(canonical_language("nodejs"), "node");
        assert_eq!(
            RuntimeSpec::parse("python:3.11+ml+gpu"),
            RuntimeSpec::LangVersion(
                "python".into(),
                "3.11".into(),
                vec!["ml".into(), "gpu".into()]
            )
        );
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
