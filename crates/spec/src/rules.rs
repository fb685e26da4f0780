//! The runtime.yml contract of DESIGN.md, checked on the document alone.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::{RuntimeConfig, ISOLATED_DIR};
use crate::paths::{is_within, lexical_problem};

/// One broken rule: the field's path in the document (`mounts[3].source`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RuleOptions {
    /// Accept `readonly: false` mounts (an operator's explicit choice).
    pub allow_writable: bool,
    /// Accept host paths as sources: the rules for a runtime that is about to be sealed.
    pub allow_host_sources: bool,
}

/// Where a mount's source lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// `isolated/...` inside the runtime dir.
    Sealed,
    /// A path on the host (`usr/lib/x` or `/usr/lib/x`).
    Host,
}

impl MountKind {
    pub fn of(source: &str) -> Self {
        if source
            .strip_prefix(ISOLATED_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
        {
            MountKind::Sealed
        } else {
            MountKind::Host
        }
    }
}

/// Targets a runtime may never mount over: the sandbox owns them (/tmp and /work are the
/// job's writable places, made fresh for every job).
pub const RESERVED_TARGETS: [&str; 5] = ["/proc", "/dev", "/sys", "/tmp", "/work"];

/// The sandbox's own place `target` lies in (`/proc` for `/proc/sys`), if any.
pub fn reserved_target(target: &str) -> Option<&'static str> {
    RESERVED_TARGETS
        .iter()
        .copied()
        .find(|r| is_within(target, r))
}
/// Variables read as one absolute path each.
const SINGLE_PATH_SUFFIX: &str = "_HOME";

/// Every violation of the runtime.yml rules, in document order.
pub fn validate(config: &RuntimeConfig, options: RuleOptions) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut push = |field: String, reason: String| out.push(Violation { field, reason });
    let mut targets: HashMap<&str, usize> = HashMap::new();

    for (i, mount) in config.mounts.iter().enumerate() {
        let field = |name: &str| format!("mounts[{i}].{name}");
        if let Some(reason) = source_problem(&mount.source, options.allow_host_sources) {
            push(field("source"), reason);
        }
        if let Some(reason) = target_problem(&mount.target) {
            push(field("target"), reason);
        }
        if let Some(first) = targets.insert(mount.target.as_str(), i) {
            targets.insert(mount.target.as_str(), first);
            push(
                field("target"),
                format!(
                    "`{}` is already the target of mounts[{first}]",
                    mount.target
                ),
            );
        }
        let copy_on_write = mount.copy_on_write_path().is_some();
        if mount.readonly != Some(true) && !options.allow_writable && !copy_on_write {
            push(
                field("readonly"),
                "must be true, or false on a sealed `isolated/PATH` mounted on `/PATH` (a \
                 per-job copy-on-write layer); pass --allow-writable to seal a writable host \
                 mount as one"
                    .into(),
            );
        }
    }

    for (key, value) in &config.environment {
        let field = format!("environment.{key}");
        if !is_valid_name(key) {
            push(
                field,
                "is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)".into(),
            );
            continue;
        }
        if let Some(reason) = env_value_problem(key, value) {
            push(field, reason);
        }
    }
    out
}

fn source_problem(source: &str, allow_host: bool) -> Option<String> {
    if let Some(p) = lexical_problem(source) {
        return Some(format!("`{source}` {p}"));
    }
    match MountKind::of(source) {
        MountKind::Sealed => None,
        MountKind::Host if allow_host => None,
        MountKind::Host if source.starts_with('/') => Some(format!(
            "`{source}` is an absolute host path; a sealed source starts with `{ISOLATED_DIR}/` \
             (run `runseal seal`)"
        )),
        MountKind::Host => Some(format!(
            "`{source}` names a host path; a sealed source starts with `{ISOLATED_DIR}/` \
             (run `runseal seal`)"
        )),
    }
}

fn target_problem(target: &str) -> Option<String> {
    if !target.starts_with('/') {
        return Some(format!("`{target}` is not absolute"));
    }
    if let Some(p) = lexical_problem(target) {
        return Some(format!("`{target}` {p}"));
    }
    if target == "/" {
        return Some("`/` is refused: the job root is built by the sandbox".into());
    }
    RESERVED_TARGETS
        .iter()
        .find(|r| is_within(target, r))
        .map(|r| format!("`{target}` is refused: {r} belongs to the sandbox"))
}

fn is_valid_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `PATH`, `LD_LIBRARY_PATH`, `CLASSPATH` and the like hold `:`-separated lists; an empty or
/// relative entry would make the job search its working directory, `..` would climb.
fn env_value_problem(key: &str, value: &str) -> Option<String> {
    let entries: Vec<&str> = if key.ends_with("PATH") {
        value.split(':').collect()
    } else if key.ends_with(SINGLE_PATH_SUFFIX) {
        vec![value]
    } else {
        return None;
    };
    entries.iter().find_map(|entry| {
        if entry.is_empty() {
            Some("has an empty entry (it would mean the working directory)".into())
        } else if !entry.starts_with('/') {
            Some(format!("entry `{entry}` is not an absolute path"))
        } else {
            lexical_problem(entry).map(|p| format!("entry `{entry}` {p}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn violations(yaml: &str) -> Vec<String> {
        let config = RuntimeConfig::parse(yaml, Path::new("runtime.yml")).unwrap();
        validate(&config, RuleOptions::default())
            .into_iter()
            .map(|v| format!("{}: {}", v.field, v.reason))
            .collect()
    }

    #[test]
    fn a_sealed_runtime_passes() {
        let v = violations(
            "mounts:\n- {source: isolated/usr, target: /usr, readonly: true}\n\
             environment:\n  PATH: /usr/bin:/bin\n  JAVA_HOME: /usr/lib/jvm/x\n  LANG: C.UTF-8\n",
        );
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn each_rule_reports_its_field() {
        let v = violations(
            "mounts:\n\
             - {source: isolated/../etc, target: /etc, readonly: true}\n\
             - {source: /usr/lib/jvm, target: /usr/lib/jvm, readonly: true}\n\
             - {source: usr/bin/java, target: /usr/bin/../../etc, readonly: true}\n\
             - {source: isolated/a, target: relative, readonly: true}\n\
             - {source: isolated/b, target: /proc/sys, readonly: true}\n\
             - {source: isolated/c, target: /etc}\n\
             - {source: isolated/d, target: /, readonly: true}\n\
             environment:\n  PATH: /usr/bin::/bin\n  bad-key: x\n  LD_LIBRARY_PATH: lib\n  JAVA_HOME: /a/../b\n",
        );
        let expect = [
            "mounts[0].source: `isolated/../etc` has a `..` component",
            "mounts[1].source: `/usr/lib/jvm` is an absolute host path",
            "mounts[2].source: `usr/bin/java` names a host path",
            "mounts[2].target: `/usr/bin/../../etc` has a `..` component",
            "mounts[3].target: `relative` is not absolute",
            "mounts[4].target: `/proc/sys` is refused",
            "mounts[5].target: `/etc` is already the target of mounts[0]",
            "mounts[5].readonly: must be true",
            "mounts[6].target: `/` is refused",
            "environment.PATH: has an empty entry",
            "environment.bad-key: is not a valid variable name",
            "environment.LD_LIBRARY_PATH: entry `lib` is not an absolute path",
            "environment.JAVA_HOME: entry `/a/../b` has a `..` component",
        ];
        assert_eq!(v.len(), expect.len(), "{v:#?}");
        for (got, want) in v.iter().zip(expect) {
            assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn a_writable_sealed_mount_at_its_own_path_is_a_copy_on_write_layer() {
        let v = violations(
            "mounts:\n\
             - {source: isolated/var, target: /var, readonly: true}\n\
             - {source: isolated/var/lib/dpkg, target: /var/lib/dpkg, readonly: false}\n\
             - {source: isolated/var/log, target: /srv/log, readonly: false}\n\
             - {source: var/cache, target: /var/cache, readonly: false}\n",
        );
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(
            v[0].starts_with("mounts[2].readonly: must be true"),
            "{v:?}"
        );
        assert!(
            v[2].starts_with("mounts[3].readonly: must be true"),
            "{v:?}"
        );
        let m = crate::Mount::copy_on_write("/var/lib/dpkg");
        assert_eq!(m.copy_on_write_path(), Some("var/lib/dpkg"));
        assert_eq!(m.sealed_name(), None);
    }

    #[test]
    fn host_sources_pass_only_when_allowed() {
        let config = RuntimeConfig::parse(
            "mounts:\n- {source: usr/lib/jvm, target: /usr/lib/jvm, readonly: true}\n",
            Path::new("r"),
        )
        .unwrap();
        let opts = RuleOptions {
            allow_host_sources: true,
            ..Default::default()
        };
        assert!(validate(&config, opts).is_empty());
        assert_eq!(validate(&config, RuleOptions::default()).len(), 1);
    }

    #[test]
    fn mount_kind_needs_the_isolated_prefix_as_a_component() {
        assert_eq!(MountKind::of("isolated/usr"), MountKind::Sealed);
        assert_eq!(MountKind::of("isolatedx/usr"), MountKind::Host);
        assert_eq!(MountKind::of("isolated"), MountKind::Host);
    }
}
