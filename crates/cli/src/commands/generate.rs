//! `generate`: completion scripts and man pages made from the clap definition itself, so
//! they cannot drift from `--help`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Args, Generated};

pub fn run(what: Generated) -> anyhow::Result<ExitCode> {
    let mut command = Args::command();
    match what {
        Generated::Completions { shell } => {
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
