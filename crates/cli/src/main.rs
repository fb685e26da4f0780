//! `runseal`: seal language runtimes so that jobs see nothing of the host.
#![forbid(unsafe_code)]

mod cli;
mod client;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    runseal_sandbox::restore_default_sigpipe();
    init_logging();
    let args = cli::Args::parse();
    match commands::run(args) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("runseal: error: {}", output::chain(&err));
            ExitCode::from(output::exit_code_of(&err))
        }
    }
}

/// Diagnostics on stderr as `RUST_LOG` asks (`RUST_LOG=runseal=debug`); only warnings
/// otherwise, so that what runseal prints is unchanged unless someone asks for more. Plain
/// text, because stderr is as often a log file as a terminal.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing::level_filters::LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
