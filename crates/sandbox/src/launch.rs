//! The three processes of a job. The caller (outside) clones the sandbox's init into new
//! namespaces; while init builds the root, the caller compiles the job's seccomp filters
//! and takes its cgroups (a slot's: see [`Cgroups`]), and sends both to init (a [`Kit`]).
//! Init then starts the job in the job's cgroups (v1 ones the job enters itself, first
//! thing: see [`Joining`]), and the job drops every privilege, loads seccomp and execs the
//! command.
//! When the job exits, init kills and reaps whatever it left, hands its exit code to the
//! caller over a pipe and exits, which tears the namespaces down while the caller already
//! frees the (empty) cgroups and returns. Setup failures travel to the caller over a pipe as
//! text, so the user sees why, not just a dead child.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::net::{socketpair, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{waitpid, Pid, Signal, WaitOptions, WaitStatus};
use seccompiler::BpfProgram;

use crate::cgroup::{Cgroups, Joining};
use crate::error::{Error, Result};
use crate::job::{Job, Network, Outcome};
use crate::report::Report;
use crate::rootfs::{apply, detach_trees, plan_root, HostFds, Step, Trees};
use crate::seccomp;
use crate::sys::{self, Forked, NetworkMaker, Placement, RealMounts};

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
    run_in(job, None)
}

/// Runs `job` to completion; without the host's network, in the namespace `network` has
/// been making beside the caller since the caller knew a job would run (else one is made
/// when the sandbox is cloned).
pub fn run_in(job: &Job, network: Option<NetworkMaker>) -> Result<Outcome> {
    if job.command.is_empty() {
        return Err(Error::NoCommand);
    }
    match start(job, Purpose::Run, network)? {
        Started::Finished(outcome) => Ok(outcome),
        Started::Mounts(_) => unreachable!("a job started to run reports an outcome"),
    }
}

/// Builds `job`'s root exactly as [`run`] would and returns the kernel's view of it
/// (`/proc/self/mountinfo` inside the job), without running the command.
pub fn mount_table(job: &Job) -> Result<String> {
    match start(job, Purpose::ShowMounts, None)? {
        Started::Mounts(table) => Ok(table),
        Started::Finished(_) => unreachable!("a mount probe reports its table or fails"),
    }
}

enum Started {
    Finished(Outcome),
    Mounts(String),
}

fn start(job: &Job, purpose: Purpose, network: Option<NetworkMaker>) -> Result<Started> {
    let steps = plan_root(job)?;
    std::fs::create_dir_all(ROOT_MOUNTPOINT)
        .map_err(|e| Error::sys(format!("mkdir -p {ROOT_MOUNTPOINT}"), e))?;
    let trees = detach_trees(&mut RealMounts, Some(job), &HostFds::open()?, &steps)?;
    // What the job needs from runseal (see `send_kit`) is made while init builds the root.
    let kit_socket = (purpose == Purpose::Run)
        .then(|| {
            socketpair(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| Error::sys("socketpair(AF_UNIX, SOCK_SEQPACKET)", e))
        })
        .transpose()?;
    let (to_init, from_runseal) = kit_socket.unzip();

    // Init learns from `alive` whether runseal died before init's death signal was armed:
    // no byte is ever written, and its end reads EOF once runseal's end is closed. Held
    // open until the job is over.
    let (alive_read, alive_write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
        .map_err(|e| Error::sys("pipe2(O_CLOEXEC | O_NONBLOCK)", e))?;
    let (report_read, report_write) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::sys("pipe2(O_CLOEXEC)", e))?;
    // Init writes the job's exit code here once nothing of the job runs any more.
    let (ended_read, ended_write) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::sys("pipe2(O_CLOEXEC)", e))?;
    let network = match network {
        Some(maker) if job.network == Network::None => Some(maker.finish()?),
        _ => None,
    };
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if job.network == Network::None && network.is_none() {
        flags |= libc::CLONE_NEWNET;
    }
    if purpose == Purpose::Run {
        sys::block_waited_signals()?;
    }
    match sys::clone_into_namespaces(flags)? {
        Forked::Child => {
            drop((alive_write, report_read, ended_read, to_init));
            let root = Root {
                steps: &steps,
                trees,
                network,
            };
            let start = Start {
                kit: from_runseal,
                alive: alive_read,
            };
            init(job, purpose, root, start, report_write, ended_write)
        }
        Forked::Parent(init_pid) => {
            drop((alive_read, report_write, ended_write, from_runseal, network));
            let _alive = alive_write;
            // runseal works on (`send_kit`) while init builds the root: init starts on
            // another CPU than the one runseal is on now.
            let placement = (purpose == Purpose::Run).then(Placement::here);
            if let Some(placement) = &placement {
                placement.away(init_pid);
            }
            let kit = to_init.zip(placement.as_ref());
            let cgroups = kit
                .map(|(socket, placement)| send_kit(job, &socket, || placement.anywhere(init_pid)))
                .transpose();
            let cgroups = match cgroups {
                Ok(cgroups) => cgroups.flatten(),
                Err(e) => {
                    // Init reads the socket's end and exits without starting the job.
                    let _ = wait(init_pid);
                    return Err(e);
                }
            };
            if purpose == Purpose::ShowMounts {
                // A mount table can outgrow the pipe: it is read as it comes.
                let report = Report::receive(report_read);
                let status = wait(init_pid)?;
                return match report {
                    Some(Report::Mounts(table)) => Ok(Started::Mounts(table)),
                    other => Err(setup_error(other, status.exit_status())),
                };
            }
            // A job that fails to start says why on `report` (a short text) before init ends,
            // so runseal sleeps until the job is over and reads it then.
            let outcome = wait_for_job(init_pid, ended_read, job.limits.timeout);
            if let Some(report) = Report::receive(report_read) {
                let code = match outcome {
                    Ok(Outcome::Exited(code)) => Some(code),
                    _ => None,
                };
                return Err(setup_error(Some(report), code));
            }
            let outcome = outcome.map(|outcome| {
                let oom_kills = || cgroups.as_ref().map_or(0, Cgroups::oom_kills);
                outcome.with_oom_kills(oom_kills, job.limits.memory_bytes)
            });
            drop(cgroups);
            // Init may still be tearing its namespaces down, with nothing of the job left in
            // them; whoever inherits it reaps it then, unless it is done by now.
            let _ = sys::wait_child(init_pid, false);
            outcome.map(Started::Finished)
        }
    }
}

/// The error a failed start reports: what init or the job said (`None`: nothing), with the
/// exit code init ended with, if it ended with one.
fn setup_error(report: Option<Report>, code: Option<i32>) -> Error {
    let message = match report {
        Some(Report::Failed(message)) => message,
        None => "the sandbox's init ended without a report".into(),
        Some(other) => format!("the job's init sent {other:?}"),
    };
    Error::Setup {
        message,
        exit_code: code.unwrap_or(SETUP_FAILED),
    }
}

/// What the job needs from runseal, made after the clone while init builds the root, and
/// sent to init over `socket` (a `SOCK_SEQPACKET` one), a message each: its seccomp
/// filters, then, if it has limits, what it joins its cgroups with. Returns the cgroups.
/// `release` (init may run on runseal's CPU, and the job it starts everywhere runseal may)
/// comes before init has all it needs to start the job.
fn send_kit(
    job: &Job,
    socket: &OwnedFd,
    release: impl FnOnce() -> Result<()>,
) -> Result<Option<Cgroups>> {
    let filters = seccomp::encode(&seccomp::job_filters()?);
    let cgroups = match job.limits.needs_cgroup() {
        true => Some(Cgroups::create(&job.limits)?),
        false => None,
    };
    release()?;
    rustix::net::send(socket, &filters, SendFlags::empty())
        .map_err(|e| Error::sys("send(the job's seccomp filters)", e))?;
    if let Some(cgroups) = &cgroups {
        cgroups.joining()?.send(socket.as_fd())?;
    }
    Ok(cgroups)
}

/// What the job needs to start.
struct Kit {
    filters: Vec<BpfProgram>,
    joining: Option<Joining>,
}

/// In init: what [`send_kit`] sent on `socket`; `None` if runseal closed it before it sent
/// everything (runseal failed, and says why itself).
fn receive_kit(job: &Job, socket: &OwnedFd) -> Result<Option<Kit>> {
    // Received into spare capacity: the kernel writes what arrives, nothing zeroes the rest.
    let mut bytes = Vec::with_capacity(seccomp::MAX_ENCODED);
    let (received, _) = rustix::net::recv(socket, spare_capacity(&mut bytes), RecvFlags::empty())
        .map_err(|e| Error::sys("recv(the job's seccomp filters)", e))?;
    if received == 0 {
        return Ok(None);
    }
    let filters = seccomp::decode(&bytes).ok_or_else(|| {
        Error::sys(
            "recv(the job's seccomp filters)",
            std::io::Error::from(std::io::ErrorKind::InvalidData),
        )
    })?;
    let joining = match job.limits.needs_cgroup() {
        false => None,
        true => match Joining::receive(socket.as_fd())? {
            Some(joining) => Some(joining),
            None => return Ok(None),
        },
    };
    Ok(Some(Kit { filters, joining }))
}

/// What init builds the job's root from; every tree it binds was made before the clone.
struct Root<'a> {
    steps: &'a [Step],
    trees: Trees,
    /// The job's network namespace, if one was made beside runseal.
    network: Option<OwnedFd>,
}

/// What init checks before it does anything else, and where it gets what the job needs.
struct Start {
    /// Where runseal sends the job's [`Kit`], if it runs one.
    kit: Option<OwnedFd>,
    /// Reads EOF once runseal is gone.
    alive: OwnedFd,
}

/// PID 1 of the job's namespaces. It stays out of the job's cgroups, so that they are empty
/// (and free for the next job) as soon as the job's processes are gone, while init's own exit, which
/// tears the namespaces down, goes on without runseal waiting for it.
fn init(
    job: &Job,
    purpose: Purpose,
    root: Root,
    start: Start,
    report: OwnedFd,
    ended: OwnedFd,
) -> ! {
    if let Err(e) = prepare(job, root, &start.alive) {
        fail(&report, SETUP_FAILED, &e.to_string());
    }
    if purpose == Purpose::ShowMounts {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Report::Mounts(table).send(&report);
        sys::exit_now(0);
    }
    let kit = match start.kit.map(|socket| receive_kit(job, &socket)) {
        Some(Ok(Some(kit))) => kit,
        Some(Err(e)) => fail(&report, SETUP_FAILED, &e.to_string()),
        // runseal failed before it sent everything, and says why itself.
        Some(Ok(None)) | None => sys::exit_now(SETUP_FAILED),
    };
    let joining = kit.joining.as_ref();
    let mut start_job = || {
        let (code, message) = exec_job(job, &kit.filters, joining);
        fail(&report, code, &message);
    };
    let job_pid = match joining.and_then(Joining::clone_into) {
        // A v2 cgroup is entered at birth, which only clone3 offers, with a copy of init.
        Some(cgroup) => match sys::clone_into_cgroup(0, Some(cgroup)) {
            Ok(Forked::Child) => {
                start_job();
                sys::exit_now(SETUP_FAILED)
            }
            Ok(Forked::Parent(pid)) => Ok(pid),
            Err(e) => Err(e),
        },
        None => sys::spawn_sharing_memory(&mut start_job),
    };
    let job_pid = match job_pid {
        Ok(pid) => pid,
        Err(e) => fail(&report, SETUP_FAILED, &e.to_string()),
    };
    drop(report);
    let code = reap(job_pid);
    // The job's exit ends the sandbox: whatever it left running is killed and reaped
    // before runseal hears the code, and init lets go of the runtime's tree (its lock
    // among the fds) before then too.
    let _ = sys::kill_all_others();
    reap_all();
    let _ = sys::close_fds_except(ended.as_fd());
    let _ = rustix::io::write(&ended, &code.to_ne_bytes());
    sys::exit_now(code)
}

fn prepare(job: &Job, root: Root, alive: &OwnedFd) -> Result<()> {
    sys::die_with_parent()?;
    // Armed now; had runseal died before, nothing would kill this process with it.
    match rustix::io::read(alive, &mut [0u8; 1]) {
        Err(rustix::io::Errno::AGAIN) => {}
        _ => sys::exit_now(SETUP_FAILED),
    }
    sys::set_hostname(crate::identity::HOSTNAME)?;
    match (&root.network, job.network) {
        // Its loopback is up already.
        (Some(namespace), _) => sys::enter_network_namespace(namespace.as_fd())?,
        (None, Network::None) => sys::loopback_up()?,
        (None, Network::Host) => {}
    }
    let mountpoint = sys::open_dir(Path::new(ROOT_MOUNTPOINT))?;
    apply(&mut RealMounts, root.trees, mountpoint.as_fd(), root.steps)
}

/// In the job process: enter the job's cgroups (and a cgroup namespace rooted there), drop
/// everything, then exec. Returns only on failure.
fn exec_job(job: &Job, filters: &[BpfProgram], joining: Option<&Joining>) -> (i32, String) {
    let setup = joining
        .map_or(Ok(()), Joining::join_v1)
        .and_then(|()| sys::unshare_cgroup_namespace())
        .and_then(|()| sys::new_session())
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

/// Reaps every child left, until there are none.
fn reap_all() {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some(_)) | Err(rustix::io::Errno::INTR) => continue,
            _ => return,
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

/// Waits for the job's exit code, which init writes to `ended` once the job and everything
/// it started are gone. Past `timeout` it kills init, which kills every process of the
/// namespace. When runseal itself gets SIGINT, SIGTERM or SIGHUP, the job gets that signal
/// and [`STOP_GRACE`] to exit, then init is killed; a job not started yet never starts. The
/// caller frees the cgroups after.
/// One thread does all of it, polling `ended` and a signalfd.
fn wait_for_job(init: Pid, ended: OwnedFd, timeout: Option<Duration>) -> Result<Outcome> {
    let signals = sys::signal_fd()?;
    let mut watchdog = timeout.map(|limit| Instant::now() + limit);
    let mut timed_out = false;
    // The signal runseal was stopped with, and when the job's grace ends.
    let mut stopped_by: Option<i32> = None;
    let mut grace_end: Option<Instant> = None;
    let mut killed_for: Option<i32> = None;
    let code = loop {
        let deadline = watchdog.into_iter().chain(grace_end).min();
        let left = deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let ready = sys::wait_readable(&[ended.as_fd(), signals.as_fd()], left)?;
        if ready[0] != 0 {
            let mut code = [0u8; 4];
            break match rustix::io::read(&ended, &mut code) {
                Ok(4) => i32::from_ne_bytes(code),
                // Init died without a word: killed here, or by someone else.
                _ => exit_code_of(wait(init)?),
            };
        }
        while let Some(signal) = sys::read_signal(signals.as_fd()) {
            if stopped_by.is_some() {
                continue;
            }
            stopped_by = Some(signal);
            let jobs = init_children(init);
            if jobs.is_empty() {
                // The job has not started (init is building its root, or starting it, which
                // the namespace's end stops too): it never does.
                killed_for = Some(signal);
                let _ = sys::kill(init, Signal::KILL);
                continue;
            }
            // Like `docker stop`: the job gets the signal and a grace period to end on its
            // own; then the whole namespace is killed.
            for job in jobs {
                let _ = Signal::from_named_raw(signal).map(|s| sys::kill(job, s));
            }
            grace_end = Some(Instant::now() + STOP_GRACE);
        }
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
    };
    if let Some(signal) = killed_for {
        return Ok(Outcome::Signaled(signal));
    }
    if timed_out {
        return Ok(Outcome::TimedOut);
    }
    Ok(match code {
        code if code > 128 && code < 128 + 65 => Outcome::Signaled(code - 128),
        code => Outcome::Exited(code),
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
