//! The daemon's helper processes: single-threaded, so they can clone a job's or a build's
//! namespaces. Each reads its work from the 0600 input file the daemon wrote, dies with the
//! daemon, and writes its report to a file of its own (its stdout and stderr are the job's
//! output, which the job could forge).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runseal_closure::Root;
use runseal_sandbox::{BuildSpec, Job, JobRequest, Network, NetworkMaker, Outcome};
use runseal_seal::{NoProgress, SealOptions};
use serde::{Deserialize, Serialize};

use crate::tasks::Envelope;

/// A job to run.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunWork {
    pub runtime_dir: PathBuf,
    pub request: JobRequest,
}

/// What a run helper tells the daemon beside the job's output and exit code.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunReport {
    /// The job was killed for reaching its memory limit.
    pub oom: bool,
    /// The signal that ended the job, if one did.
    pub signal: Option<i32>,
}

/// A runtime to build, seal and verify.
#[derive(Debug, Serialize, Deserialize)]
pub struct BuildWork {
    pub script: PathBuf,
    pub name: Option<String>,
    pub root: PathBuf,
    pub profile_dir: PathBuf,
    pub profiles: Vec<String>,
}

/// Reads the envelope at `input`, after making sure this helper dies with the daemon:
/// `PR_SET_PDEATHSIG`, then a check that the parent is still the daemon that wrote it (had
/// it died before the prctl, the signal would never come).
fn read_input<T: for<'de> Deserialize<'de>>(input: &Path) -> anyhow::Result<Envelope<T>> {
    runseal_sandbox::die_with_parent()?;
    let envelope: Envelope<T> = serde_json::from_slice(&std::fs::read(input)?)?;
    let parent = rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get());
    if parent != i32::try_from(envelope.parent).ok() {
        anyhow::bail!("runseald (pid {}) is gone", envelope.parent);
    }
    Ok(envelope)
}

fn write_report(path: &Path, report: &impl Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec(report)?)?;
    Ok(())
}

/// Runs one job; its stdout and stderr are the helper's, its exit code the helper's.
pub fn run(input: &Path) -> ExitCode {
    let outcome = read_input::<RunWork>(input).and_then(|input| {
        // The job's network namespace is made beside the reading and checking of its runtime.
        let network = match input.work.request.network {
            Network::None => NetworkMaker::start().ok(),
            Network::Host => None,
        };
        let config = runseal_seal::runnable_config(&input.work.runtime_dir)?;
        let job = Job::for_runtime(&input.work.runtime_dir, config, input.work.request)?;
        let outcome = runseal_sandbox::run_in(&job, network)?;
        if let Some(reason) = outcome.reason() {
            eprintln!("runseald: {reason}");
        }
        let signal = match outcome {
            Outcome::Signaled(signal) => Some(signal),
            Outcome::OutOfMemory { .. } => Some(outcome.exit_code() - 128),
            Outcome::Exited(_) | Outcome::TimedOut => None,
        };
        let report = RunReport {
            oom: matches!(outcome, Outcome::OutOfMemory { .. }),
            signal,
        };
        write_report(&input.report, &report)?;
        Ok(outcome.exit_code())
    });
    match outcome {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("runseald: error: {e:#}");
            // The CLI's codes: 126/127 when the command cannot run or is not there.
            let code = e.downcast_ref::<runseal_sandbox::Error>().map_or(
                runseal_sandbox::SETUP_FAILED,
                runseal_sandbox::Error::exit_code,
            );
            ExitCode::from(code.clamp(0, 255) as u8)
        }
    }
}

/// What a build helper tells the daemon: the runtime it built, the seal and the checks.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BuildReport {
    pub runtime: Option<PathBuf>,
    /// The sealed runtime's inventory (files, size, mounts).
    pub seal: Option<serde_json::Value>,
    pub verify: Option<Verify>,
    /// Why the build failed, in runseal's words; the script's own are in the log.
    pub error: Option<String>,
}

/// `runseal verify`'s static checks of a freshly sealed runtime.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verify {
    pub ok: bool,
    pub valid: bool,
    /// Symlinks, interpreters or libraries that do not resolve inside the sealed tree.
    #[schema(value_type = Vec<Object>)]
    pub closure_problems: serde_json::Value,
    /// Files that differ from the manifest.
    #[schema(value_type = Vec<Object>)]
    pub integrity_differences: serde_json::Value,
}

fn verify(dir: &Path) -> anyhow::Result<Verify> {
    let validation = runseal_seal::validate_runtime(dir, runseal_spec::RuleOptions::default())?;
    let tree = runseal_seal::Layout::new(dir).isolated();
    let (manifest, differences) = runseal_seal::check_integrity(&tree)?;
    let library_path = validation.config.as_ref().map_or_else(Vec::new, |config| {
        runseal_spec::paths::path_list(&config.environment, "LD_LIBRARY_PATH")
    });
    let problems = runseal_closure::check_tree(&tree, &library_path, &manifest.known_unmet())?;
    Ok(Verify {
        ok: validation.valid && problems.is_empty() && differences.is_empty(),
        valid: validation.valid,
        closure_problems: serde_json::to_value(problems)?,
        integrity_differences: serde_json::to_value(differences)?,
    })
}

/// Builds, seals and verifies one runtime; the script's output is the helper's.
pub fn build(input: &Path) -> ExitCode {
    let input = match read_input::<BuildWork>(input) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("runseald: error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let work = input.work;
    let options = SealOptions {
        profiles: work.profiles,
        profile_dirs: vec![work.profile_dir],
        store: Some(work.root.clone()),
        ..SealOptions::default()
    };
    let spec = BuildSpec {
        script: work.script,
        runtimes_root: work.root,
        name: work.name,
    };
    let seal = |merged: &Path, dir: &Path| {
        runseal_seal::seal_from(&Root::new(merged), dir, &options, &NoProgress)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let built = runseal_sandbox::build_in_overlay(&spec, &seal)
        .map_err(anyhow::Error::from)
        .and_then(|dir| {
            let seal = serde_json::to_value(runseal_seal::inventory::info(&dir)?)?;
            Ok((dir.clone(), seal, verify(&dir)?))
        });
    let (report, code) = match built {
        Ok((dir, seal, verify)) => {
            let ok = verify.ok;
            let report = BuildReport {
                runtime: Some(dir),
                seal: Some(seal),
                verify: Some(verify),
                error: None,
            };
            (report, if ok { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("runseald: error: {e:#}");
            let report = BuildReport {
                error: Some(format!("{e:#}")),
                ..BuildReport::default()
            };
            (report, 1)
        }
    };
    if let Err(e) = write_report(&input.report, &report) {
        eprintln!("runseald: error: {e:#}");
    }
    ExitCode::from(code)
}
