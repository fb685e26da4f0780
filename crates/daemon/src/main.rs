//! `runseald`: the runseal service. It serves the same library calls as the `runseal` CLI
//! (list, info, validate, seal, remove, build, run) as JSON over HTTP on a Unix socket, with
//! jobs and builds as resources whose output is spooled to disk and streamed.
//!
//! Jobs and builds need a single-threaded process to clone their namespaces from, which a
//! multi-threaded server is not; the daemon runs each in a helper process of its own binary
//! (`runseald --helper run|build`), which calls the sandbox library directly.
#![forbid(unsafe_code)]

mod api;
mod body;
mod builds;
mod confine;
mod errors;
mod helper;
mod jobs;
mod quota;
mod runtimes;
mod server;
mod spool;
mod tasks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
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
    /// Give this group (a name or a gid) access to the socket (0660); else root only (0600).
    /// Its members run jobs only as themselves, on dirs they own, and see only their own
    /// jobs; sealing, removing and building stay root's.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
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
    /// The daemon's own dir (0700): job and build output is spooled below it. What an
    /// earlier daemon left there is removed at start.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/runseal/daemon")]
    state_dir: PathBuf,
    /// A dir build scripts may lie under (repeatable); with none, builds are refused.
    #[arg(long, value_name = "DIR")]
    script_dir: Vec<PathBuf>,
    /// A dir work dirs may lie under (repeatable); with none, jobs get no work dir.
    #[arg(long, value_name = "DIR")]
    workdir_root: Vec<PathBuf>,
    /// How many jobs and builds may run at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    max_jobs: u16,
    /// How many more may wait for one to end; requests beyond get 429.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_queue: u16,
    /// How many jobs and builds one client other than root may have queued or running at
    /// once; more get 429, so that one user cannot take every slot.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    max_per_client: u16,
    /// The most output a job or build keeps (`64M`); the rest is dropped and `truncated`.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = size)]
    output_cap: u64,
    /// How long an ended job or build, and its output, is kept.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    keep_finished: u64,
    /// The most output all ended jobs and builds keep together (`1G`); past it the oldest
    /// are forgotten early. Running ones add at most --output-cap each.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = size)]
    kept_output: u64,
    /// How long jobs get after SIGTERM (a DELETE, or the daemon's own SIGTERM) before they
    /// are killed.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    stop_grace: u64,
    /// How many connections are served at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(2..))]
    max_connections: u32,
    /// How many of those one client other than root may hold; clients other than root
    /// together hold at most seven eighths, so that root can always connect.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_client_connections: u32,
    /// How long a client has to send a request's head.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// The largest request body (`1M`).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = size)]
    max_body: u64,
    /// How the log (on stderr) is written.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Print the API's OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
    #[arg(long, hide = true, value_parser = ["run", "build"])]
    helper: Option<String>,
    #[arg(long, hide = true)]
    input: Option<PathBuf>,
}

fn size(text: &str) -> Result<u64, String> {
    runseal_sandbox::parse_size(text)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let input = args.input.as_deref().unwrap_or(Path::new("/dev/null"));
    match args.helper.as_deref() {
        Some("run") => helper::run(input),
        Some(_) => helper::build(input),
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

fn init_log(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        log.json().init();
    } else {
        log.init();
    }
}

/// The dirs given for `flag`, canonical, so that a path is checked against their real place.
fn canonical(dirs: &[PathBuf], flag: &str) -> anyhow::Result<Vec<PathBuf>> {
    dirs.iter()
        .map(|d| {
            d.canonicalize()
                .with_context(|| format!("{flag} {}", d.display()))
        })
        .collect()
}

/// The gid of `group`, a name in /etc/group or a number.
fn group_id(group: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").context("/etc/group")?;
    groups
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&group))
        .and_then(|fields| fields.get(2)?.parse().ok())
        .with_context(|| format!("--socket-group {group}: no such group in /etc/group"))
}

/// Binds the socket so that nobody but root can connect until its mode is set: created
/// 0600 (the umask set before `bind`, as a chmod after it leaves a window to connect in),
/// then handed to `group` and only then opened to it.
fn bind(socket: &Path, group: Option<u32>) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let _ = std::fs::remove_file(socket);
    let umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let listener = tokio::net::UnixListener::bind(socket);
    rustix::process::umask(umask);
    let listener = listener.with_context(|| format!("bind {}", socket.display()))?;
    if let Some(gid) = group {
        rustix::fs::chown(socket, None, Some(rustix::fs::Gid::from_raw(gid)))
            .with_context(|| format!("chown {}", socket.display()))?;
        rustix::fs::chmod(socket, rustix::fs::Mode::from_raw_mode(0o660))
            .with_context(|| format!("chmod {}", socket.display()))?;
    }
    Ok(listener)
}

fn serve(args: Args) -> anyhow::Result<()> {
    init_log(&args.log_format);
    let defaults = runseal_sandbox::Config::load(args.config.as_deref())?.limits;
    let script_dirs = canonical(&args.script_dir, "--script-dir")?;
    let workdir_roots = canonical(&args.workdir_root, "--workdir-root")?;
    let group = args.socket_group.as_deref().map(group_id).transpose()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let served = runtime.block_on(async {
        let tasks = tasks::Registry::open(tasks::Settings {
            state_dir: args.state_dir.clone(),
            helper: std::env::current_exe()?,
            max_jobs: usize::from(args.max_jobs),
            max_queue: usize::from(args.max_queue),
            max_per_client: usize::from(args.max_per_client),
            output_cap: args.output_cap,
            keep_finished: Duration::from_secs(args.keep_finished),
            kept_output: args.kept_output,
            stop_grace: Duration::from_secs(args.stop_grace),
        })
        .with_context(|| format!("--state-dir {}", args.state_dir.display()))?;
        let listener = bind(&args.socket, group)?;
        let state = Arc::new(api::State {
            root: args.root,
            profile_dir: args.profile_dir,
            defaults,
            tasks: Arc::clone(&tasks),
            script_dirs,
            workdir_roots,
        });
        let max_body = usize::try_from(args.max_body).unwrap_or(usize::MAX);
        tracing::info!("listening on {}", args.socket.display());
        let limits = server::Limits {
            max_connections: args.max_connections as usize,
            max_client_connections: args.max_client_connections as usize,
            header_timeout: Duration::from_secs(args.header_timeout),
        };
        server::serve(
            listener,
            api::router(state, max_body),
            limits,
            termination(),
        )
        .await;
        let _ = std::fs::remove_file(&args.socket);
        tracing::info!("stopping: jobs get SIGTERM and {} s", args.stop_grace);
        tasks.shutdown().await;
        anyhow::Ok(())
    });
    // Connections still open (followers of jobs now ended) are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
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
