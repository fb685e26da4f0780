//! The daemon's helper processes: single-threaded, so they can clone a job's or a build's
//! namespaces. The request comes as JSON on stdin.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runseal_closure::Root;
use runseal_sandbox::{BuildSpec, Job, JobRequest, Outcome};
use runseal_seal::{NoProgress, SealOptions};
use serde::{Deserialize, Serialize};

/// What the daemon hands a run helper.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunInput {
    pub runtime_dir: PathBuf,
    pub request: JobRequest,
    /// Where the helper writes its [`RunReport`]: its stdout and stderr are the job's, so
    /// anything said there could be the job's own words.
    pub report: PathBuf,
}

/// What a run helper tells the daemon beside the job's output and exit code.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunReport {
    /// The job was killed for reaching its memory limit.
    pub oom: bool,
}

/// What the daemon hands a build helper.
#[derive(Debug, Serialize, Deserialize)]
pub struct BuildInput {
    pub script: PathBuf,
    pub name: Option<String>,
    pub root: PathBuf,
    pub profile_dir: PathBuf,
}

fn read_input<T: for<'de> Deserialize<'de>>() -> anyhow::Result<T> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    Ok(serde_json::from_str(&text)?)
}

/// Runs one job; its stdout and stderr are the helper's, its exit code the helper's.
pub fn run() -> ExitCode {
    let outcome = read_input::<RunInput>().and_then(|input| {
        let config = runseal_seal::runnable_config(&input.runtime_dir)?;
        let job = Job::for_runtime(&input.runtime_dir, config, input.request)?;
        let outcome = runseal_sandbox::run(&job)?;
        if let Some(reason) = outcome.reason() {
            eprintln!("runseald: {reason}");
        }
        let report = RunReport {
            oom: matches!(outcome, Outcome::OutOfMemory { .. }),
        };
        std::fs::write(&input.report, serde_json::to_vec(&report)?)?;
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

/// Builds and seals one runtime; prints the runtime dir.
pub fn build() -> ExitCode {
    let outcome = read_input::<BuildInput>().and_then(|input| {
        let spec = BuildSpec {
            script: input.script,
            runtimes_root: input.root,
            name: input.name,
        };
        let options = SealOptions {
            profile_dirs: vec![input.profile_dir],
            ..SealOptions::default()
        };
        let seal = |merged: &Path, dir: &Path| {
            runseal_seal::seal_from(&Root::new(merged), dir, &options, &NoProgress)
                .map(drop)
                .map_err(|e| e.to_string())
        };
        Ok(runseal_sandbox::build_in_overlay(&spec, &seal)?)
    });
    match outcome {
        Ok(dir) => {
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("runseald: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
