//! The path names a learned process tree asks for, which fanotify never reports (it names
//! the file opened, not the names it was reached by, and sees no `stat`): a seccomp filter
//! loaded into the learned command stops each call that takes a path (open, exec, the stat
//! family, access, readlink) and notifies this process (`SECCOMP_RET_USER_NOTIF`), which
//! reads the name from the stopped thread's memory, makes a relative one absolute against
//! the thread's dir fd or cwd, and lets the call go on unchanged
//! (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`).
//!
//! This is a recorder, not a boundary: the filter denies nothing and a `CONTINUE` grants
//! nothing (the kernel then runs the call as if no filter were there, with every other
//! check), and a name read here may differ from the one the kernel reads after (another
//! thread can rewrite it): a name the command chose either way, which the closure treats
//! like any other learned path. The target is never trusted: a name is read from at most
//! `PATH_MAX` bytes and taken only NUL-terminated, any bytes allowed, and a notification
//! whose thread died (its pid perhaps another process's now) is dropped.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;

/// A call that takes a path: its number, the argument holding the dir fd a relative path
/// starts from (none: the cwd) and the one holding the path.
struct PathCall {
    nr: i64,
    dir: Option<usize>,
    path: usize,
}

const fn at(nr: i64) -> PathCall {
    PathCall {
        nr,
        dir: Some(0),
        path: 1,
    }
}

const fn plain(nr: i64) -> PathCall {
    PathCall {
        nr,
        dir: None,
        path: 0,
    }
}

/// The calls whose names are recorded.
const CALLS: &[PathCall] = &[
    at(libc::SYS_openat),
    at(libc::SYS_openat2),
    plain(libc::SYS_execve),
    at(libc::SYS_execveat),
    at(libc::SYS_newfstatat),
    at(libc::SYS_statx),
    at(libc::SYS_faccessat),
    at(libc::SYS_faccessat2),
    at(libc::SYS_readlinkat),
    #[cfg(target_arch = "x86_64")]
    plain(libc::SYS_open),
    #[cfg(target_arch = "x86_64")]
    plain(libc::SYS_stat),
    #[cfg(target_arch = "x86_64")]
    plain(libc::SYS_lstat),
    #[cfg(target_arch = "x86_64")]
    plain(libc::SYS_access),
    #[cfg(target_arch = "x86_64")]
    plain(libc::SYS_readlink),
];

/// The `AUDIT_ARCH_*` of this build: a call made through another ABI (i386's `int 0x80` on
/// x86_64) has other numbers and is let through unrecorded.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 0xC000_00F3;

/// The longest name the kernel takes, its NUL included.
const PATH_MAX: usize = libc::PATH_MAX as usize;

fn instruction(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The filter: every call of [`CALLS`] in this build's ABI to the supervisor, every other
/// one allowed.
fn program() -> Vec<libc::sock_filter> {
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let equal = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let count = CALLS.len() as u8;
    // seccomp_data: nr at offset 0, arch at 4.
    let mut program = vec![
        instruction(load, 4, 0, 0),
        instruction(equal, AUDIT_ARCH, 0, count + 1),
        instruction(load, 0, 0, 0),
    ];
    for (i, call) in CALLS.iter().enumerate() {
        program.push(instruction(equal, call.nr as u32, count - i as u8, 0));
    }
    program.push(instruction(ret, libc::SECCOMP_RET_ALLOW, 0, 0));
    program.push(instruction(ret, libc::SECCOMP_RET_USER_NOTIF, 0, 0));
    program
}

/// Loads the filter into the calling thread (which has no_new_privs), which every process
/// it execs or forks keeps; returns its listener.
pub fn install() -> Result<OwnedFd> {
    sys::seccomp_listener(&program())
}

/// Answers the notifications pending on `listener` until none is or `until` passes (a tree
/// that never stops asking must not hold off its timeout), handing each name to `record`.
pub fn answer_pending(
    listener: BorrowedFd<'_>,
    until: Instant,
    mut record: impl FnMut(PathBuf),
) -> Result<()> {
    while Instant::now() < until
        && sys::wait_readable(&[listener], Duration::ZERO)?[0] & libc::POLLIN != 0
    {
        let Some(notice) = sys::seccomp_receive(listener)? else {
            continue;
        };
        let name = name_of(listener, &notice);
        // Let the call go on whatever became of its name.
        sys::seccomp_continue(listener, notice.id)?;
        name?.map(&mut record);
    }
    Ok(())
}

/// The absolute name `notice`'s call asked for, if it still stands for that call.
fn name_of(listener: BorrowedFd<'_>, notice: &sys::SeccompNotice) -> Result<Option<PathBuf>> {
    let Some(call) = CALLS.iter().find(|c| c.nr == notice.nr) else {
        return Ok(None);
    };
    let proc = PathBuf::from(format!("/proc/{}", notice.pid));
    let memory = match File::open(proc.join("mem")) {
        Ok(memory) => memory,
        // Root may read any process's memory: anything but a thread gone means a setting
        // (Yama's ptrace_scope 3, an LSM) that leaves learning blind.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Error::sys(format!("open({}/mem)", proc.display()), e))
        }
        Err(_) => return Ok(None),
    };
    // The pid named the stopped thread when the notification came; only while it is still
    // pending is the file opened that thread's memory.
    if !sys::seccomp_id_valid(listener, notice.id) {
        return Ok(None);
    }
    let Some(name) = read_name(&memory, notice.args[call.path]) else {
        return Ok(None);
    };
    let dir = call.dir.map(|d| notice.args[d] as i32);
    let name = absolute(&proc, dir, name);
    // Its cwd or dir fd was read while it was still stopped in that call.
    Ok(name.filter(|_| sys::seccomp_id_valid(listener, notice.id)))
}

/// The NUL-terminated name at `address` in `memory` (a `/proc/PID/mem`), read at most
/// `PATH_MAX` bytes long; `None` when it is empty, longer or unreadable (the kernel fails
/// the call then, or, empty, names the dir fd itself, which was opened by name before).
fn read_name(memory: &File, address: u64) -> Option<PathBuf> {
    let mut buffer = vec![0u8; PATH_MAX];
    // One read stops at the first unmapped page, so a short name at a mapping's end reads.
    let read = memory.read_at(&mut buffer, address).ok()?;
    let end = buffer[..read].iter().position(|&b| b == 0)?;
    buffer.truncate(end);
    (end > 0).then(|| PathBuf::from(OsString::from_vec(buffer)))
}

/// `name` made absolute as the thread of `proc` (its `/proc/PID`) would resolve it: from
/// the dir fd `dir` (`AT_FDCWD` or none: the cwd), read through `/proc`; `None` when that
/// is no path (a closed fd, a socket).
fn absolute(proc: &Path, dir: Option<i32>, name: PathBuf) -> Option<PathBuf> {
    if name.is_absolute() {
        return Some(name);
    }
    let base = match dir {
        None | Some(libc::AT_FDCWD) => proc.join("cwd"),
        Some(fd) if fd >= 0 => proc.join("fd").join(fd.to_string()),
        Some(_) => return None,
    };
    let base = std::fs::read_link(base).ok()?;
    // Components drop `.` and repeated slashes; `..` stays, for the links before it.
    base.is_absolute()
        .then(|| base.join(name).components().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_memory() -> File {
        File::open("/proc/self/mem").unwrap()
    }

    #[test]
    fn a_name_is_read_up_to_its_nul_and_never_past_path_max() {
        let memory = own_memory();
        let at = |bytes: &[u8]| read_name(&memory, bytes.as_ptr() as u64);
        assert_eq!(
            at(b"/etc/ssl/cert.pem\0junk"),
            Some("/etc/ssl/cert.pem".into())
        );
        let odd = at(b"/opt/caf\xe9\0").unwrap();
        assert_eq!(odd.as_os_str().as_encoded_bytes(), b"/opt/caf\xe9");
        assert_eq!(at(b"\0/etc"), None, "empty: the dir fd itself");
        let mut long = vec![b'a'; PATH_MAX];
        assert_eq!(at(&long), None, "no NUL within PATH_MAX");
        long[PATH_MAX - 1] = 0;
        assert_eq!(at(&long).unwrap().as_os_str().len(), PATH_MAX - 1);
        assert_eq!(read_name(&memory, 0), None, "an unmapped address");
        assert_eq!(read_name(&memory, u64::MAX - 8), None);
    }

    #[test]
    fn a_relative_name_starts_from_the_dir_fd_or_the_cwd() {
        let t = tempfile::tempdir().unwrap();
        let dir = File::open(t.path()).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
        let me = PathBuf::from(format!("/proc/{}", std::process::id()));
        let cwd = std::env::current_dir().unwrap();
        let name = |n: &str| PathBuf::from(n);
        assert_eq!(
            absolute(&me, Some(fd), name("lib/./x.so")),
            Some(t.path().join("lib/x.so"))
        );
        assert_eq!(
            absolute(&me, Some(libc::AT_FDCWD), name("a/../b")),
            Some(cwd.join("a/../b"))
        );
        assert_eq!(absolute(&me, None, name("b")), Some(cwd.join("b")));
        assert_eq!(
            absolute(&me, Some(fd), name("/usr/lib/ssl/cert.pem")),
            Some(name("/usr/lib/ssl/cert.pem"))
        );
        assert_eq!(absolute(&me, Some(-5), name("b")), None);
        assert_eq!(absolute(&me, Some(999_999), name("b")), None, "no such fd");
        let (socket, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let socket = std::os::fd::AsRawFd::as_raw_fd(&socket);
        assert_eq!(absolute(&me, Some(socket), name("b")), None, "not a dir");
    }

    #[test]
    fn the_filter_sends_each_path_call_and_allows_the_rest() {
        let program = program();
        // Each jump lands on one of the two returns.
        let (allow, notify) = (program.len() - 2, program.len() - 1);
        assert_eq!(program[allow].k, libc::SECCOMP_RET_ALLOW);
        assert_eq!(program[notify].k, libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(2 + usize::from(program[1].jf), allow, "another ABI");
        for (i, call) in CALLS.iter().enumerate() {
            let at = 3 + i;
            assert_eq!(program[at].k, call.nr as u32);
            assert_eq!(at + 1 + usize::from(program[at].jt), notify);
            assert_eq!(program[at].jf, 0);
        }
    }
}
