//! One module per subcommand; each calls the libraries and prints.

mod seal;
mod validate;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Args, Command};

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = args.root.clone();
    let locate =
        |runtime: &str| -> anyhow::Result<PathBuf> { Ok(runseal_spec::resolve(&root, runtime)?) };
    match args.command {
        Command::Validate {
            runtime,
            allow_writable,
        } => validate::run(&locate(&runtime)?, allow_writable, args.json),
        Command::Seal {
            runtime,
            dry_run,
            profile,
            allow_writable,
            no_wait,
        } => {
            let options = runseal_seal::SealOptions {
                dry_run,
                profile,
                allow_writable,
                no_wait,
            };
            seal::run(&locate(&runtime)?, &options, args.json)
        }
        Command::Verify { runtime } => verify::run(&locate(&runtime)?, args.json),
    }
}
