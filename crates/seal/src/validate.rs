//! `runseal validate`: the runtime.yml rules plus where each sealed source really resolves.

use std::path::{Path, PathBuf};

use runseal_spec::{validate, MountKind, RuleOptions, RuntimeConfig, Violation};
use serde::Serialize;

use crate::beneath::{escape_problem, open_runtime_dir};
use crate::error::{Error, Result};
use crate::layout::Layout;

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
    let base = open_runtime_dir(dir)?;
    for (i, mount) in config.mounts.iter().enumerate() {
        let field = format!("mounts[{i}].source");
        let lexically_fine = !violations.iter().any(|v| v.field == field);
        if lexically_fine && MountKind::of(&mount.source) == MountKind::Sealed {
            if let Some(reason) = escape_problem(&base, &mount.source) {
                violations.push(Violation { field, reason });
            }
        }
    }
    violations.sort_by_key(|v| field_order(&config, &v.field));
    Ok(report(file, violations, Some(config)))
}

/// The runtime.yml of `dir` if the runtime may run jobs: valid under the default rules,
/// else [`Error::Invalid`] with every violation. Checked right before each use.
pub fn runnable_config(dir: &Path) -> Result<RuntimeConfig> {
    let report = validate_runtime(dir, RuleOptions::default())?;
    match report.config {
        Some(config) if report.valid => Ok(config),
        _ => Err(Error::Invalid {
            file: report.file,
            violations: report.violations,
        }),
    }
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
        let (index, name) = rest.split_once("].").unwrap_or((rest, ""));
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
