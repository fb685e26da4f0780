//! Learning a runtime's closure by running it: a command runs against the *unsealed*
//! runtime (the host's files at their host paths) while a fanotify group records every
//! regular file the process tree opens, executes or maps (`mmap` needs an open fd first),
//! and a seccomp filter has this process record the path names it asks for (see
//! [`crate::requested`]), which fanotify never reports: names through links, and names only
//! `stat`ed.
//!
//! The command runs in new mount, PID, IPC, UTS and network namespaces, every mount
//! read-only but its scratch work dir, as the job's unprivileged user with no capability and
//! `no_new_privs`, with the runtime's environment and a timeout. The marks are mount marks
//! (`FAN_MARK_MOUNT`) placed from inside the new mount namespace on its own mounts: those
//! are copies of the host's, distinct mount objects that only the learned process tree
//! uses, so nothing else on the host is reported, this process included. Its PID namespace
//! ends with its first process, so a timeout's SIGKILL ends the whole tree.
//!
//! What comes out is a set of host paths; the closure decides what joins the sealed tree
//! (the refusals apply to learned paths like to any other).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::error::{Error, Result};
use crate::identity;
use crate::isolation::parse_mountinfo;
use crate::job::{User, DEFAULT_USER};
use crate::requested;
use crate::sys;

/// `PATH` when the runtime's environment sets none (as for a job).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What to run and how.
#[derive(Debug, Clone)]
pub struct LearnRequest {
    /// Program (looked up on the environment's `PATH`) and arguments.
    pub command: Vec<String>,
    /// The runtime's environment; `PATH`, `HOME`, `USER`, `LOGNAME` and `TMPDIR` are
    /// added when it lacks them.
    pub environment: Vec<(String, String)>,
    pub timeout: Duration,
    /// The user it runs as; [`DEFAULT_USER`] when absent.
    pub user: Option<User>,
}

/// What a learn run saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    /// Every regular file the process tree opened or executed, by host path, the links
    /// that lead to them (see [`links_to`]) and the names it asked for that find a file
    /// (see [`keep_name`]), but those under its work dir and what no sealed tree holds (see
    /// [`keep`]).
    pub paths: BTreeSet<PathBuf>,
    /// The command's exit code, or 128 + the signal that ended it.
    pub exit_code: i32,
    /// The timeout ended it (`exit_code` is then 137).
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// File systems whose files are never part of a runtime: nothing there is marked.
const PSEUDO_FILESYSTEMS: [&str; 17] = [
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "efivarfs",
];

/// The most names of files a learn run records: a tree naming one file by ever longer
/// paths (`a/../a/../a`) must not fill this process's memory.
const MAX_NAMES: usize = 1 << 18;

/// Mount points whose trees are the kernel's or the sandbox's own, never learned.
const UNMARKED_PLACES: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The mount points of a mount table worth marking: every mount but the kernel's
/// pseudo file systems and what sits under `/proc`, `/sys` and `/dev`.
pub fn mount_points_to_mark(mountinfo: &str) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = parse_mountinfo(mountinfo)
        .into_iter()
        .filter(|m| !PSEUDO_FILESYSTEMS.contains(&m.fstype.as_str()))
        .map(|m| PathBuf::from(m.mount_point))
        .filter(|p| !UNMARKED_PLACES.iter().any(|u| p.starts_with(u)))
        .collect();
    points.dedup();
    points
}

/// Whether a path an event named is learned: an absolute path that still names a file
/// (not ` (deleted)`), outside the scratch `workdir`, and not the loader's cache (a sealed
/// tree has none: libraries sit where the loader's default search finds them).
pub fn keep(path: &Path, workdir: &Path) -> bool {
    let text = path.as_os_str().as_encoded_bytes();
    path.is_absolute()
        && !text.ends_with(b" (deleted)")
        && !path.starts_with(workdir)
        && !["/etc/ld.so.cache", "/etc/ld.so.preload"]
            .iter()
            .any(|p| path == Path::new(p))
}

/// Whether a name the tree asked for is learned: one [`keep`] keeps, outside `/tmp` (its
/// scratch files and probes), `/proc`, `/sys` and `/dev`, that names a regular file now, on
/// the host (the view the command had). A name that finds nothing, or a dir, is no file of
/// the runtime; a name through links brings each link into the closure.
pub fn keep_name(name: &Path, workdir: &Path) -> bool {
    keep(name, workdir)
        && !["/tmp", "/proc", "/sys", "/dev"]
            .iter()
            .any(|place| name.starts_with(place))
        && std::fs::metadata(name).is_ok_and(|meta| meta.is_file())
}

/// Names that lead to a learned file through a symlink, which fanotify never reports (it
/// names the file opened, not the path it was opened by), found on the host, the view the
/// learned command had: a link to the file in a dir it listed (PHP's
/// `conf.d/20-ctype.ini`), in its own dir (a library `dlopen`ed by its soname link) or in a
/// `PATH` dir (`which` through /etc/alternatives); every name in a `PATH` dir reached through
/// a dir link (`/bin/sed` with /bin -> usr/bin); and, through a link to a dir above the file
/// (Perl's `5.36 -> 5.36.0` in @INC), one path per link, which brings that link in. A link
/// learned this way brings its whole chain into the closure, under the same refusals.
pub fn links_to(files: &BTreeSet<PathBuf>, dirs: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
    let above: BTreeSet<&Path> = files
        .iter()
        .flat_map(|file| file.ancestors().skip(1))
        .collect();
    let mut links = BTreeSet::new();
    for dir in above
        .iter()
        .copied()
        .chain(dirs.iter().map(PathBuf::as_path))
    {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        // Through a dir link every entry is another name; else only the links in it are.
        let through_link = std::fs::canonicalize(dir).is_ok_and(|real| real != dir);
        for entry in entries.flatten() {
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            let path = entry.path();
            if !(is_link || through_link) || files.contains(&path) {
                continue;
            }
            let Ok(target) = std::fs::canonicalize(&path) else {
                continue;
            };
            if files.contains(&target) {
                links.insert(path);
            } else if is_link && above.contains(target.as_path()) {
                let below = files.iter().find_map(|f| f.strip_prefix(&target).ok());
                links.extend(below.map(|below| path.join(below)));
            }
        }
    }
    links
}

/// The environment of a learn run: the runtime's, then `PATH`, `HOME` (the work dir),
/// `USER`, `LOGNAME` and `TMPDIR` where it sets none.
pub fn learn_environment(
    runtime: &[(String, String)],
    user: User,
    workdir: &Path,
) -> Vec<(String, String)> {
    let mut environment = runtime.to_vec();
    let work = workdir.display().to_string();
    let mut defaults = vec![("PATH".to_string(), DEFAULT_PATH.to_string())];
    for (key, value) in identity::environment(user, true) {
        let value = if key == "HOME" { work.clone() } else { value };
        defaults.push((key.to_string(), value));
    }
    defaults.push(("TMPDIR".into(), work));
    for (key, value) in defaults {
        if !environment.iter().any(|(k, _)| *k == key) {
            environment.push((key, value));
        }
    }
    environment
}

/// Runs `request` and records what it opens. Must be called from a single-threaded
/// process (it clones into namespaces). The command's stdout goes to this process's
/// stderr, so a `--json` report stays clean.
pub fn learn(request: &LearnRequest) -> Result<Learned> {
    let label = request.command.join(" ");
    let fail = |message: String| Error::Learn {
        command: label.clone(),
        message,
    };
    if request.command.is_empty() {
        return Err(Error::NoCommand);
    }
    let user = request.user.unwrap_or(DEFAULT_USER);
    let scratch = tempfile::Builder::new()
        .prefix("runseal-learn")
        .tempdir()
        .map_err(|e| fail(format!("scratch work dir: {e}")))?;
    let workdir = scratch.path().to_path_buf();
    std::os::unix::fs::chown(&workdir, Some(user.uid), Some(user.gid))
        .map_err(|e| fail(format!("chown {}: {e}", workdir.display())))?;
    let environment = learn_environment(&request.environment, user, &workdir);

    let group = sys::fanotify_init()?;
    // Compiled here: the child only loads it.
    let filters = crate::seccomp::job_filters()?;
    let (listener_read, listener_write) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("socketpair(AF_UNIX, SOCK_SEQPACKET)", e))?;
    let (mut report_read, report_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map(|(r, w)| (std::fs::File::from(r), w))
        .map_err(|e| Error::sys("pipe2(O_CLOEXEC)", e))?;
    let started = Instant::now();
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWNET;
    let pid = match sys::clone_into_namespaces(flags)? {
        sys::Forked::Child => {
            drop((report_read, listener_read));
            let error = child(
                &group,
                &listener_write,
                &filters,
                request,
                &environment,
                &workdir,
                user,
            );
            let mut pipe = std::fs::File::from(report_write);
            let _ = pipe.write_all(error.to_string().as_bytes());
            sys::exit_now(crate::launch::SETUP_FAILED);
        }
        sys::Forked::Parent(pid) => pid,
    };
    drop((report_write, listener_write));
    // None when the child failed before it loaded the filter (its report says why).
    let mut listener = sys::receive_fd(listener_read.as_fd())?;

    let mut seen = Seen::default();
    let mut overflowed = false;
    let mut too_many = false;
    let deadline = started + request.timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(listener) = &listener {
            let until = deadline.min(Instant::now() + Duration::from_millis(100));
            requested::answer_pending(listener.as_fd(), until, |name| {
                if keep_name(&name, &workdir) {
                    too_many |= seen.names.len() >= MAX_NAMES;
                    if !too_many {
                        seen.names.insert(name);
                    }
                }
            })?;
        }
        collect(&group, &workdir, &mut seen, &mut overflowed)?;
        if let Some(status) = sys::wait_child(pid, false)? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            // The first process of the PID namespace: its death ends every other one.
            let _ = sys::kill(pid, Signal::KILL);
            break sys::wait_child(pid, true)?.expect("a blocking wait returns a status");
        }
        let mut fds = vec![group.as_fd()];
        fds.extend(listener.as_ref().map(|l| l.as_fd()));
        let ready = sys::wait_readable(&fds, (deadline - now).min(Duration::from_millis(100)))?;
        // Hung up: every process of the tree is gone, no call will stop again.
        if ready
            .get(1)
            .is_some_and(|r| r & libc::POLLIN == 0 && r & libc::POLLHUP != 0)
        {
            listener = None;
        }
    };
    // Every open was queued before it returned, so what the tree did is all queued now.
    collect(&group, &workdir, &mut seen, &mut overflowed)?;
    let path_dirs = environment
        .iter()
        .filter(|(key, _)| key == "PATH")
        .flat_map(|(_, value)| std::env::split_paths(value))
        .filter(|dir| dir.is_absolute());
    seen.dirs.extend(path_dirs);
    let mut paths = seen.files;
    let links = links_to(&paths, &seen.dirs);
    paths.extend(links.into_iter().filter(|link| keep(link, &workdir)));
    paths.extend(seen.names);
    let elapsed = started.elapsed();
    let mut setup_error = String::new();
    let _ = report_read.read_to_string(&mut setup_error);
    if !setup_error.is_empty() {
        return Err(fail(setup_error));
    }
    if overflowed {
        return Err(fail("the event queue overflowed; events were lost".into()));
    }
    if too_many {
        return Err(fail(format!(
            "it asked for more than {MAX_NAMES} names of files"
        )));
    }
    let exit_code = status
        .exit_status()
        .or_else(|| status.terminating_signal().map(|s| 128 + s))
        .unwrap_or(crate::launch::SETUP_FAILED);
    Ok(Learned {
        paths,
        exit_code,
        timed_out,
        elapsed,
    })
}

/// Runs `f` in a forked child and returns what it returned. The threads `f` starts (a
/// closure plan's) end with the child, so this process stays single-threaded and can still
/// [`learn`] afterwards.
pub fn in_child_process(f: impl FnOnce() -> String) -> Result<String> {
    let (mut read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map(|(r, w)| (std::fs::File::from(r), w))
        .map_err(|e| Error::sys("pipe2(O_CLOEXEC)", e))?;
    let pid = match sys::clone_into_namespaces(0)? {
        sys::Forked::Child => {
            drop(read);
            let answer = f();
            let mut pipe = std::fs::File::from(write);
            let written = pipe.write_all(answer.as_bytes());
            sys::exit_now(i32::from(written.is_err()));
        }
        sys::Forked::Parent(pid) => pid,
    };
    drop(write);
    let mut answer = String::new();
    let read_result = read.read_to_string(&mut answer);
    let status = sys::wait_child(pid, true)?.expect("a blocking wait returns a status");
    read_result.map_err(|e| Error::sys("read(child's answer)", e))?;
    if status.exit_status() != Some(0) {
        return Err(Error::sys(
            "fork",
            std::io::Error::other(format!("the child ended with {status:?}")),
        ));
    }
    Ok(answer)
}

/// What the events named: the files opened or executed, and the dirs listed; and the
/// names the tree asked for.
#[derive(Default)]
struct Seen {
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
    names: BTreeSet<PathBuf>,
}

/// Reads the queued events into `seen`, closing each event's fd.
fn collect(group: &OwnedFd, workdir: &Path, seen: &mut Seen, overflowed: &mut bool) -> Result<()> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    for event in sys::fanotify_read(group.as_fd())? {
        *overflowed |= event.mask & libc::FAN_Q_OVERFLOW != 0;
        // This process's own accesses: none should reach these mounts, but never learn one.
        if event.pid == me {
            continue;
        }
        let Some(file) = event.file else { continue };
        if let Ok(path) = std::fs::read_link(sys::fd_path(file.as_fd())) {
            if keep(&path, workdir) {
                // The event's mask need not say FAN_ONDIR (not without FID reporting).
                let is_dir = rustix::fs::fstat(&file)
                    .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir());
                match is_dir {
                    true => seen.dirs.insert(path),
                    false => seen.files.insert(path),
                };
            }
        }
    }
    Ok(())
}

/// The child, in its new namespaces: the mounts made private and read-only but the work
/// dir, each marked, privileges dropped, then the command. Returns only on failure.
fn child(
    group: &OwnedFd,
    listener_socket: &OwnedFd,
    filters: &[seccompiler::BpfProgram],
    request: &LearnRequest,
    environment: &[(String, String)],
    workdir: &Path,
    user: User,
) -> Error {
    let setup = || -> Result<std::io::Error> {
        sys::die_with_parent()?;
        sys::MountOps::make_mounts_private(&mut sys::RealMounts)?;
        sys::make_all_read_only()?;
        sys::bind_writable_over_itself(workdir)?;
        let table = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::sys("read(/proc/self/mountinfo)", e))?;
        for point in mount_points_to_mark(&table) {
            if let Err(e) = sys::fanotify_mark_mount(group.as_fd(), &point) {
                // A mount hidden under another (or gone since) cannot be reached by path;
                // nothing of it can be opened by the command either.
                if point == Path::new("/") || e.raw_os_error() != Some(libc::ENOENT) {
                    return Err(Error::sys(
                        format!(
                            "fanotify_mark({}, FAN_MARK_MOUNT, FAN_OPEN|FAN_OPEN_EXEC|FAN_ONDIR)",
                            point.display()
                        ),
                        e,
                    ));
                }
            }
        }
        sys::new_session()?;
        sys::drop_privileges(user.uid, user.gid)?;
        sys::close_inherited_fds()?;
        // The command may be a runtime author's (a `learn:` field): it gets the jobs' filter,
        // which refuses what it refuses them (io_uring, keyrings, new namespaces, ...).
        crate::seccomp::load(filters)?;
        // Last, so that little of this setup stops for the supervisor; the calls of the
        // exec below do (those that find no file on PATH are dropped with the names that
        // name none).
        let listener = requested::install()?;
        sys::send_fd(listener_socket.as_fd(), listener.as_fd())?;
        drop(listener);
        let stdout = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::sys("dup(2)", e))?;
        Ok(std::process::Command::new(&request.command[0])
            .args(&request.command[1..])
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k, v)))
            .current_dir(workdir)
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .exec())
    };
    match setup() {
        Ok(exec_error) => Error::sys(format!("execvp({})", request.command[0]), exec_error),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_file_systems_and_dev_proc_sys_are_never_marked() {
        let table = "\
22 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw\n\
23 22 0:21 / /proc rw - proc proc rw\n\
24 22 0:22 / /sys rw - sysfs sysfs rw\n\
25 24 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
26 22 0:5 / /dev rw - devtmpfs udev rw\n\
27 26 0:24 / /dev/shm rw - tmpfs tmpfs rw\n\
28 22 0:25 / /run rw - tmpfs tmpfs rw\n\
29 22 254:2 / /usr/local\\040data rw - ext4 /dev/vda2 rw\n\
30 22 0:26 / /proc2 rw - mqueue mqueue rw\n";
        assert_eq!(
            mount_points_to_mark(table),
            [
                PathBuf::from("/"),
                PathBuf::from("/run"),
                PathBuf::from("/usr/local data")
            ]
        );
    }

    #[test]
    fn the_work_dir_deleted_files_and_the_loader_cache_are_not_learned() {
        let work = Path::new("/tmp/runseal-learnX");
        assert!(keep(Path::new("/usr/lib/ruby/3.1.0/json.rb"), work));
        assert!(
            keep(Path::new("/etc/shadow"), work),
            "the closure refuses it, with a note"
        );
        assert!(!keep(Path::new("/tmp/runseal-learnX/out.o"), work));
        assert!(!keep(Path::new("/usr/lib/x.so (deleted)"), work));
        assert!(!keep(Path::new("/etc/ld.so.cache"), work));
        assert!(!keep(Path::new("relative"), work));
    }

    #[test]
    fn a_name_is_learned_when_it_finds_a_file_outside_tmp_and_the_kernels_places() {
        let scratch = tempfile::NamedTempFile::new_in("/tmp").unwrap();
        let work = Path::new("/var/tmp/runseal-learnX");
        assert!(keep_name(Path::new("/etc/passwd"), work));
        assert!(!keep_name(Path::new("/etc"), work), "a dir");
        assert!(!keep_name(Path::new("/etc/runseal-none"), work), "nothing");
        assert!(!keep_name(Path::new("/proc/self/status"), work));
        assert!(!keep_name(scratch.path(), work), "under /tmp");
        assert!(!keep_name(Path::new("/etc/ld.so.cache"), work));
    }

    #[test]
    fn the_links_that_lead_to_a_learned_file_are_learned_with_it() {
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        for dir in [
            "usr/bin",
            "alt",
            "lib",
            "perl/5.36.0/Digest",
            "mods",
            "conf.d",
            "other.d",
        ] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        let files = [
            "usr/bin/which.debianutils",
            "usr/bin/sed",
            "lib/libz.so.1.3",
            "perl/5.36.0/Digest/SHA.pm",
            "mods/ctype.ini",
        ];
        for file in files.iter().chain(&["usr/bin/awk"]) {
            std::fs::write(base.join(file), "x").unwrap();
        }
        for (target, link) in [
            ("../usr/bin/which.debianutils", "alt/which"),
            ("../../alt/which", "usr/bin/which"),
            ("usr/bin", "bin"),
            ("libz.so.1.3", "lib/libz.so.1"),
            ("awk", "usr/bin/nawk"),
            ("gone", "usr/bin/dangling"),
            ("5.36.0", "perl/5.36"),
            ("../mods/ctype.ini", "conf.d/20-ctype.ini"),
            ("../mods/ctype.ini", "other.d/20-ctype.ini"),
        ] {
            std::os::unix::fs::symlink(target, base.join(link)).unwrap();
        }
        let files: BTreeSet<PathBuf> = files.iter().map(|f| base.join(f)).collect();
        let dirs = BTreeSet::from([
            base.join("bin"),
            base.join("conf.d"),
            base.join("nonexistent"),
        ]);
        let expected: BTreeSet<PathBuf> = [
            "usr/bin/which",
            "bin/which",
            "bin/which.debianutils",
            "bin/sed",
            "lib/libz.so.1",
            "perl/5.36/Digest/SHA.pm",
            "conf.d/20-ctype.ini",
        ]
        .iter()
        .map(|f| base.join(f))
        .collect();
        // Not the link to awk, which the command never ran, one leading nowhere, or one in
        // a dir the command did not list.
        assert_eq!(links_to(&files, &dirs), expected);
    }

    #[test]
    fn the_runtimes_environment_wins_and_the_rest_is_filled_in() {
        let user = User {
            uid: 65534,
            gid: 65534,
        };
        let runtime = vec![("PATH".to_string(), "/opt/rt/bin".to_string())];
        let environment = learn_environment(&runtime, user, Path::new("/tmp/w"));
        let get = |k: &str| {
            environment
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PATH"), Some("/opt/rt/bin"));
        assert_eq!(get("HOME"), Some("/tmp/w"));
        assert_eq!(get("TMPDIR"), Some("/tmp/w"));
        assert!(get("USER").is_some());
    }
}
