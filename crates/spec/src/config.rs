//! The `runtime.yml` document as plain serde types.
//!
//! Known fields are typed; every field runseal does not know is kept in `extra` so a rewrite
//! loses nothing. Output order is fixed (the known fields in Joblet's order, then unknown
//! fields in their input order), which makes rewriting deterministic.

use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

pub const RUNTIME_YML: &str = "runtime.yml";
/// Directory inside a runtime dir that holds the sealed tree; sealed sources start with it.
pub const ISOLATED_DIR: &str = "isolated";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub environment: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<Requirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Value>,
    /// A base userland sealed with the runtime (`busybox`); none unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Commands `runseal seal` runs against the unsealed runtime to learn what it opens
    /// (`[[ruby, -ropenssl, -e, "1"]]`), and `verify` runs in the sealed one; none unless
    /// asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learn: Vec<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_info: Option<BuildInfo>,
    #[serde(flatten)]
    pub extra: IndexMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    #[serde(flatten)]
    pub extra: IndexMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Requirements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_version: Option<String>,
    #[serde(flatten)]
    pub extra: IndexMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(flatten)]
    pub extra: IndexMap<String, Value>,
}

impl Mount {
    /// A read-only mount, the only kind a sealed runtime uses.
    pub fn readonly(source: impl Into<String>, target: impl Into<String>) -> Self {
        Mount {
            source: source.into(),
            target: target.into(),
            readonly: Some(true),
            extra: IndexMap::new(),
        }
    }

    /// The mount `seal` writes for the top-level entry `name` of the sealed tree:
    /// `isolated/NAME` on `/NAME`, read-only.
    pub fn sealed(name: &str) -> Self {
        Mount::readonly(format!("{ISOLATED_DIR}/{name}"), format!("/{name}"))
    }

    /// A writable mount of the sealed tree: `isolated/PATH` on `/PATH`, `readonly: false`.
    /// Each job sees it as its own copy-on-write layer (an overlay whose upper layer is a
    /// tmpfs), so what a job writes there never reaches the sealed tree and ends with it.
    pub fn copy_on_write(target: &str) -> Self {
        Mount {
            readonly: Some(false),
            ..Mount::readonly(format!("{ISOLATED_DIR}{target}"), target)
        }
    }

    /// The path of a mount in the form of [`Mount::copy_on_write`], if it has that form.
    pub fn copy_on_write_path(&self) -> Option<&str> {
        let path = self.target.strip_prefix('/')?;
        let source = self.source.strip_prefix(ISOLATED_DIR)?.strip_prefix('/')?;
        (self.readonly == Some(false) && !path.is_empty() && source == path).then_some(path)
    }

    /// The top-level name this mount seals, if it has exactly the form of [`Mount::sealed`]
    /// (read-only included).
    pub fn sealed_name(&self) -> Option<&str> {
        let name = self.target.strip_prefix('/')?;
        let top_level = !name.is_empty() && !name.contains('/');
        let source = self.source.strip_prefix(ISOLATED_DIR)?.strip_prefix('/')?;
        (top_level && source == name && self.readonly == Some(true)).then_some(name)
    }
}

impl RuntimeConfig {
    /// Parses runtime.yml text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        serde_saphyr::from_str(text).map_err(|e| Error::Yaml {
            path: path.to_path_buf(),
            message: first_line(&e.to_string()),
        })
    }

    /// Reads and parses a runtime.yml file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::parse(&read_untrusted(path)?, path)
    }

    /// The version as runseal reads it: a `${VAR:-default}` (or `${VAR-default}`) that a
    /// setup script left unexpanded in a quoted heredoc is its default; a bare `$VAR` or
    /// `${VAR}` says no version.
    pub fn effective_version(&self) -> Option<String> {
        self.version.as_deref().and_then(shell_default)
    }

    /// Why this runtime cannot run on this machine, if `requirements.architectures` leaves
    /// it out (Joblet's names and `uname -m`'s both count: `amd64` is `x86_64`).
    pub fn architecture_problem(&self) -> Option<String> {
        let wanted = self.requirements.as_ref()?.architectures.as_ref()?;
        let here = std::env::consts::ARCH;
        if wanted.is_empty() || wanted.iter().any(|a| canonical_arch(a) == here) {
            return None;
        }
        Some(format!(
            "[{}] leaves out this machine's architecture ({here})",
            wanted.join(", ")
        ))
    }

    /// The YAML text of this document; equal documents give equal bytes.
    pub fn to_yaml(&self, path: &Path) -> Result<String> {
        serde_saphyr::to_string(self).map_err(|e| Error::Serialize {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// `text`, or the default of a shell parameter expansion `${NAME:-default}` that is all of
/// it; `None` for an expansion with no default.
pub fn shell_default(text: &str) -> Option<String> {
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        if text.starts_with('$') && text.len() > 1 {
            return None;
        }
        return Some(text.to_string());
    };
    let name_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let rest = &inner[name_end..];
    let default = rest.strip_prefix(":-").or_else(|| rest.strip_prefix('-'));
    default.filter(|d| !d.is_empty()).map(str::to_string)
}

/// An architecture as Rust's `std::env::consts::ARCH` names it.
fn canonical_arch(arch: &str) -> &str {
    match arch {
        "amd64" | "x86_64" | "x64" => "x86_64",
        "arm64" | "aarch64" => "aarch64",
        "i386" | "i686" | "386" | "x86" => "x86",
        "armhf" | "armv7l" | "armv7" | "arm" => "arm",
        "ppc64le" | "powerpc64le" | "powerpc64" => "powerpc64",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

/// serde-saphyr renders a source snippet after the first line; the first line already names
/// line and column, which is what a one-line error report needs.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The most a runtime.yml may hold; real ones are a few KiB.
const MAX_RUNTIME_YML: u64 = 1 << 20;

/// Reads a runtime.yml its author may have made anything: only a regular file of at most
/// [`MAX_RUNTIME_YML`] bytes, never through a symlink in its last component (root would
/// read and print a file the author cannot), never blocking on a FIFO.
fn read_untrusted(path: &Path) -> Result<String> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = rustix::fs::open(path, flags, Mode::empty())
        .map_err(|e| Error::io(path, std::io::Error::from(e)))?;
    read_opened_runtime_yml(std::fs::File::from(file), path)
}

/// The text of a runtime.yml opened (non-blocking, not through a link) by the caller: a
/// regular file, read to at most [`MAX_RUNTIME_YML`] bytes even if it grows meanwhile.
/// `path` names it in errors.
pub fn read_opened_runtime_yml(file: std::fs::File, path: &Path) -> Result<String> {
    use std::io::Read;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() || meta.len() > MAX_RUNTIME_YML {
        let why = format!("not a regular file of at most {MAX_RUNTIME_YML} bytes");
        return Err(Error::io(path, std::io::Error::other(why)));
    }
    // Room for the whole file and the read that finds its end, so two reads do.
    let mut text = String::with_capacity(meta.len() as usize + 1);
    file.take(MAX_RUNTIME_YML)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(path, e))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_form_seal_writes_is_a_sealed_mount() {
        assert_eq!(Mount::sealed("usr").sealed_name(), Some("usr"));
        for (source, target) in [
            ("isolated/usr", "/opt"),
            ("isolated/usr/lib", "/usr/lib"),
            ("isolated/", "/"),
            ("isolatedusr", "/usr"),
            ("/usr", "/usr"),
        ] {
            assert_eq!(
                Mount::readonly(source, target).sealed_name(),
                None,
                "{source}"
            );
        }
        let writable = Mount {
            readonly: Some(false),
            ..Mount::sealed("usr")
        };
        assert_eq!(writable.sealed_name(), None);
    }

    const JOBLET: &str = r#"name: openjdk-17
language: java
version: "17.0.15"
description: OpenJDK 17
mounts:
  - source: usr/lib/jvm/java-17-openjdk-amd64
    target: /usr/lib/jvm/java-17-openjdk-amd64
    readonly: true
    x-note: kept
environment:
  JAVA_HOME: /usr/lib/jvm/java-17-openjdk-amd64
  PATH: /usr/lib/jvm/java-17-openjdk-amd64/bin:/usr/bin
requirements:
  architectures: [amd64]
  gpu: false
packages:
  - openjdk-17-jdk-headless
build_info:
  built_at: "2026-11-30"
  platform: debian-12
  builder_host: ci
custom_top: {a: 1}
"#;

    #[test]
    fn keeps_every_field_and_unknown_ones() {
        let c = RuntimeConfig::parse(JOBLET, Path::new("runtime.yml")).unwrap();
        assert_eq!(c.version.as_deref(), Some("17.0.15"));
        assert_eq!(c.mounts[0].extra["x-note"], Value::from("kept"));
        assert_eq!(
            c.build_info.as_ref().unwrap().extra["builder_host"],
            Value::from("ci")
        );
        assert_eq!(c.extra["custom_top"]["a"], Value::from(1));
        let keys: Vec<_> = c.environment.keys().cloned().collect();
        assert_eq!(keys, ["JAVA_HOME", "PATH"]);
        let again =
            RuntimeConfig::parse(&c.to_yaml(Path::new("x")).unwrap(), Path::new("x")).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn output_is_deterministic_and_ordered() {
        let c = RuntimeConfig::parse(JOBLET, Path::new("runtime.yml")).unwrap();
        let a = c.to_yaml(Path::new("x")).unwrap();
        let b = RuntimeConfig::parse(&a, Path::new("x"))
            .unwrap()
            .to_yaml(Path::new("x"))
            .unwrap();
        assert_eq!(a, b);
        let order: Vec<usize> = [
            "name:",
            "language:",
            "version:",
            "mounts:",
            "environment:",
            "requirements:",
            "packages:",
            "build_info:",
            "custom_top:",
        ]
        .iter()
        .map(|k| a.find(k).unwrap_or_else(|| panic!("{k} missing in {a}")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{a}");
    }

    #[test]
    fn numeric_version_stays_a_string_on_rewrite() {
        let c = RuntimeConfig::parse("name: x\nversion: 17\n", Path::new("r.yml")).unwrap();
        assert_eq!(c.version.as_deref(), Some("17"));
        let out = c.to_yaml(Path::new("r.yml")).unwrap();
        let back = RuntimeConfig::parse(&out, Path::new("r.yml")).unwrap();
        assert_eq!(back.version.as_deref(), Some("17"));
    }

    #[test]
    fn a_shell_default_left_in_version_is_read_as_its_default() {
        let cases = [
            ("${RUNTIME_VERSION:-21.0.1}", Some("21.0.1")),
            ("${RUNTIME_VERSION-3.11}", Some("3.11")),
            ("${RUNTIME_VERSION}", None),
            ("${RUNTIME_VERSION:-}", None),
            ("$RUNTIME_VERSION", None),
            ("17.0.12", Some("17.0.12")),
            ("$", Some("$")),
        ];
        for (text, want) in cases {
            assert_eq!(shell_default(text).as_deref(), want, "{text}");
        }
        let c = RuntimeConfig::parse(
            "name: openjdk-21\nversion: \"${RUNTIME_VERSION:-21.0.1}\"\n",
            Path::new("r"),
        )
        .unwrap();
        assert_eq!(c.effective_version().as_deref(), Some("21.0.1"));
        // The document keeps what its author wrote.
        assert!(c
            .to_yaml(Path::new("r"))
            .unwrap()
            .contains("${RUNTIME_VERSION:-21.0.1}"));
    }

    #[test]
    fn architectures_name_this_machine_in_either_spelling() {
        let with = |archs: &str| {
            let yaml = format!("name: x\nrequirements:\n  architectures: {archs}\n");
            RuntimeConfig::parse(&yaml, Path::new("r"))
                .unwrap()
                .architecture_problem()
        };
        let (same, other) = match std::env::consts::ARCH {
            "x86_64" => ("[\"amd64\"]", "[\"arm64\", \"aarch64\"]"),
            _ => ("[\"arm64\"]", "[\"amd64\", \"x86_64\"]"),
        };
        assert_eq!(with(same), None);
        assert_eq!(with("[]"), None);
        let problem = with(other).unwrap();
        assert!(problem.contains(std::env::consts::ARCH), "{problem}");
    }

    #[test]
    fn yaml_errors_name_file_line_and_column() {
        let err = RuntimeConfig::parse(
            "name: a\nmounts:\n  - source: [\n",
            Path::new("/rt/runtime.yml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("/rt/runtime.yml: line 3 column 13"),
            "{err}"
        );
        let err = RuntimeConfig::parse("mounts:\n  - source: a\n", Path::new("r.yml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("target"), "{err}");
    }
}
