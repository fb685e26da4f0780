use std::path::Path;
use std::process::{Command, ExitCode};

use runseal_closure::Problem;
use runseal_seal::{Difference, Layout, ValidationReport};
use runseal_spec::{RuleOptions, RuntimeConfig};
use serde::Serialize;

use crate::commands::run::{job_for, RunOptions};
use crate::output::print_json;

/// Limit for one smoke test: a JVM compiling a source file needs a few seconds.
const SMOKE_TIMEOUT_SECS: &str = "300";

#[derive(Serialize)]
struct VerifyReport {
    runtime: String,
    ok: bool,
    validation: ValidationReport,
    closure_problems: Vec<Problem>,
    integrity_differences: Vec<Difference>,
    files: u64,
    /// Why the sandbox checks did not run, if they did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox_skipped: Option<String>,
    isolation_problems: Vec<String>,
    smoke_tests: Vec<SmokeResult>,
}

#[derive(Serialize)]
struct SmokeResult {
    profile: String,
    name: String,
    passed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
}

/// Static checks (validation, closure completeness, manifest integrity), then in the sandbox
/// the isolation probe and the profiles' smoke tests.
pub fn run(
    dir: &Path,
    profile: &[String],
    profile_dir: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let layout = Layout::new(dir);
    let validation = runseal_seal::validate_runtime(dir, RuleOptions::default())?;
    // A runtime.yml that does not parse is reported by `validate`; the rest needs it parsed.
    let config = match &validation.config {
        Some(config) => config.clone(),
        None => RuntimeConfig::load(&layout.runtime_yml())?,
    };
    let tree = layout.isolated();
    if !Layout::manifest_in(&tree).exists() {
        return Err(runseal_seal::Error::Unsealable {
            file: layout.runtime_yml(),
            message: format!(
                "the runtime is not sealed (no {}); run `runseal seal {}` first",
                Layout::manifest_in(&tree).display(),
                dir.display()
            ),
        }
        .into());
    }
    let (manifest, integrity_differences) = runseal_seal::check_integrity(&tree)?;
    let ld_library_path = runseal_spec::paths::path_list(&config.environment, "LD_LIBRARY_PATH");
    let closure_problems =
        runseal_closure::check_tree(&tree, &ld_library_path, &manifest.known_unmet())?;
    let mut report = VerifyReport {
        runtime: dir.display().to_string(),
        ok: false,
        validation,
        closure_problems,
        integrity_differences,
        files: manifest.files,
        sandbox_skipped: None,
        isolation_problems: Vec::new(),
        smoke_tests: Vec::new(),
    };
    if report.validation.valid {
        report.isolation_problems = isolation_problems(dir)?;
        let set = runseal_closure::ProfileSet::load(&[profile_dir.to_path_buf()])?;
        let names = if profile.is_empty() {
            manifest.profiles.clone()
        } else {
            profile.to_vec()
        };
        let paths = manifest.entries.keys().map(|p| p.as_path());
        let profiles = if names.is_empty() {
            runseal_seal::profiles_for(&config, &[], &set, paths)?
        } else {
            names
                .iter()
                .map(|n| set.get(n))
                .collect::<Result<Vec<_>, _>>()?
        };
        // Every learn command, recorded or named, must run in the sealed runtime as it ran
        // on the host: a learned runtime is proven like a profiled one.
        let mut learned: Vec<Vec<String>> =
            manifest.learned().into_iter().map(|s| s.command).collect();
        let named = config
            .learn
            .iter()
            .chain(profiles.iter().flat_map(|p| &p.learn));
        for command in named {
            if !command.is_empty() && !learned.contains(command) {
                learned.push(command.clone());
            }
        }
        for command in learned {
            let test = runseal_closure::SmokeTest {
                name: runseal_closure::command_line(&command),
                command,
                expect: String::new(),
                files: Default::default(),
            };
            let (passed, detail) = smoke(dir, &test)?;
            report.smoke_tests.push(SmokeResult {
                profile: "learned".into(),
                name: test.name,
                passed,
                detail,
            });
        }
        for profile in profiles {
            for test in &profile.smoke {
                let (passed, detail) = smoke(dir, test)?;
                report.smoke_tests.push(SmokeResult {
                    profile: profile.name.clone(),
                    name: test.name.clone(),
                    passed,
                    detail,
                });
            }
        }
    } else {
        report.sandbox_skipped = Some("runtime.yml is invalid, so no job may run on it".into());
    }
    report.ok = report.validation.valid
        && report.closure_problems.is_empty()
        && report.integrity_differences.is_empty()
        && report.isolation_problems.is_empty()
        && report.smoke_tests.iter().all(|s| s.passed);
    if json {
        print_json(&report)?;
    } else {
        print_human(&report, &tree);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `runseal run`, as a child process: the sandbox must start from a single-threaded process,
/// and the checks above ran on a thread pool.
fn runseal_run(dir: &Path) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("run").arg("--runtime").arg(dir);
    Ok(command)
}

fn isolation_problems(dir: &Path) -> anyhow::Result<Vec<String>> {
    let out = runseal_run(dir)?.arg("--mount-table").output()?;
    anyhow::ensure!(
        out.status.success(),
        "the isolation probe failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let options = RunOptions {
        workdir: None,
        env: Vec::new(),
        env_files: Vec::new(),
        volumes: Vec::new(),
        limits: Default::default(),
        network: Default::default(),
        user: None,
        command: Vec::new(),
        mount_table: true,
    };
    let job = job_for(dir, options)?;
    Ok(runseal_sandbox::check_mount_table(
        &job,
        &String::from_utf8_lossy(&out.stdout),
    ))
}

fn smoke(dir: &Path, test: &runseal_closure::SmokeTest) -> anyhow::Result<(bool, String)> {
    let work = tempfile::Builder::new()
        .prefix("runseal-verify")
        .tempdir()?;
    for (name, content) in &test.files {
        anyhow::ensure!(
            !name.contains('/'),
            "smoke test file `{name}` must be a plain name"
        );
        std::fs::write(work.path().join(name), content)?;
    }
    // The work dir is the job's: it runs as the default user, not as root.
    let user = runseal_sandbox::DEFAULT_USER;
    std::os::unix::fs::chown(work.path(), Some(user.uid), Some(user.gid))?;
    let out = runseal_run(dir)?
        .arg("--workdir")
        .arg(work.path())
        .args(["--timeout", SMOKE_TIMEOUT_SECS, "--"])
        .args(&test.command)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = out.status.success() && text.contains(&test.expect);
    let detail = if passed {
        String::new()
    } else {
        format!(
            "exit {}; output: {}",
            out.status
                .code()
                .map_or("by signal".into(), |c| c.to_string()),
            text.trim().lines().take(5).collect::<Vec<_>>().join(" | ")
        )
    };
    Ok((passed, detail))
}

fn print_human(report: &VerifyReport, tree: &Path) {
    for v in &report.validation.violations {
        println!(
            "{}: {}: {}",
            report.validation.file.display(),
            v.field,
            v.reason
        );
    }
    for p in &report.closure_problems {
        println!("{}{}: {}", tree.display(), p.path.display(), p.problem);
    }
    for d in &report.integrity_differences {
        println!("{}{}: {}", tree.display(), d.path.display(), d.change);
    }
    for problem in &report.isolation_problems {
        println!("{}: isolation: {problem}", report.runtime);
    }
    for test in &report.smoke_tests {
        let verdict = if test.passed { "ok" } else { "FAILED" };
        println!(
            "{}: smoke {} `{}`: {verdict} {}",
            report.runtime, test.profile, test.name, test.detail
        );
    }
    if let Some(reason) = &report.sandbox_skipped {
        println!("{}: sandbox checks skipped: {reason}", report.runtime);
    }
    let verdict = if report.ok { "verified" } else { "FAILED" };
    println!(
        "{}: {verdict}: runtime.yml {}, closure {}, {} of {} files intact, isolation {}, {}/{} smoke tests passed",
        report.runtime,
        if report.validation.valid { "valid" } else { "invalid" },
        if report.closure_problems.is_empty() { "complete" } else { "incomplete" },
        if report.integrity_differences.is_empty() { "all" } else { "not all" },
        report.files,
        if report.sandbox_skipped.is_some() {
            "not checked"
        } else if report.isolation_problems.is_empty() {
            "proven"
        } else {
            "BROKEN"
        },
        report.smoke_tests.iter().filter(|s| s.passed).count(),
        report.smoke_tests.len(),
    );
}
