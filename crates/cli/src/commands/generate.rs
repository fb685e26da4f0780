//! `generate`: completion scripts and man pages made from the clap definition itself, so
//! they cannot drift from `--help`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Args, Generated};

pub fn run(what: Generated) -> anyhow::Result<ExitCode> {
    let command = Args::command();
    match what {
        Generated::Completions { shell } => {
            let mut command = with_help_tree(command);
            // Into a buffer first: clap_complete panics on a failed write, and a closed pipe
            // must stay the quiet success it is everywhere else.
            let mut script = Vec::new();
            let name = command.get_name().to_owned();
            clap_complete::generate(shell, &mut command, name, &mut script);
            std::io::stdout()
                .write_all(&script)
                .context("write completion script")?;
        }
        Generated::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("write man pages into {}", dir.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `command` built, with the `help` subcommand naming the nested subcommands too (`help
/// jobs logs`). clap makes `help` before it builds the subcommands, whose own subcommands
/// are deferred with their arguments (see [`crate::cli::Command`]), so it lacks them.
fn with_help_tree(mut command: clap::Command) -> clap::Command {
    command.build();
    let help_bin = command
        .find_subcommand("help")
        .and_then(clap::Command::get_bin_name)
        .unwrap_or("help")
        .to_owned();
    let nested: Vec<(String, Vec<clap::Command>)> = command
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help" && own_subcommands(sub).next().is_some())
        .map(|sub| {
            let bin = format!("{help_bin} {}", sub.get_name());
            let entries = own_subcommands(sub).map(|s| help_entry(s, &bin)).collect();
            (sub.get_name().to_owned(), entries)
        })
        .collect();
    command.mut_subcommand("help", |mut help| {
        for (name, entries) in nested {
            help = help.mut_subcommand(name, |entry| entry.subcommands(entries));
        }
        help
    })
}

/// A subcommand as the `help` subcommand under `parent_bin` lists it, as clap copies one
/// there: its name, what it is about and its own, with no flags or `help` of its own.
fn help_entry(command: &clap::Command, parent_bin: &str) -> clap::Command {
    let bin = format!("{parent_bin} {}", command.get_name());
    let mut entry = clap::Command::new(command.get_name().to_owned())
        .bin_name(bin.clone())
        .hide(command.is_hide_set())
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .subcommands(own_subcommands(command).map(|sub| help_entry(sub, &bin)));
    if let Some(about) = command.get_about() {
        entry = entry.about(about.clone());
    }
    entry
}

/// `command`'s subcommands but the `help` that building it added.
fn own_subcommands(command: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    command
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
}
