use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use runseal_closure::{Inclusion, LearnedSet};
use runseal_seal::SealOptions;
use runseal_spec::Mount;
use serde::Deserialize;

use crate::output::{human_bytes, print_json, Bar};

/// What the text shows of a seal report, read from its JSON (as `--json` prints it and
/// runseald answers it), so that both print alike.
#[derive(Deserialize)]
struct Report {
    runtime: PathBuf,
    outcome: String,
    profile: String,
    files: u64,
    bytes: u64,
    copied_files: u64,
    copied_bytes: u64,
    reused_files: u64,
    mounts: Vec<Mount>,
    notes: Vec<String>,
    plan: Option<Plan>,
}

#[derive(Deserialize)]
struct Plan {
    inclusions: Vec<Inclusion>,
    entries: BTreeMap<PathBuf, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    kind: String,
    size: u64,
}

/// What `seal` learns by running the runtime (see `runseal seal --help`).
pub struct Learning {
    /// `--learn`: run every known learn command again, not only those never run.
    pub relearn: bool,
    /// The operator's own learn command, if any.
    pub command: Vec<String>,
    pub timeout: std::time::Duration,
}

/// Runs the learn commands due, before anything else starts a thread (the learner clones
/// into namespaces), and returns what each opened.
fn learn(
    dir: &Path,
    options: &SealOptions,
    learning: &Learning,
) -> anyhow::Result<Vec<LearnedSet>> {
    let mut due = runseal_seal::learn_commands(dir, options, learning.relearn)?;
    if let Some(profile) = detected_profile(dir, options)? {
        let named = SealOptions {
            profiles: vec![profile],
            ..options.clone()
        };
        for command in runseal_seal::learn_commands(dir, &named, learning.relearn)?.commands {
            if !due.commands.contains(&command) {
                due.commands.push(command);
            }
        }
    }
    if !learning.command.is_empty() && !due.commands.contains(&learning.command) {
        due.commands.push(learning.command.clone());
    }
    let mut sets = Vec::new();
    for command in due.commands {
        let line = runseal_closure::command_line(&command);
        let request = runseal_sandbox::LearnRequest {
            command: command.clone(),
            environment: due.environment.clone(),
            timeout: learning.timeout,
            user: None,
        };
        let learned = runseal_sandbox::learn(&request)?;
        tracing::info!(command = %line, files = learned.paths.len(), exit = learned.exit_code, secs = learned.elapsed.as_secs_f64(), "learned");
        let ending = if learned.timed_out {
            format!(
                "timed out after {:.0}s, killed",
                learning.timeout.as_secs_f64()
            )
        } else {
            format!("exit {}", learned.exit_code)
        };
        eprintln!(
            "learn `{line}`: {} paths learned ({ending}, {:.2}s)",
            learned.paths.len(),
            learned.elapsed.as_secs_f64()
        );
        if learned.exit_code != 0 {
            eprintln!("note: learn `{line}` did not succeed; what it opened is learned all the same, and verify runs it again");
        }
        sets.push(LearnedSet {
            command,
            paths: learned.paths,
        });
    }
    Ok(sets)
}

/// The profile a seal of `dir` detects from its closure, when it may be one with learn
/// commands: the closure is planned by a dry run in a child process, so that its threads
/// end there and this process can still learn.
fn detected_profile(dir: &Path, options: &SealOptions) -> anyhow::Result<Option<String>> {
    if !runseal_seal::detection_may_learn(dir, options)? {
        return Ok(None);
    }
    let dry_run = SealOptions {
        dry_run: true,
        ..options.clone()
    };
    let answer = runseal_sandbox::in_child_process(|| {
        match runseal_seal::seal(dir, &dry_run, &runseal_seal::NoProgress) {
            Ok(report) => report.profile.split('+').next().unwrap_or_default().into(),
            // The seal itself fails next, and says why.
            Err(_) => String::new(),
        }
    })?;
    Ok((!answer.is_empty()).then_some(answer))
}

pub fn run(
    dir: &Path,
    mut options: SealOptions,
    learning: &Learning,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    options.learned = learn(dir, &options, learning)?;
    let options = &options;
    tracing::info!(
        runtime = %dir.display(),
        profiles = ?options.profiles,
        dry_run = options.dry_run,
        "seal start"
    );
    let report = runseal_seal::seal(dir, options, &Bar::new(!json))?;
    tracing::info!(
        outcome = ?report.outcome,
        profile = %report.profile,
        files = report.files,
        bytes = report.bytes,
        copied = report.copied_files,
        reused = report.reused_files,
        notes = report.notes.len(),
        secs = started.elapsed().as_secs_f64(),
        "seal finish"
    );
    show(serde_json::to_value(report)?, started, json)
}

/// Prints the report of a seal that began at `started`.
pub fn show(value: serde_json::Value, started: Instant, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let report: Report = serde_json::from_value(value)?;
    let secs = started.elapsed().as_secs_f64();
    match report.outcome.as_str() {
        "planned" => print_plan(&report),
        "unchanged" => println!(
            "{}: already sealed and up to date ({} files, {}); nothing written ({secs:.2}s)",
            report.runtime.display(),
            report.files,
            human_bytes(report.bytes)
        ),
        _ => {
            println!(
                "{}: sealed with profile {}: {} files, {}; copied {} files ({}), reused {} ({secs:.2}s)",
                report.runtime.display(),
                report.profile,
                report.files,
                human_bytes(report.bytes),
                report.copied_files,
                human_bytes(report.copied_bytes),
                report.reused_files,
            );
            print_mounts(&report);
        }
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(report: &Report) {
    println!(
        "{}: would seal with profile {}: {} files, {}",
        report.runtime.display(),
        report.profile,
        report.files,
        human_bytes(report.bytes)
    );
    if let Some(plan) = &report.plan {
        let files = plan.entries.iter().filter(|(_, e)| e.kind == "file");
        crate::output::print_top_level(&runseal_closure::top_level_sizes(
            files.map(|(path, e)| (path.as_path(), e.size)),
        ));
        crate::output::print_inclusions(
            "contents (each path that brings files in, and why)",
            &plan.inclusions,
        );
    }
    print_mounts(report);
}

fn print_mounts(report: &Report) {
    println!("mounts:");
    for mount in &report.mounts {
        println!("  {} -> {} (read-only)", mount.source, mount.target);
    }
}
