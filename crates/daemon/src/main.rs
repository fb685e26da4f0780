//! `runseald`: the runseal service. It serves the same library calls as the `runseal` CLI
//! (list, info, validate, seal, remove, build, run) as JSON over HTTP on a Unix socket.
//!
//! Jobs and builds need a single-threaded process to clone their namespaces from, which a
//! multi-threaded server is not; the daemon runs each in a helper process of its own binary
//! (`runseald --helper run|build`), which calls the sandbox library directly.
#![forbid(unsafe_code)]

mod api;
mod body;
mod errors;
mod helper;
mod run;
mod runtimes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The runseal service API on a Unix socket.
///
/// The API is described by its OpenAPI 3.1 document: `GET /v1/openapi.json`, `runseald
/// --openapi`, or docs/openapi.json in the source tree.
#[derive(Debug, Parser)]
#[command(name = "runseald", version, term_width = 100)]
pub struct Args {
    /// The Unix socket to listen on (replaced if it exists).
    #[arg(long, default_value = "/run/runseal/runseald.sock")]
    socket: PathBuf,
    /// Directory holding the runtimes.
    #[arg(long, env = "RUNSEAL_ROOT", default_value = "/opt/runseal/runtimes")]
    root: PathBuf,
    /// Directory of extra runtime profiles.
    #[arg(
        long,
        env = "RUNSEAL_PROFILE_DIR",
        default_value = "/etc/runseal/profiles"
    )]
    profile_dir: PathBuf,
    /// Job defaults (limits) for run requests; a missing default file means the built-in
    /// defaults.
    #[arg(long, env = "RUNSEAL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// How many jobs and builds may run at once; requests beyond it get 429.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    max_jobs: u16,
    /// Print the API's OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
    #[arg(long, hide = true, value_parser = ["run", "build"])]
    helper: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.helper.as_deref() {
        Some("run") => helper::run(),
        Some(_) => helper::build(),
        None if args.openapi => print_openapi(),
        None => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("runseald: error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn print_openapi() -> ExitCode {
    match api::document().to_pretty_json() {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("runseald: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: Args) -> anyhow::Result<()> {
    let defaults = runseal_sandbox::Config::load(args.config.as_deref())?.limits;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        if let Some(dir) = args.socket.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(&args.socket);
        // Whoever can connect can run jobs as the daemon's user: root only, from the moment
        // the socket exists (a chmod after bind leaves a window to connect in).
        let umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let listener = tokio::net::UnixListener::bind(&args.socket);
        rustix::process::umask(umask);
        let listener = listener?;
        let socket = args.socket.clone();
        eprintln!("runseald: listening on {}", args.socket.display());
        let state = api::State {
            root: args.root,
            profile_dir: args.profile_dir,
            helper: std::env::current_exe()?,
            defaults,
            max_jobs: usize::from(args.max_jobs),
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(usize::from(args.max_jobs))),
        };
        let (stopping, stop) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(async {
            termination().await;
            let _ = stopping.send(());
        });
        // In-flight jobs get a grace period; past it, dropping them kills their helpers
        // (and so the jobs) rather than leaving them running with nobody to read them.
        tokio::select! {
            served = server => served?,
            () = async {
                let _ = stop.await;
                tokio::time::sleep(runseal_sandbox::STOP_GRACE).await;
            } => eprintln!("runseald: jobs still running after the grace period are killed"),
        }
        let _ = std::fs::remove_file(&socket);
        Ok(())
    })
}

/// SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
