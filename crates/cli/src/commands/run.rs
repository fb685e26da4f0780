use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runseal_sandbox::{Config, Job, JobRequest, Limits, Network, NetworkMaker, User, Volume};

pub struct RunOptions {
    pub workdir: Option<PathBuf>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub volumes: Vec<Volume>,
    pub limits: Limits,
    pub network: Network,
    pub user: Option<User>,
    pub command: Vec<String>,
    pub mount_table: bool,
}

/// Runs the job with the limits of `config` (the default config file if `None`) where
/// `options` set none; every failure of runseal is reported here and exits 125, so that the
/// job's own exit codes stay unambiguous.
pub fn run(root: &Path, runtime: &str, config: Option<&Path>, mut options: RunOptions) -> ExitCode {
    let show_mounts = options.mount_table;
    // The job's network namespace is made beside what follows (reading the config and the
    // runtime, checking it); should that fail, the maker is waited for and its namespace
    // dropped.
    let network = match (options.network, show_mounts) {
        (Network::None, false) => NetworkMaker::start().ok(),
        _ => None,
    };
    let started = Config::load(config)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            options.limits = options.limits.or(&config.limits);
            Ok(runseal_spec::resolve(root, runtime)?)
        })
        .and_then(|dir| job_for(&dir, options))
        .and_then(|job| {
            if show_mounts {
                print!("{}", runseal_sandbox::mount_table(&job)?);
                return Ok(0);
            }
            tracing::info!(
                runtime = %job.runtime_dir.display(),
                command = ?job.command,
                user = ?job.user,
                network = ?job.network,
                limits = ?job.limits,
                "job start"
            );
            let outcome = runseal_sandbox::run_in(&job, network)?;
            tracing::info!(?outcome, exit_code = outcome.exit_code(), "job exit");
            if let Some(reason) = outcome.reason() {
                eprintln!("runseal: {reason}");
            }
            Ok(outcome.exit_code())
        });
    exit_code(started)
}

/// The job's exit code; else runseal's own failure, reported, with 125 (or the sandbox's
/// 126/127), so that the job's own exit codes stay unambiguous.
pub fn exit_code(ended: anyhow::Result<i32>) -> ExitCode {
    match ended {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            let code = err
                .downcast_ref::<runseal_sandbox::Error>()
                .map(|e| e.exit_code().clamp(0, 255) as u8)
                .unwrap_or(runseal_sandbox::SETUP_FAILED as u8);
            eprintln!("runseal: error: {}", crate::output::chain(&err));
            ExitCode::from(code)
        }
    }
}

/// The job `options` describe on the runtime in `dir`, refused unless the runtime is valid.
pub fn job_for(dir: &Path, options: RunOptions) -> anyhow::Result<Job> {
    let config = match runseal_seal::runnable_config(dir) {
        Err(runseal_seal::Error::Invalid { file, violations }) => {
            let mut text = format!(
                "{} is not a valid sealed runtime; nothing was run:",
                dir.display()
            );
            for v in &violations {
                text.push_str(&format!(
                    "\n  {}: {}: {}",
                    file.display(),
                    v.field,
                    v.reason
                ));
            }
            text.push_str(&format!(
                "\nhint: run `runseal seal {}` first",
                dir.display()
            ));
            anyhow::bail!(text);
        }
        other => other?,
    };
    let env = job_env(&options)?;
    let request = JobRequest {
        command: options.command,
        env,
        workdir: options.workdir,
        limits: options.limits,
        network: options.network,
        user: options.user,
        volumes: options.volumes,
    };
    Ok(Job::for_runtime(dir, config, request)?)
}

/// The job's variables: those of each --env-file, then --env; a bare NAME takes this
/// process's value.
pub fn job_env(options: &RunOptions) -> anyhow::Result<Vec<(String, String)>> {
    let inherit = |name: &str| std::env::var(name).ok();
    let mut env = Vec::new();
    for file in &options.env_files {
        let lines = env_file_lines(file)?;
        let parsed = runseal_sandbox::parse_env(&lines, Some(&inherit))
            .map_err(|e| anyhow::anyhow!("--env-file {}: {e}", file.display()))?;
        env.extend(parsed);
    }
    env.extend(
        runseal_sandbox::parse_env(&options.env, Some(&inherit))
            .map_err(|e| anyhow::anyhow!("--env {e}"))?,
    );
    Ok(env)
}

/// The variables of an env file, docker's format: `K=V` or a bare `K` a line, with blank
/// lines and `#` comments skipped.
fn env_file_lines(file: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("--env-file {}: {e}", file.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect())
}
