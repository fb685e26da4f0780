//! Every system call the sandbox makes, one small function each; an error names the call
//! and its arguments. The mount calls sit behind [`MountOps`] so the order in which a job
//! root is assembled can be unit-tested with a recording fake. This module holds all of
//! runseal's `unsafe` code: process creation (`clone`, `fork`, `_exit`) and one `ioctl`.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
use rustix::mount::{
    mount, mount_bind, mount_change, mount_remount, unmount, MountFlags, MountPropagationFlags,
    UnmountFlags,
};
use rustix::process::{Pid, Signal};

use crate::error::{Error, Result};

/// Mount-namespace operations used to build a job root.
pub trait MountOps {
    fn make_mounts_private(&mut self) -> Result<()>;
    fn mount_tmpfs(&mut self, target: &Path, mode: u32) -> Result<()>;
    /// A tmpfs holding at most `bytes` (writes past it fail with ENOSPC).
    fn mount_tmpfs_of_size(&mut self, target: &Path, mode: u32, bytes: u64) -> Result<()>;
    fn mount_proc(&mut self, target: &Path) -> Result<()>;
    /// Binds `source` on `target`, then remounts it with `flags` (read-only unless writable).
    fn bind(&mut self, source: &Path, target: &Path, flags: BindFlags) -> Result<()>;
    fn mkdir(&mut self, path: &Path, mode: u32) -> Result<()>;
    fn create_file(&mut self, path: &Path) -> Result<()>;
    fn symlink(&mut self, target: &Path, path: &Path) -> Result<()>;
    /// Makes `new_root` the root and detaches the old one (`pivot_root(".", ".")`).
    fn pivot_root(&mut self, new_root: &Path) -> Result<()>;
    fn remount_root_readonly(&mut self) -> Result<()>;
    /// Makes a mount of the sandbox's own (a populated tmpfs) read-only.
    fn remount_readonly(&mut self, target: &Path) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindFlags {
    pub writable: bool,
    /// Device nodes keep working (only the binds of /dev's own nodes).
    pub devices: bool,
}

/// The real system calls.
pub struct RealMounts;

fn mount_tmpfs_with(target: &Path, options: &str) -> Result<()> {
    let data = std::ffi::CString::new(options).expect("no NUL");
    mount(
        "tmpfs",
        target,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(data.as_c_str()),
    )
    .map_err(call_error(format!(
        "mount(tmpfs, {}, {options})",
        target.display()
    )))
}

fn call_error(call: String) -> impl FnOnce(rustix::io::Errno) -> Error {
    move |e| Error::sys(call, e)
}

impl MountOps for RealMounts {
    fn make_mounts_private(&mut self) -> Result<()> {
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .map_err(call_error("mount(/, MS_REC|MS_PRIVATE)".into()))
    }

    fn mount_tmpfs(&mut self, target: &Path, mode: u32) -> Result<()> {
        mount_tmpfs_with(target, &format!("mode={mode:o}"))
    }

    fn mount_tmpfs_of_size(&mut self, target: &Path, mode: u32, bytes: u64) -> Result<()> {
        mount_tmpfs_with(target, &format!("mode={mode:o},size={bytes}"))
    }

    fn mount_proc(&mut self, target: &Path) -> Result<()> {
        mount(
            "proc",
            target,
            "proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY,
            None::<&CStr>,
        )
        .map_err(call_error(format!("mount(proc, {}, ro)", target.display())))
    }

    fn bind(&mut self, source: &Path, target: &Path, flags: BindFlags) -> Result<()> {
        mount_bind(source, target).map_err(call_error(format!(
            "mount({}, {}, MS_BIND)",
            source.display(),
            target.display()
        )))?;
        if flags.writable && flags.devices {
            // A device node bound as it is: a remount would only add nosuid, which means
            // nothing for a device, and costs two more mount-table updates per job.
            return Ok(());
        }
        let mut remount = MountFlags::BIND | MountFlags::NOSUID;
        if !flags.writable {
            remount |= MountFlags::RDONLY;
        }
        if !flags.devices {
            remount |= MountFlags::NODEV;
        }
        mount_remount(target, remount, "").map_err(call_error(format!(
            "mount({}, MS_REMOUNT|{remount:?})",
            target.display()
        )))
    }

    fn mkdir(&mut self, path: &Path, mode: u32) -> Result<()> {
        rustix::fs::mkdir(path, Mode::from_raw_mode(mode))
            .map_err(call_error(format!("mkdir({}, {mode:o})", path.display())))
    }

    fn create_file(&mut self, path: &Path) -> Result<()> {
        rustix::fs::open(
            path,
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(drop)
        .map_err(call_error(format!("open({}, O_CREAT)", path.display())))
    }

    fn symlink(&mut self, target: &Path, path: &Path) -> Result<()> {
        rustix::fs::symlink(target, path).map_err(call_error(format!(
            "symlink({}, {})",
            target.display(),
            path.display()
        )))
    }

    fn pivot_root(&mut self, new_root: &Path) -> Result<()> {
        rustix::process::chdir(new_root)
            .map_err(call_error(format!("chdir({})", new_root.display())))?;
        rustix::process::pivot_root(".", ".").map_err(call_error(format!(
            "pivot_root({0}, {0})",
            new_root.display()
        )))?;
        unmount(".", UnmountFlags::DETACH)
            .map_err(call_error("umount2(old root, MNT_DETACH)".into()))?;
        rustix::process::chdir("/").map_err(call_error("chdir(/)".into()))
    }

    fn remount_root_readonly(&mut self) -> Result<()> {
        self.remount_readonly(Path::new("/"))
    }

    fn remount_readonly(&mut self, target: &Path) -> Result<()> {
        let flags = MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
        mount_remount(target, flags, "").map_err(call_error(format!(
            "mount({}, MS_REMOUNT|MS_RDONLY)",
            target.display()
        )))
    }
}

/// Opens `relative` under `dir` without leaving it (`RESOLVE_BENEATH`), for binding the very
/// object that was checked, whatever is renamed afterwards.
pub fn open_beneath(dir: &Path, relative: &Path) -> Result<OwnedFd> {
    let base = openat2(
        CWD,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::empty(),
    )
    .map_err(call_error(format!("openat2({})", dir.display())))?;
    openat2(
        &base,
        relative,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(call_error(format!(
        "openat2({}, {}, RESOLVE_BENEATH)",
        dir.display(),
        relative.display()
    )))
}

/// The path through which the kernel reaches an open file descriptor.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Which side of a fork this is.
pub enum Forked {
    Child,
    Parent(Pid),
}

fn forked(ret: i64, call: &str) -> Result<Forked> {
    match ret {
        -1 => Err(Error::sys(call, std::io::Error::last_os_error())),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(
            Pid::from_raw(pid as i32).expect("the kernel returns a positive pid"),
        )),
    }
}

/// `clone(flags | SIGCHLD)` without a new stack: the child continues from here, like after
/// `fork`, but in the new namespaces `flags` asks for.
pub fn clone_into_namespaces(flags: libc::c_int) -> Result<Forked> {
    ensure_single_threaded()?;
    // SAFETY: without CLONE_VM the child gets a copy of the address space, exactly as with
    // fork(2); the process has one thread (checked above), so no lock is held by a thread
    // that the child would lack. The remaining arguments (stack, tids, tls) are unused
    // without the flags that read them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    forked(ret, &format!("clone({flags:#x})"))
}

/// `fork(2)`, for the job process under the sandbox's init.
pub fn fork() -> Result<Forked> {
    // SAFETY: called in the sandbox's init process, which has a single thread.
    let ret = unsafe { libc::fork() };
    forked(ret as i64, "fork()")
}

/// Ends this process at once, without running destructors or flushing std buffers that
/// belong to the parent's copy.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

fn ensure_single_threaded() -> Result<()> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| Error::sys("readdir(/proc/self/task)", e))?
        .count();
    if threads == 1 {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "cannot create the sandbox from a process with {threads} threads"
        )))
    }
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> Result<()> {
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .map_err(call_error("socket(AF_INET, SOCK_DGRAM)".into()))?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value. The name fits in IFNAMSIZ.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write only the ifreq passed by pointer,
    // which lives for both calls.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) < 0 {
            -1
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &request)
        }
    };
    if result < 0 {
        return Err(Error::sys(
            "ioctl(lo, SIOCSIFFLAGS, IFF_UP)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Dies with SIGKILL when the caller dies. (The caller then never says "go", so a death
/// before this call is seen as end-of-file on the ready pipe.)
pub fn die_with_parent() -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(call_error("prctl(PR_SET_PDEATHSIG, SIGKILL)".into()))
}

/// Drops every capability for good: bounding and ambient sets emptied, securebits locked so
/// that uid 0 regains nothing at exec, no_new_privs set, then the capability sets cleared.
pub fn drop_privileges() -> Result<()> {
    use rustix::thread::{self, CapabilitySet, CapabilitySets};
    // Every capability the kernel knows; the first number past them answers EINVAL.
    for cap in 0..64u32 {
        match drop_capability(cap) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(Error::sys(format!("prctl(PR_CAPBSET_DROP, {cap})"), e)),
            Ok(()) => {}
        }
    }
    thread::clear_ambient_capability_set()
        .map_err(call_error("prctl(PR_CAP_AMBIENT_CLEAR_ALL)".into()))?;
    let secure = thread::CapabilitiesSecureBits::NO_ROOT
        | thread::CapabilitiesSecureBits::NO_ROOT_LOCKED
        | thread::CapabilitiesSecureBits::NO_SETUID_FIXUP
        | thread::CapabilitiesSecureBits::NO_SETUID_FIXUP_LOCKED
        | thread::CapabilitiesSecureBits::KEEP_CAPS_LOCKED;
    thread::set_capabilities_secure_bits(secure)
        .map_err(call_error("prctl(PR_SET_SECUREBITS)".into()))?;
    thread::set_no_new_privs(true).map_err(call_error("prctl(PR_SET_NO_NEW_PRIVS, 1)".into()))?;
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    thread::set_capabilities(None, none).map_err(call_error("capset(all empty)".into()))
}

pub fn new_session() -> Result<()> {
    rustix::process::setsid()
        .map(drop)
        .map_err(call_error("setsid()".into()))
}

pub fn set_hostname(name: &str) -> Result<()> {
    rustix::system::sethostname(name.as_bytes()).map_err(call_error(format!("sethostname({name})")))
}

pub fn kill(pid: Pid, signal: Signal) -> Result<()> {
    rustix::process::kill_process(pid, signal)
        .map_err(call_error(format!("kill({pid:?}, {signal:?})")))
}

/// Enters a new cgroup namespace rooted at the cgroup the process is in now.
pub fn unshare_cgroup_namespace() -> Result<()> {
    // SAFETY: CLONE_NEWCGROUP changes no file-descriptor or memory sharing, which is what
    // makes unshare unsafe in general (CLONE_FILES); the process is single-threaded.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) }
        .map_err(call_error("unshare(CLONE_NEWCGROUP)".into()))
}

/// The signals that end `runseal run` itself; they are taken synchronously (see
/// [`wait_termination_signal`]) so the job and its cgroups are cleaned up first.
const TERMINATION_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset initialise and fill the set they are given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in TERMINATION_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks the termination signals for this thread and the threads and children it creates;
/// the job unblocks them with [`unblock_termination_signals`] before its exec.
pub fn block_termination_signals() -> Result<()> {
    mask_termination_signals(libc::SIG_BLOCK, "SIG_BLOCK")
}

pub fn unblock_termination_signals() -> Result<()> {
    mask_termination_signals(libc::SIG_UNBLOCK, "SIG_UNBLOCK")
}

fn mask_termination_signals(how: libc::c_int, name: &str) -> Result<()> {
    let set = termination_set();
    // SAFETY: pthread_sigmask reads the set and writes no old mask (null).
    let ret = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(Error::sys(
            format!("pthread_sigmask({name}, INT|TERM|HUP)"),
            std::io::Error::from_raw_os_error(ret),
        ));
    }
    Ok(())
}

/// Waits until a blocked termination signal arrives; returns its number.
pub fn wait_termination_signal() -> Result<i32> {
    let set = termination_set();
    let mut signal: libc::c_int = 0;
    // SAFETY: sigwait reads the set and writes the received signal number into `signal`.
    let ret = unsafe { libc::sigwait(&set, &mut signal) };
    if ret != 0 {
        return Err(Error::sys(
            "sigwait(INT|TERM|HUP)",
            std::io::Error::from_raw_os_error(ret),
        ));
    }
    Ok(signal)
}

/// Restores SIGPIPE's default action, which Rust programs start with ignored, so that a
/// command writing into a closed pipe (`runseal info | head`) ends quietly instead of
/// failing on every write.
pub fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Mounts an overlay of `lower` (read-only) and `upper` (where every change lands) on
/// `target`; `work` is overlayfs's scratch dir on the same filesystem as `upper`.
pub fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let data = std::ffi::CString::new(options.clone())
        .map_err(|_| Error::Invalid(format!("overlay options hold a NUL byte: {options}")))?;
    mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(call_error(format!(
        "mount(overlay, {}, {options})",
        target.display()
    )))
}

/// A fresh, writable proc for a build (its package scripts may write their own /proc files).
pub fn mount_proc_writable(target: &Path) -> Result<()> {
    mount(
        "proc",
        target,
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None::<&CStr>,
    )
    .map_err(call_error(format!("mount(proc, {})", target.display())))
}

/// Binds `source` on `target` read-write, as it is.
pub fn bind_writable(source: &Path, target: &Path) -> Result<()> {
    mount_bind(source, target).map_err(call_error(format!(
        "mount({}, {}, MS_BIND)",
        source.display(),
        target.display()
    )))
}

pub fn chroot_into(dir: &Path) -> Result<()> {
    rustix::process::chroot(dir).map_err(call_error(format!("chroot({})", dir.display())))?;
    rustix::process::chdir("/").map_err(call_error("chdir(/)".into()))
}

/// Removes `capabilities` (numbers, as in `<linux/capability.h>`) from the bounding set, so
/// that nothing exec'd from here on can hold them, uid 0 included.
pub fn drop_from_bounding_set(capabilities: &[u32]) -> Result<()> {
    for &cap in capabilities {
        drop_capability(cap)
            .map_err(|e| Error::sys(format!("prctl(PR_CAPBSET_DROP, {cap})"), e))?;
    }
    Ok(())
}

/// `prctl(PR_CAPBSET_DROP, cap)`: removes one capability from the bounding set.
fn drop_capability(cap: u32) -> std::io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
