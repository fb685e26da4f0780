//! Runtime profiles: data naming what no ELF header or symlink reveals (certificates,
//! configuration read at run time). Built-in profiles are YAML files under `profiles/`.

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

const BUILTIN: [(&str, &str); 3] = [
    ("busybox", include_str!("../../../profiles/busybox.yml")),
    ("generic", include_str!("../../../profiles/generic.yml")),
    ("java", include_str!("../../../profiles/java.yml")),
];

impl Profile {
    pub fn parse(name: &str, text: &str) -> Result<Profile> {
        let profile: Profile = serde_saphyr::from_str(text).map_err(|e| Error::Profile {
            name: name.into(),
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
        let paths = profile.include.iter().map(|p| &p.path);
        if let Some(bad) = paths
            .chain(profile.links.iter().map(|l| &l.dir))
            .find(|p| !p.starts_with('/'))
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
        Ok(profile)
    }

    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Result<Profile> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::Profile {
                name: name.into(),
                message: format!(
                    "unknown profile; built-in profiles: {}",
                    BUILTIN.map(|(n, _)| n).join(", ")
                ),
            })?;
        Profile::parse(name, text)
    }

    /// The built-in profile serving `language`, or `generic`.
    pub fn for_language(language: Option<&str>) -> Result<Profile> {
        for (name, _) in BUILTIN {
            let profile = Profile::builtin(name)?;
            if language.is_some_and(|l| profile.languages.iter().any(|x| x == l)) {
                return Ok(profile);
            }
        }
        Profile::builtin("generic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_are_picked_by_language() {
        assert_eq!(Profile::for_language(Some("java")).unwrap().name, "java");
        assert_eq!(
            Profile::for_language(Some("cobol")).unwrap().name,
            "generic"
        );
        assert_eq!(Profile::for_language(None).unwrap().name, "generic");
        let java = Profile::builtin("java").unwrap();
        assert!(java
            .include
            .iter()
            .any(|p| p.path.contains("cacerts") && !p.optional));
        assert!(Profile::builtin("nope")
            .unwrap_err()
            .to_string()
            .contains("java"));
    }

    #[test]
    fn relative_include_paths_are_refused() {
        let err = Profile::parse("x", "name: x\ninclude:\n- {path: etc/x, why: y}\n").unwrap_err();
        assert!(err.to_string().contains("not absolute"));
    }
}
