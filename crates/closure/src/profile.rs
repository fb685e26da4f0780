//! Runtime profiles: data naming what no ELF header or symlink reveals (certificates,
//! configuration read at run time, an interpreter's standard library). Built-in profiles are
//! the YAML files under `profiles/`; operators add their own as files in a profile dir.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    /// runtime.yml `language` values this profile serves.
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub include: Vec<ProfilePath>,
    /// Symlinks the sealed tree gets that the host need not have (a userland's applets).
    #[serde(default)]
    pub links: Vec<ProfileLinks>,
    /// Checks `runseal verify` runs inside the sandbox.
    #[serde(default)]
    pub smoke: Vec<SmokeTest>,
    /// File-name patterns (`python{version}`, `node`) of the interpreter this profile serves: they
    /// pick the profile when runtime.yml names no language, and fill `{prefix}`/`{version}`.
    #[serde(default)]
    pub anchors: Vec<String>,
    /// Commands a seal with this profile runs against the unsealed runtime to learn what
    /// they open, and `verify` runs in the sealed one (see `runseal seal --learn`).
    #[serde(default)]
    pub learn: Vec<Vec<String>>,
}

/// A command run in the sealed runtime that must succeed and print `expect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmokeTest {
    pub name: String,
    pub command: Vec<String>,
    /// Text that must appear in the command's stdout or stderr.
    pub expect: String,
    /// Files written into the work dir first (name to content).
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, String>,
}

/// `dir/<name> -> target` for each name, unless the tree already holds `dir/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileLinks {
    pub dir: String,
    pub target: String,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfilePath {
    pub path: String,
    pub why: String,
    /// A path that may be absent on some hosts; a required one that is missing fails the seal.
    #[serde(default)]
    pub optional: bool,
}

const BUILTIN: [(&str, &str); 13] = [
    ("base", include_str!("../../../profiles/base.yml")),
    ("busybox", include_str!("../../../profiles/busybox.yml")),
    ("certs", include_str!("../../../profiles/certs.yml")),
    ("generic", include_str!("../../../profiles/generic.yml")),
    ("go", include_str!("../../../profiles/go.yml")),
    ("java", include_str!("../../../profiles/java.yml")),
    ("node", include_str!("../../../profiles/node.yml")),
    ("nss", include_str!("../../../profiles/nss.yml")),
    ("perl", include_str!("../../../profiles/perl.yml")),
    ("php", include_str!("../../../profiles/php.yml")),
    ("python", include_str!("../../../profiles/python.yml")),
    ("r", include_str!("../../../profiles/r.yml")),
    ("ruby", include_str!("../../../profiles/ruby.yml")),
];

/// Where an anchored profile found its interpreter: `{anchor}`, `{prefix}` (the dir above its
/// `bin`) and `{version}` (from its file name) fill the profile's include paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub path: PathBuf,
    pub prefix: PathBuf,
    pub version: String,
}

impl Profile {
    pub fn parse(name: &str, text: &str) -> Result<Profile> {
        let profile: Profile = serde_saphyr::from_str(text).map_err(|e| Error::Profile {
            name: name.into(),
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
        let paths = profile.include.iter().map(|p| &p.path);
        if let Some(bad) = paths
            .chain(profile.links.iter().map(|l| &l.dir))
            .find(|p| !p.starts_with('/') && !p.starts_with("{prefix}"))
        {
            return Err(Error::Profile {
                name: name.into(),
                message: format!("path `{bad}` is not absolute"),
            });
        }
        if let Some(bad) = profile
            .links
            .iter()
            .flat_map(|l| &l.names)
            .find(|n| n.is_empty() || n.contains('/'))
        {
            return Err(Error::Profile {
                name: name.into(),
                message: format!("link name `{bad}` is not a plain file name"),
            });
        }
        if let Some(bad) = profile
            .anchors
            .iter()
            .find(|a| a.matches("{version}").count() > 1 || a.contains('/'))
        {
            return Err(Error::Profile {
                name: name.into(),
                message: format!(
                    "anchor `{bad}` must be a file name holding `{{version}}` at most once"
                ),
            });
        }
        Ok(profile)
    }

    /// The anchor `path` (a file of the closure) is for this profile, if any.
    pub fn anchor_of(&self, path: &Path) -> Option<Anchor> {
        let name = path.file_name()?.to_str()?;
        let prefix = path.parent()?.parent()?.to_path_buf();
        let version =
            self.anchors
                .iter()
                .find_map(|pattern| match pattern.split_once("{version}") {
                    None => (name == pattern).then(String::new),
                    Some((before, after)) => {
                        let version = name.strip_prefix(before)?.strip_suffix(after)?;
                        // `3.11`, not `3` (a bare major is a link name, not the interpreter).
                        let plausible = version.starts_with(|c: char| c.is_ascii_digit())
                            && version.contains('.')
                            && version.chars().all(|c| c.is_ascii_digit() || c == '.');
                        plausible.then(|| version.to_string())
                    }
                })?;
        Some(Anchor {
            path: path.to_path_buf(),
            prefix,
            version,
        })
    }

    /// Whether an include path needs an anchor to be filled in.
    pub fn is_templated(text: &str) -> bool {
        text.contains('{')
    }
}

impl Anchor {
    pub fn fill(&self, text: &str) -> String {
        text.replace("{prefix}", &self.prefix.to_string_lossy())
            .replace("{version}", &self.version)
            .replace("{anchor}", &self.path.to_string_lossy())
    }
}

/// The profiles runseal knows: the built-in ones, replaced or joined by `*.yml` files from
/// profile dirs, so an operator adds a language without recompiling.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    profiles: Vec<Profile>,
}

impl ProfileSet {
    pub fn builtin() -> Result<ProfileSet> {
        let profiles = BUILTIN
            .iter()
            .map(|(name, text)| Profile::parse(name, text))
            .collect::<Result<_>>()?;
        Ok(ProfileSet { profiles })
    }

    /// The built-in profiles, then every `*.yml` in `dirs` (a missing dir is skipped); a file
    /// profile replaces a built-in one of the same name.
    pub fn load(dirs: &[PathBuf]) -> Result<ProfileSet> {
        let mut set = ProfileSet::builtin()?;
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                .collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
                let label = file.display().to_string();
                let profile = Profile::parse(&label, &text)?;
                set.profiles.retain(|p| p.name != profile.name);
                set.profiles.push(profile);
            }
        }
        Ok(set)
    }

    pub fn get(&self, name: &str) -> Result<Profile> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| Error::Profile {
                name: name.into(),
                message: format!("unknown profile; known: {}", self.names().join(", ")),
            })
    }

    pub fn names(&self) -> Vec<&str> {
        self.profiles.iter().map(|p| p.name.as_str()).collect()
    }

    /// The profile serving `language`, if one does.
    pub fn for_language(&self, language: &str) -> Option<Profile> {
        self.profiles
            .iter()
            .find(|p| p.languages.iter().any(|l| l == language))
            .cloned()
    }

    /// Whether a profile found by [`ProfileSet::detect`] may have learn commands.
    pub fn detected_may_learn(&self) -> bool {
        self.profiles
            .iter()
            .any(|p| !p.anchors.is_empty() && !p.learn.is_empty())
    }

    /// The first profile one of whose anchors names a file among `paths`.
    pub fn detect<'a>(&self, mut paths: impl Iterator<Item = &'a Path>) -> Option<Profile> {
        paths.find_map(|path| {
            self.profiles
                .iter()
                .find(|p| p.anchor_of(path).is_some())
                .cloned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_are_picked_by_language() {
        let set = ProfileSet::builtin().unwrap();
        assert_eq!(set.for_language("java").unwrap().name, "java");
        assert_eq!(set.for_language("python").unwrap().name, "python");
        assert!(set.for_language("cobol").is_none());
        let java = set.get("java").unwrap();
        assert!(java
            .include
            .iter()
            .any(|p| p.path.contains("cacerts") && !p.optional));
        assert!(set.get("nope").unwrap_err().to_string().contains("java"));
    }

    #[test]
    fn anchors_fill_prefix_and_version() {
        let python = ProfileSet::builtin().unwrap().get("python").unwrap();
        let anchor = python.anchor_of(Path::new("/usr/bin/python3.11")).unwrap();
        assert_eq!(anchor.prefix, Path::new("/usr"));
        assert_eq!(anchor.version, "3.11");
        assert_eq!(
            anchor.fill("{prefix}/lib/python{version}"),
            "/usr/lib/python3.11"
        );
        assert!(python
            .anchor_of(Path::new("/usr/bin/python3.11-config"))
            .is_none());
        assert!(python.anchor_of(Path::new("/usr/bin/python3")).is_none());
        let set = ProfileSet::builtin().unwrap();
        let found =
            set.detect([Path::new("/a/b"), Path::new("/opt/py/bin/python3.12")].into_iter());
        assert_eq!(found.unwrap().name, "python");
    }

    #[test]
    fn go_r_and_php_anchors_find_their_homes_and_perl_is_no_anchor() {
        let set = ProfileSet::builtin().unwrap();
        let go = set.get("go").unwrap();
        let goroot = go.anchor_of(Path::new("/usr/lib/go-1.19/bin/go")).unwrap();
        assert_eq!(goroot.fill("{prefix}"), "/usr/lib/go-1.19");
        let r = set
            .get("r")
            .unwrap()
            .anchor_of(Path::new("/usr/bin/Rscript"));
        assert_eq!(r.unwrap().fill("{prefix}/lib/R"), "/usr/lib/R");
        let php = set.get("php").unwrap();
        let anchor = php.anchor_of(Path::new("/usr/bin/php8.2")).unwrap();
        assert_eq!(anchor.fill("/etc/php/{version}/cli"), "/etc/php/8.2/cli");
        // Go's tree carries `#!/usr/bin/perl` scripts: it is Go's, not Perl's.
        let go_closure = [
            Path::new("/usr/bin/perl"),
            Path::new("/usr/lib/go-1.19/bin/go"),
        ];
        assert_eq!(set.detect(go_closure.into_iter()).unwrap().name, "go");
        assert_eq!(set.for_language("perl").unwrap().name, "perl");
    }

    #[test]
    fn profile_files_join_and_replace_builtins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cobol.yml"),
            "name: cobol\nlanguages: [cobol]\ninclude:\n- {path: /etc/cobol, why: x}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("java.yml"),
            "name: java\nlanguages: [java]\n",
        )
        .unwrap();
        let set =
            ProfileSet::load(&[dir.path().to_path_buf(), PathBuf::from("/nonexistent")]).unwrap();
        assert_eq!(
            set.for_language("cobol").unwrap().include[0].path,
            "/etc/cobol"
        );
        assert!(set.get("java").unwrap().include.is_empty());
        std::fs::write(
            dir.path().join("bad.yml"),
            "name: bad\ninclude:\n- {path: relative, why: x}\n",
        )
        .unwrap();
        let err = ProfileSet::load(&[dir.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.yml") && err.contains("not absolute"),
            "{err}"
        );
    }
}
