//! `runseal validate`: the runtime.yml rules plus where each sealed source really resolves.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use runseal_spec::{validate, MountKind, RuleOptions, RuntimeConfig, Violation, ISOLATED_DIR};
use serde::Serialize;

use crate::beneath::{crossing_problem, escape_problem, is_file_beneath, open_runtime_dir};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::trust::untrusted_because;

#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub file: PathBuf,
    pub valid: bool,
    pub violations: Vec<Violation>,
    /// The document that was checked, when it could be parsed.
    #[serde(skip)]
    pub config: Option<RuntimeConfig>,
}

/// Checks the runtime dir `dir`. A runtime.yml that cannot be parsed is reported as a
/// violation of the document (field `""`), not as an error: the runtime is invalid.
pub fn validate_runtime(dir: &Path, options: RuleOptions) -> Result<ValidationReport> {
    validate_beneath(dir, &open_runtime_dir(dir)?, options)
}

/// [`validate_runtime`] with the runtime dir already opened as `base`.
fn validate_beneath(dir: &Path, base: &OwnedFd, options: RuleOptions) -> Result<ValidationReport> {
    let file = Layout::new(dir).runtime_yml();
    let config = match RuntimeConfig::load(&file) {
        Ok(config) => config,
        Err(runseal_spec::Error::Yaml { message, .. }) => {
            return Ok(report(
                file,
                vec![Violation {
                    field: String::new(),
                    reason: message,
                }],
                None,
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let mut violations = validate(&config, options);
    for (i, mount) in config.mounts.iter().enumerate() {
        let field = format!("mounts[{i}].source");
        let lexically_fine = !violations.iter().any(|v| v.field == field);
        if lexically_fine && MountKind::of(&mount.source) == MountKind::Sealed {
            if let Some(reason) = escape_problem(base, &mount.source) {
                violations.push(Violation { field, reason });
            }
        }
    }
    for (i, mount) in config.mounts.iter().enumerate() {
        let field = format!("mounts[{i}].target");
        if violations.iter().any(|v| v.field == field) {
            continue;
        }
        if let Some(reason) = crossing_problem(base, &config, i) {
            violations.push(Violation {
                field,
                reason: format!("`{}` {reason}", mount.target),
            });
        }
    }
    violations.sort_by_key(|v| field_order(&config, &v.field));
    Ok(report(file, violations, Some(config)))
}

/// The runtime.yml of `dir` if the runtime may run jobs: valid under the default rules and
/// sealed by runseal (its manifest present, every mount a top-level dir of `isolated/` at
/// the same path, as `seal` writes them), else [`Error::Invalid`] with every violation.
/// Checked right before each use.
pub fn runnable_config(dir: &Path) -> Result<RuntimeConfig> {
    let base = open_runtime_dir(dir)?;
    let mut report = validate_beneath(dir, &base, RuleOptions::default())?;
    if let Some(config) = &report.config {
        report
            .violations
            .extend(unsealed_problems(dir, &base, config));
        report.violations.extend(architecture_violation(config));
    }
    match report.config {
        Some(config) if report.violations.is_empty() => Ok(config),
        _ => Err(Error::Invalid {
            file: report.file,
            violations: report.violations,
        }),
    }
}

/// `requirements.architectures` leaving this machine out: the runtime cannot run here.
pub(crate) fn architecture_violation(config: &RuntimeConfig) -> Option<Violation> {
    config.architecture_problem().map(|reason| Violation {
        field: "requirements.architectures".into(),
        reason,
    })
}

/// How `config` differs from a runtime.yml that `seal` wrote: one mount per top-level entry
/// of `isolated/`, at the same path, and the manifest beside them. A runtime author who
/// edits runtime.yml after the seal gets it refused rather than run.
fn unsealed_problems(dir: &Path, base: &OwnedFd, config: &RuntimeConfig) -> Vec<Violation> {
    let mut problems = Vec::new();
    for (i, mount) in config.mounts.iter().enumerate() {
        if mount.sealed_name().is_none() && mount.copy_on_write_path().is_none() {
            problems.push(Violation {
                field: format!("mounts[{i}]"),
                reason: format!(
                    "`{}` on `{}` is not as `runseal seal` writes mounts (`{ISOLATED_DIR}/NAME` \
                     on `/NAME` read-only, or `{ISOLATED_DIR}/PATH` on `/PATH` writable, a \
                     per-job copy-on-write layer)",
                    mount.source, mount.target
                ),
            });
        }
    }
    let trust = untrusted_because(dir).and_then(|problem| match problem {
        Some(problem) => Ok(Some(problem)),
        None => isolated_untrusted(dir),
    });
    match trust {
        Ok(None) => {}
        Ok(Some(problem)) => problems.push(Violation {
            field: String::new(),
            reason: format!(
                "{problem}: someone but root could change what its jobs run, so it is not a \
                 runtime runseal sealed"
            ),
        }),
        Err(e) => problems.push(Violation {
            field: String::new(),
            reason: e.to_string(),
        }),
    }
    let manifest = Layout::manifest_in(Path::new(ISOLATED_DIR));
    if !is_file_beneath(base, &manifest) {
        problems.push(Violation {
            field: String::new(),
            reason: format!(
                "{} is missing: the runtime was not sealed by runseal",
                dir.join(manifest).display()
            ),
        });
    }
    problems
}

/// Why `isolated/` in `dir` could be changed by someone but root, if it could.
fn isolated_untrusted(dir: &Path) -> Result<Option<String>> {
    let tree = dir.join(ISOLATED_DIR);
    let meta = std::fs::symlink_metadata(&tree).map_err(|e| Error::io(&tree, e))?;
    if !meta.is_dir() {
        return Ok(Some(format!("{} is not a directory", tree.display())));
    }
    let (uid, mode) = (
        std::os::unix::fs::MetadataExt::uid(&meta),
        std::os::unix::fs::MetadataExt::mode(&meta),
    );
    Ok(runseal_closure::untrusted_dir(uid, mode, false)
        .map(|problem| format!("{} {problem}", tree.display())))
}

fn report(
    file: PathBuf,
    violations: Vec<Violation>,
    config: Option<RuntimeConfig>,
) -> ValidationReport {
    ValidationReport {
        file,
        valid: violations.is_empty(),
        violations,
        config,
    }
}

/// Document order: mounts by index and field, then environment; stable within a field.
fn field_order(config: &RuntimeConfig, field: &str) -> (usize, usize, usize) {
    if let Some(rest) = field.strip_prefix("mounts[") {
        let (index, name) = rest.split_once(']').unwrap_or((rest, ""));
        let name = name.trim_start_matches('.');
        let rank = ["source", "target", "readonly"]
            .iter()
            .position(|n| *n == name)
            .unwrap_or(3);
        return (1, index.parse().unwrap_or(0), rank);
    }
    if let Some(key) = field.strip_prefix("environment.") {
        return (2, config.environment.get_index_of(key).unwrap_or(0), 0);
    }
    (0, 0, 0)
}
