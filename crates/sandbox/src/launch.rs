//! The three processes of a job. The caller (outside) creates the cgroups and clones the
//! sandbox's init into new namespaces, and into the job's cgroups (v1 ones init enters
//! itself, first thing: see [`Joining`]); init builds the root, then forks the job, which drops
//! every privilege, loads seccomp and execs the command; init reaps until the job exits and
//! exits with its status, which tears the PID namespace down. Setup failures travel to the
//! caller over a pipe as text, so the user sees why, not just a dead child.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{getpid, waitpid, Pid, Signal, WaitOptions, WaitStatus};
use seccompiler::BpfProgram;

use crate::cgroup::{Cgroups, Joining};
use crate::error::{Error, Result};
use crate::job::{Job, Network, Outcome};
use crate::report::Report;
use crate::rootfs::{apply, detach_trees, plan_root, HostFds, Step, Trees};
use crate::seccomp;
use crate::sys::{self, Forked, RealMounts};

/// Where each job's root is assembled, inside the job's own mount namespace; on the host it
/// stays an empty directory.
const ROOT_MOUNTPOINT: &str = "/run/runseal/root";
/// Exit code when the sandbox itself fails (like container runtimes' 125).
pub const SETUP_FAILED: i32 = 125;
const NOT_EXECUTABLE: i32 = 126;
const NOT_FOUND: i32 = 127;
/// How long a job may take to exit after runseal passes it SIGINT, SIGTERM or SIGHUP.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the sandbox is started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Run,
    /// Build the job root, report the job's mount table, run nothing.
    ShowMounts,
}

/// Runs `job` to completion.
pub fn run(job: &Job) -> Result<Outcome> {
    if job.command.is_empty() {
        return Err(Error::NoCommand);
    }
    match start(job, Purpose::Run)? {
        Started::Finished(outcome) => Ok(outcome),
        Started::Mounts(_) => unreachable!("a job started to run reports an outcome"),
    }
}

/// Builds `job`'s root exactly as [`run`] would and returns the kernel's view of it
/// (`/proc/self/mountinfo` inside the job), without running the command.
pub fn mount_table(job: &Job) -> Result<String> {
    match start(job, Purpose::ShowMounts)? {
        Started::Mounts(table) => Ok(table),
        Started::Finished(outcome) => Err(Error::Setup {
            message: format!("the mount probe ended without a report ({outcome:?})"),
            exit_code: SETUP_FAILED,
        }),
    }
}

enum Started {
    Finished(Outcome),
    Mounts(String),
}

fn start(job: &Job, purpose: Purpose) -> Result<Started> {
    let steps = plan_root(job)?;
    let filters = seccomp::job_filters()?;
    std::fs::create_dir_all(ROOT_MOUNTPOINT)
        .map_err(|e| Error::sys(format!("mkdir -p {ROOT_MOUNTPOINT}"), e))?;
    let trees = detach_trees(&mut RealMounts, Some(job), &HostFds::open()?, &steps)?;
    let job_name = unique_name();
    let cgroups = if job.limits.needs_cgroup() {
        Some(Cgroups::create(&job_name, &job.limits)?)
    } else {
        None
    };

    let joining = cgroups.as_ref().map(Cgroups::joining).transpose()?;

    // Init learns from `alive` whether runseal died before init's death signal was armed:
    // no byte is ever written, and its end reads EOF once runseal's end is closed. Held
    // open until the job is over.
    let (alive_read, alive_write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
        .map_err(|e| Error::sys("pipe2(O_CLOEXEC | O_NONBLOCK)", e))?;
    let (report_read, report_write) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::sys("pipe2(O_CLOEXEC)", e))?;
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if job.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    if purpose == Purpose::Run {
        sys::block_waited_signals()?;
    }
    let into = joining.as_ref().and_then(Joining::clone_into);
    match sys::clone_into_cgroup(flags, into)? {
        Forked::Child => {
            drop((alive_write, report_read));
            let root = Root {
                steps: &steps,
                trees,
            };
            let start = Start {
                joining,
                alive: alive_read,
            };
            init(job, purpose, root, &filters, start, report_write)
        }
        Forked::Parent(init_pid) => {
            drop((alive_read, report_write, joining));
            let _alive = alive_write;
            match Report::receive(report_read) {
                None => {}
                Some(Report::Mounts(table)) => {
                    wait(init_pid)?;
                    return Ok(Started::Mounts(table));
                }
                Some(report) => {
                    let message = match report {
                        Report::Failed(message) => message,
                        other => format!("the job's init sent {other:?}"),
                    };
                    let status = wait(init_pid)?;
                    let code = status.exit_status().unwrap_or(SETUP_FAILED);
                    return Err(Error::Setup {
                        message,
                        exit_code: code,
                    });
                }
            }
            let outcome = wait_for_job(init_pid, job.limits.timeout).map(|outcome| {
                let oom_kills = cgroups.as_ref().map_or(0, Cgroups::oom_kills);
                outcome.with_oom_kills(oom_kills, job.limits.memory_bytes)
            });
            drop(cgroups);
            outcome.map(Started::Finished)
        }
    }
}

/// What init builds the job's root from; every tree it binds was made before the clone.
struct Root<'a> {
    steps: &'a [Step],
    trees: Trees,
}

/// What init checks and joins before it does anything else.
struct Start {
    /// The job's cgroups, unless none are needed.
    joining: Option<Joining>,
    /// Reads EOF once runseal is gone.
    alive: OwnedFd,
}

/// PID 1 of the job's namespaces.
fn init(
    job: &Job,
    purpose: Purpose,
    root: Root,
    filters: &[BpfProgram],
    start: Start,
    report: OwnedFd,
) -> ! {
    if let Err(e) = prepare(job, root, start) {
        fail(&report, SETUP_FAILED, &e.to_string());
    }
    if purpose == Purpose::ShowMounts {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Report::Mounts(table).send(&report);
        sys::exit_now(0);
    }
    match sys::fork() {
        Err(e) => fail(&report, SETUP_FAILED, &e.to_string()),
        Ok(Forked::Child) => {
            let (code, message) = exec_job(job, filters);
            fail(&report, code, &message)
        }
        Ok(Forked::Parent(job_pid)) => {
            drop(report);
            sys::exit_now(reap(job_pid))
        }
    }
}

fn prepare(job: &Job, root: Root, start: Start) -> Result<()> {
    sys::die_with_parent()?;
    // Armed now; had runseal died before, nothing would kill this process with it.
    match rustix::io::read(&start.alive, &mut [0u8; 1]) {
        Err(rustix::io::Errno::AGAIN) => {}
        _ => sys::exit_now(SETUP_FAILED),
    }
    // Before anything is forked: the job starts inside its cgroups.
    if let Some(joining) = &start.joining {
        joining.join_v1()?;
    }
    sys::unshare_cgroup_namespace()?;
    sys::set_hostname(crate::identity::HOSTNAME)?;
    if job.network == Network::None {
        sys::loopback_up()?;
    }
    let mountpoint = sys::open_dir(Path::new(ROOT_MOUNTPOINT))?;
    apply(&mut RealMounts, root.trees, mountpoint.as_fd(), root.steps)
}

/// In the job process: drop everything, then exec. Returns only on failure.
fn exec_job(job: &Job, filters: &[BpfProgram]) -> (i32, String) {
    let setup = sys::new_session()
        .and_then(|()| sys::unblock_waited_signals())
        .and_then(|()| sys::drop_privileges(job.user.uid, job.user.gid))
        .and_then(|()| sys::close_inherited_fds());
    if let Err(e) = setup {
        return (SETUP_FAILED, e.to_string());
    }
    let mut command = Command::new(&job.command[0]);
    command
        .args(&job.command[1..])
        .env_clear()
        .envs(job.environment.iter().map(|(k, v)| (k, v)))
        .current_dir(if job.workdir.is_some() {
            "/work"
        } else {
            "/tmp"
        });
    if let Err(e) = seccomp::load(filters) {
        return (SETUP_FAILED, e.to_string());
    }
    let error = command.exec();
    let code = if error.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        NOT_EXECUTABLE
    };
    (code, format!("{}: {error}", job.command[0]))
}

/// Reports `message` to the caller and exits.
fn fail(report: &OwnedFd, code: i32, message: &str) -> ! {
    Report::Failed(message.to_string()).send(report);
    sys::exit_now(code)
}

/// Reaps every child until the job exits; returns the job's status as an exit code.
fn reap(job: Pid) -> i32 {
    loop {
        // `wait`, not `waitpid(None)`: the job has its own session, so its process group
        // differs from init's.
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == job => return exit_code_of(status),
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return SETUP_FAILED,
        }
    }
}

fn exit_code_of(status: WaitStatus) -> i32 {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        _ => SETUP_FAILED,
    }
}

pub(crate) fn wait(pid: Pid) -> Result<WaitStatus> {
    loop {
        match waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return Ok(status),
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::sys(format!("waitpid({pid:?})"), e)),
        }
    }
}

/// Waits for init. Past `timeout` it kills init, which kills every process of the
/// namespace. When runseal itself gets SIGINT, SIGTERM or SIGHUP, the job gets that signal
/// and [`STOP_GRACE`] to exit, then init is killed. The caller removes the cgroups after.
/// One thread does all of it: init's exit arrives as a SIGCHLD among the waited signals.
fn wait_for_job(init: Pid, timeout: Option<Duration>) -> Result<Outcome> {
    let mut watchdog = timeout.map(|limit| Instant::now() + limit);
    let mut timed_out = false;
    // The signal runseal was stopped with, and when the job's grace ends.
    let mut stopped_by: Option<i32> = None;
    let mut grace_end: Option<Instant> = None;
    let mut killed_for: Option<i32> = None;
    let status = loop {
        match waitpid(Some(init), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => break status,
            Ok(None) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::sys(format!("waitpid({init:?}, WNOHANG)"), e)),
        }
        let deadline = watchdog.into_iter().chain(grace_end).min();
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match sys::wait_signal(left)? {
            Some(libc::SIGCHLD) => {}
            Some(signal) if stopped_by.is_none() => {
                // Like `docker stop`: the job gets the signal and a grace period to end on
                // its own; then the whole namespace is killed.
                for job in init_children(init) {
                    let _ = Signal::from_named_raw(signal).map(|s| sys::kill(job, s));
                }
                stopped_by = Some(signal);
                grace_end = Some(Instant::now() + STOP_GRACE);
            }
            Some(_) => {}
            None => {
                let now = Instant::now();
                if grace_end.is_some_and(|end| now >= end) {
                    grace_end = None;
                    killed_for = stopped_by;
                    let _ = sys::kill(init, Signal::KILL);
                }
                if watchdog.is_some_and(|end| now >= end) {
                    watchdog = None;
                    timed_out = true;
                    let _ = sys::kill(init, Signal::KILL);
                }
            }
        }
    };
    if let Some(signal) = killed_for {
        return Ok(Outcome::Signaled(signal));
    }
    if timed_out {
        return Ok(Outcome::TimedOut);
    }
    Ok(match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) if code > 128 && code < 128 + 65 => Outcome::Signaled(code - 128),
        (Some(code), _) => Outcome::Exited(code),
        (None, Some(signal)) => Outcome::Signaled(signal),
        _ => Outcome::Exited(SETUP_FAILED),
    })
}

/// Host pids of init's children: the job process.
fn init_children(init: Pid) -> Vec<Pid> {
    let raw = init.as_raw_nonzero();
    std::fs::read_to_string(format!("/proc/{raw}/task/{raw}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok().and_then(Pid::from_raw))
        .collect()
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("job-{}-{nanos}", getpid().as_raw_nonzero())
}
