//! Every system call the sandbox makes, one small function each; an error names the call
//! and its arguments. The mount calls work on fds and sit behind [`MountOps`], so the order
//! in which a root is assembled can be unit-tested with a recording fake; [`Dirs`] creates
//! and opens places in a root without following symlinks, and needs no privilege.
//!
//! This module holds all of runseal's `unsafe` code, each block with its reason: process
//! creation (`clone`, `fork`, a vfork-like `clone` on a stack of its own, the network
//! namespace maker's `clone` beside runseal, `_exit`), `mount_setattr` (which rustix lacks),
//! the loopback `ioctl`, `close_range`, `kill(-1)`, the signal mask calls, signalfd and fanotify (which rustix
//! lacks), used by `learn`.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use runseal_spec::beneath::{self, Links};
use rustix::fs::{openat2, FileType, Mode, OFlags, ResolveFlags, CWD};
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, mount_change, move_mount, open_tree,
    unmount, FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};
use rustix::process::{Pid, Signal};

use crate::error::{Error, PlaceProblem, Result};

/// Mount operations on handles, the only privileged part of building a root. Where a mount
/// goes is always an fd (see [`Dirs`]), never a path the kernel would resolve again, so no
/// symlink planted in a runtime tree can send a mount elsewhere; a recording fake stands in
/// for the kernel in unit tests.
pub trait MountOps {
    fn make_mounts_private(&mut self) -> Result<()>;
    /// A new tmpfs, not yet attached anywhere.
    fn tmpfs(&mut self, mode: u32, size: Option<u64>) -> Result<OwnedFd>;
    /// A new proc of the caller's PID namespace, read-only, not yet attached.
    fn proc(&mut self) -> Result<OwnedFd>;
    /// A detached bind of the file or directory `source` refers to (`label` names it).
    fn clone_tree(&mut self, source: BorrowedFd<'_>, label: &Path) -> Result<OwnedFd>;
    /// Sets `attr` on the one mount `tree` (not on mounts beneath it).
    fn set_attr(&mut self, tree: BorrowedFd<'_>, attr: MountAttr, label: &Path) -> Result<()>;
    /// Attaches `tree` on the file or directory `at` refers to (`label` names it).
    fn attach(&mut self, tree: BorrowedFd<'_>, at: BorrowedFd<'_>, label: &Path) -> Result<()>;
    /// Makes the directory `root` the root and detaches the old one.
    fn pivot(&mut self, root: BorrowedFd<'_>) -> Result<()>;
    /// A new overlay of the `lower` dirs (the first on top), not yet attached: read-only
    /// without `upper`, else writes go to `upper.0` (`upper.1` is the overlay's scratch dir,
    /// on the same filesystem).
    fn overlay(&mut self, lower: &[PathBuf], upper: Option<(PathBuf, PathBuf)>) -> Result<OwnedFd>;
}

/// What a mount may do; every mount of the sandbox is at least nosuid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountAttr {
    pub writable: bool,
    /// Device nodes keep working (only the binds of /dev's own nodes).
    pub devices: bool,
}

impl MountAttr {
    pub const READ_ONLY: MountAttr = MountAttr {
        writable: false,
        devices: false,
    };
    pub const WRITABLE: MountAttr = MountAttr {
        writable: true,
        devices: false,
    };

    fn flags(self) -> MountAttrFlags {
        let mut flags = MountAttrFlags::MOUNT_ATTR_NOSUID;
        if !self.writable {
            flags |= MountAttrFlags::MOUNT_ATTR_RDONLY;
        }
        if !self.devices {
            flags |= MountAttrFlags::MOUNT_ATTR_NODEV;
        }
        flags
    }
}

/// The real system calls.
pub struct RealMounts;

fn call_error(call: String) -> impl FnOnce(rustix::io::Errno) -> Error {
    move |e| Error::sys(call, e)
}

/// The text of mount attribute flags as the kernel names them, for error messages.
fn attr_names(flags: MountAttrFlags) -> String {
    let names = [
        (MountAttrFlags::MOUNT_ATTR_RDONLY, "RDONLY"),
        (MountAttrFlags::MOUNT_ATTR_NOSUID, "NOSUID"),
        (MountAttrFlags::MOUNT_ATTR_NODEV, "NODEV"),
        (MountAttrFlags::MOUNT_ATTR_NOEXEC, "NOEXEC"),
    ];
    let set: Vec<String> = names
        .iter()
        .filter(|(flag, _)| flags.contains(*flag))
        .map(|(_, name)| format!("MOUNT_ATTR_{name}"))
        .collect();
    set.join("|")
}

fn new_filesystem(kind: &str, options: &[(&str, String)], attr: MountAttrFlags) -> Result<OwnedFd> {
    let context =
        fsopen(kind, FsOpenFlags::FSOPEN_CLOEXEC).map_err(call_error(format!("fsopen({kind})")))?;
    for (key, value) in options {
        fsconfig_set_string(&context, *key, value.as_str())
            .map_err(call_error(format!("fsconfig({kind}, {key}={value})")))?;
    }
    fsconfig_create(&context).map_err(call_error(format!("fsconfig({kind}, CMD_CREATE)")))?;
    fsmount(&context, FsMountFlags::FSMOUNT_CLOEXEC, attr)
        .map_err(call_error(format!("fsmount({kind}, {})", attr_names(attr))))
}

impl MountOps for RealMounts {
    fn make_mounts_private(&mut self) -> Result<()> {
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .map_err(call_error("mount(/, MS_REC|MS_PRIVATE)".into()))
    }

    fn tmpfs(&mut self, mode: u32, size: Option<u64>) -> Result<OwnedFd> {
        let mut options = vec![("mode", format!("{mode:o}"))];
        if let Some(bytes) = size {
            options.push(("size", bytes.to_string()));
        }
        new_filesystem("tmpfs", &options, MountAttr::WRITABLE.flags())
    }

    fn proc(&mut self) -> Result<OwnedFd> {
        let attr = MountAttr::READ_ONLY.flags() | MountAttrFlags::MOUNT_ATTR_NOEXEC;
        // A job sees only its own user's processes: not the sandbox's init, root's, whose
        // command line is runseal's and whose cgroups are the host's.
        new_filesystem("proc", &[("hidepid", "invisible".into())], attr)
    }

    fn clone_tree(&mut self, source: BorrowedFd<'_>, label: &Path) -> Result<OwnedFd> {
        open_tree(
            source,
            "",
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_EMPTY_PATH,
        )
        .map_err(call_error(format!(
            "open_tree({}, OPEN_TREE_CLONE)",
            label.display()
        )))
    }

    fn set_attr(&mut self, tree: BorrowedFd<'_>, attr: MountAttr, label: &Path) -> Result<()> {
        let flags = attr.flags();
        mount_setattr(tree, flags).map_err(|e| {
            Error::sys(
                format!("mount_setattr({}, {})", label.display(), attr_names(flags)),
                e,
            )
        })
    }

    fn attach(&mut self, tree: BorrowedFd<'_>, at: BorrowedFd<'_>, label: &Path) -> Result<()> {
        move_mount(
            tree,
            "",
            at,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(call_error(format!("move_mount(to {})", label.display())))
    }

    fn pivot(&mut self, root: BorrowedFd<'_>) -> Result<()> {
        rustix::process::fchdir(root).map_err(call_error("fchdir(new root)".into()))?;
        rustix::process::pivot_root(".", ".").map_err(call_error("pivot_root(., .)".into()))?;
        unmount(".", UnmountFlags::DETACH)
            .map_err(call_error("umount2(old root, MNT_DETACH)".into()))?;
        rustix::process::chdir("/").map_err(call_error("chdir(/)".into()))
    }

    fn overlay(&mut self, lower: &[PathBuf], upper: Option<(PathBuf, PathBuf)>) -> Result<OwnedFd> {
        let text = |path: &Path| path.display().to_string();
        let lower: Vec<String> = lower.iter().map(|path| text(path)).collect();
        let mut options = vec![("lowerdir", lower.join(":"))];
        if let Some((upper, work)) = upper {
            options.push(("upperdir", text(&upper)));
            options.push(("workdir", text(&work)));
        }
        new_filesystem("overlay", &options, MountAttrFlags::empty())
    }
}

/// `struct mount_attr` of `<linux/mount.h>` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttrArg {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)`, which rustix lacks: sets `flags` on the mount `tree` refers to.
fn mount_setattr(tree: BorrowedFd<'_>, flags: MountAttrFlags) -> std::io::Result<()> {
    change_mount_attrs(
        Some(tree),
        c"",
        libc::AT_EMPTY_PATH,
        flags,
        MountAttrFlags::empty(),
    )
}

/// `mount_setattr(2)` on `path` relative to `dir` (the cwd if `None`) with `at_flags`:
/// sets `set` and clears `clear`.
fn change_mount_attrs(
    dir: Option<BorrowedFd<'_>>,
    path: &std::ffi::CStr,
    at_flags: libc::c_int,
    set: MountAttrFlags,
    clear: MountAttrFlags,
) -> std::io::Result<()> {
    let arg = MountAttrArg {
        attr_set: u64::from(set.bits()),
        attr_clr: u64::from(clear.bits()),
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a NUL-terminated string and `arg` a live struct whose size is
    // passed with it; the kernel only reads both.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dir.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd()),
            path.as_ptr(),
            at_flags,
            &arg as *const MountAttrArg,
            std::mem::size_of::<MountAttrArg>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the directory `dir` (trusted: the runtime dir, a work dir the operator named).
pub fn open_dir(dir: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(call_error(format!(
        "open({}, O_PATH|O_DIRECTORY)",
        dir.display()
    )))
}

/// Opens `relative` under the directory `base` without leaving it, for binding the very
/// object that was checked, whatever is renamed afterwards. Symlinks on the way may not
/// leave `base`; one in the last component is opened as itself.
pub fn open_beneath(base: BorrowedFd<'_>, relative: &Path, label: &Path) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW;
    beneath::open(base, relative, flags, Links::StayBeneath).map_err(call_error(format!(
        "openat2({}, {}, RESOLVE_BENEATH)",
        label.display(),
        relative.display()
    )))
}

/// Opens the directory `relative` under `base` for reading (a lock needs more than
/// `O_PATH`), through no symlink.
pub fn open_dir_beneath(base: BorrowedFd<'_>, relative: &Path, label: &Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY;
    beneath::open(base, relative, flags, Links::Refuse).map_err(call_error(format!(
        "openat2({}, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)",
        label.display()
    )))
}

/// Opens `path` (`O_PATH`; only a directory with `dir`) through no symlink on the way.
pub fn open_through_no_symlink(path: &Path, dir: bool) -> std::io::Result<OwnedFd> {
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    openat2(CWD, path, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS).map_err(Into::into)
}

/// The path that names what `fd` refers to for a call that takes only paths (an
/// overlay's layers), as long as `fd` stays open in this process.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Creates the file `name` in `dir` (it must not exist; no symlink is followed), mode 0644,
/// holding `content`.
pub fn write_new_file(dir: BorrowedFd<'_>, name: &str, content: &[u8]) -> Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o644))
        .map_err(call_error(format!("openat({name}, O_CREAT|O_EXCL)")))?;
    std::io::Write::write_all(&mut std::fs::File::from(fd), content)
        .map_err(|e| Error::sys(format!("write({name})"), e))
}

/// Takes a shared lock on `dir` unless someone holds an exclusive one: `false` then.
pub fn try_lock_shared(dir: BorrowedFd<'_>, label: &Path) -> Result<bool> {
    match rustix::fs::flock(dir, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(Error::sys(
            format!("flock({}, LOCK_SH|LOCK_NB)", label.display()),
            e,
        )),
    }
}

/// What an fd refers to, without following it.
pub fn file_type(fd: BorrowedFd<'_>) -> Result<FileType> {
    beneath::file_type(fd).map_err(call_error("fstat".into()))
}

pub fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> Result<bool> {
    beneath::same_file(a, b).map_err(call_error("fstat".into()))
}

pub fn stat(fd: BorrowedFd<'_>) -> Result<rustix::fs::Stat> {
    rustix::fs::fstat(fd).map_err(call_error("fstat".into()))
}

/// Whether `dir` is the host's root directory.
pub fn is_host_root(dir: BorrowedFd<'_>) -> Result<bool> {
    let root = rustix::fs::stat("/").map_err(call_error("stat(/)".into()))?;
    let dir = stat(dir)?;
    Ok((dir.st_dev, dir.st_ino) == (root.st_dev, root.st_ino))
}

/// The target of the symlink an `O_PATH|O_NOFOLLOW` fd refers to.
pub fn read_link(link: BorrowedFd<'_>, label: &Path) -> Result<PathBuf> {
    rustix::fs::readlinkat(link, "", Vec::new())
        .map(|target| PathBuf::from(std::ffi::OsString::from_vec(target.into_bytes())))
        .map_err(call_error(format!("readlinkat({})", label.display())))
}

/// Directory handles inside a root that is being built: every path is walked one
/// component at a time from the root's fd, and a symlink anywhere on it is an error, so what
/// the runtime's trees hold can never redirect where the sandbox creates or mounts things.
/// No privilege needed: unit tests use it on a temp dir.
pub struct Dirs<'a> {
    root: BorrowedFd<'a>,
}

/// What to create at the end of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    Dir,
    File,
}

impl<'a> Dirs<'a> {
    pub fn new(root: BorrowedFd<'a>) -> Self {
        Dirs { root }
    }

    /// The directory `path` (absolute, as the job sees it), made with its parents where
    /// missing, or the file `path` in such a directory. Returns an `O_PATH` fd.
    pub fn make(&self, path: &Path, leaf: Leaf) -> Result<OwnedFd> {
        let names: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(Ok(name)),
                Component::RootDir => None,
                _ => Some(Err(())),
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|()| Error::place(path, PlaceProblem::NotNormalized))?;
        let mut dir: Option<OwnedFd> = None;
        let mut so_far = PathBuf::from("/");
        for (i, name) in names.iter().enumerate() {
            so_far.push(name);
            let kind = if i + 1 < names.len() { Leaf::Dir } else { leaf };
            let parent = dir.as_ref().map_or(self.root, AsFd::as_fd);
            dir = Some(make_one(parent, name, kind, &so_far)?);
        }
        match dir {
            Some(dir) => Ok(dir),
            None => rustix::io::fcntl_dupfd_cloexec(self.root, 3)
                .map_err(call_error("fcntl(F_DUPFD_CLOEXEC)".into())),
        }
    }

    /// The file `path`, if it is there, reached as by [`Dirs::make`] but creating nothing.
    pub fn existing(&self, path: &Path) -> Result<Option<OwnedFd>> {
        let relative = runseal_spec::paths::below_root(path);
        match beneath::open(self.root, relative, OFlags::PATH, Links::Refuse) {
            Ok(fd) => Ok(Some(fd)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::sys(
                format!("openat2({}, RESOLVE_NO_SYMLINKS)", path.display()),
                e,
            )),
        }
    }

    /// Creates the symlink `path` -> `target`; its parent is made as by [`Dirs::make`].
    pub fn symlink(&self, path: &Path, target: &Path) -> Result<()> {
        let (parent, name) = split_parent(path)?;
        let dir = self.make(parent, Leaf::Dir)?;
        rustix::fs::symlinkat(target, &dir, name).map_err(call_error(format!(
            "symlinkat({}, {})",
            target.display(),
            path.display()
        )))
    }
}

fn split_parent(path: &Path) -> Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(Error::place(path, PlaceProblem::NoParent)),
    }
}

/// Opens `name` in `dir` as a `kind`, creating it when missing; never follows a symlink.
/// It is created first and opened after (two calls, where a root being built mostly lacks
/// it), which is safe because neither call follows a link in its last component: mkdirat
/// and an O_EXCL|O_NOFOLLOW create fail on anything already there, a link included, and the
/// open refuses links.
fn make_one(dir: BorrowedFd<'_>, name: &OsStr, kind: Leaf, path: &Path) -> Result<OwnedFd> {
    let created = match kind {
        Leaf::Dir => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))
            .map_err(|e| (e, format!("mkdirat({}, 0755)", path.display()))),
        Leaf::File => rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(drop)
        .map_err(|e| {
            (
                e,
                format!("openat({}, O_CREAT|O_EXCL|O_NOFOLLOW)", path.display()),
            )
        }),
    };
    match created {
        Ok(()) | Err((rustix::io::Errno::EXIST, _)) => {}
        Err((e, call)) => return Err(Error::sys(call, e)),
    }
    let as_kind = match kind {
        Leaf::Dir => OFlags::PATH | OFlags::DIRECTORY,
        Leaf::File => OFlags::PATH,
    };
    let opened = beneath::open(dir, Path::new(name), as_kind, Links::Refuse);
    let fd = opened.map_err(|e| match e {
        rustix::io::Errno::LOOP => Error::place(path, PlaceProblem::Symlink),
        e => Error::sys(
            format!("openat2({}, RESOLVE_NO_SYMLINKS)", path.display()),
            e,
        ),
    })?;
    if kind == Leaf::File && file_type(fd.as_fd())? == FileType::Directory {
        return Err(Error::place(path, PlaceProblem::DirectoryForFile));
    }
    Ok(fd)
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
    clone_into_cgroup(flags, None)
}

/// [`clone_into_namespaces`], and with `cgroup` (a v2 cgroup dir) born in that cgroup
/// (`clone3` with `CLONE_INTO_CGROUP`), so that no one has to move it there.
pub fn clone_into_cgroup(flags: libc::c_int, cgroup: Option<BorrowedFd<'_>>) -> Result<Forked> {
    ensure_single_threaded()?;
    let Some(cgroup) = cgroup else {
        // SAFETY: without CLONE_VM the child gets a copy of the address space, exactly as
        // with fork(2); the process has one thread (checked above), so no lock is held by a
        // thread that the child would lack. The remaining arguments (stack, tids, tls) are
        // unused without the flags that read them.
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
        return forked(ret, &format!("clone({flags:#x})"));
    };
    let args = CloneArgs {
        flags: flags as u32 as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: as for clone above (no CLONE_VM, no stack: a fork-like copy of a
    // single-threaded process); `args` is a valid `clone_args` of the size passed, which
    // the kernel only reads, and `cgroup` is an open fd for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    forked(ret, &format!("clone3({flags:#x} | CLONE_INTO_CGROUP)"))
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `fork(2)`, for the job process under the sandbox's init.
pub fn fork() -> Result<Forked> {
    // SAFETY: called in the sandbox's init process, which has a single thread.
    let ret = unsafe { libc::fork() };
    forked(ret as i64, "fork()")
}

/// Runs `child` in a new process that shares this one's memory, and returns its pid once it
/// has exec'd or exited (`clone(CLONE_VM | CLONE_VFORK)`, as posix_spawn starts programs).
/// Nothing of the address space is copied, which is most of what a fork from runseal's
/// process costs. `child` runs on a stack of its own and must end the child, with an exec
/// or [`exit_now`]; should it return, the child exits with [`crate::launch::SETUP_FAILED`].
pub fn spawn_sharing_memory(child: &mut dyn FnMut()) -> Result<Pid> {
    ensure_single_threaded()?;
    extern "C" fn start(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&mut &mut dyn FnMut()` passed to clone below, alive until
        // the clone returns, which (CLONE_VFORK) is after this process execs or exits.
        let child = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
        child();
        exit_now(crate::launch::SETUP_FAILED)
    }
    let stack = Stack::new(1 << 20)?;
    let mut child = child;
    // SAFETY: the child shares this process's memory, so while it runs this process must
    // not: CLONE_VFORK suspends it until the child execs or exits, and it has one thread
    // (checked above), so no other thread holds a lock (malloc's) the child might take.
    // The child runs `start` on the new stack (its top, 16-byte aligned as mmap's pages
    // are), never returning into this function's frames; it has its own fd table and
    // signal handlers (no CLONE_FILES, no CLONE_SIGHAND), so what it closes or sets up for
    // its exec stays its own.
    let ret = unsafe {
        libc::clone(
            start,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut child as *mut &mut dyn FnMut() as *mut libc::c_void,
        )
    };
    let error = std::io::Error::last_os_error();
    // The child has exec'd or exited, so nothing uses the stack any more.
    drop(stack);
    match ret {
        -1 => Err(Error::sys("clone(CLONE_VM | CLONE_VFORK)", error)),
        pid => Ok(Pid::from_raw(pid).expect("the kernel returns a positive pid")),
    }
}

/// A stack of its own for a process cloned with `CLONE_VM`: `size` bytes above a guard page
/// that stops an overflow (stacks grow down) instead of letting it write below. Unmapped
/// when dropped, which its owner does once that process is gone.
struct Stack {
    mapping: *mut libc::c_void,
    size: usize,
}

const STACK_GUARD: usize = 4096;

impl Stack {
    fn new(size: usize) -> Result<Stack> {
        // SAFETY: a fresh private anonymous mapping, owned by the Stack.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_GUARD + size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(Error::sys("mmap(stack)", std::io::Error::last_os_error()));
        }
        // SAFETY: the lowest page of the mapping just made becomes the guard.
        unsafe { libc::mprotect(mapping, STACK_GUARD, libc::PROT_NONE) };
        Ok(Stack { mapping, size })
    }

    /// Where a process on it starts: its top, 16-byte aligned as pages are.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the mapping's end, the start of a stack that grows down.
        unsafe { (self.mapping as *mut u8).add(STACK_GUARD + self.size) as *mut libc::c_void }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping is this Stack's, and its owner drops it once no process
        // runs on it.
        unsafe { libc::munmap(self.mapping, STACK_GUARD + self.size) };
    }
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
        Err(Error::Threads(threads))
    }
}

/// Brings the loopback interface of the current network namespace up. Through rustix's own
/// system calls only (no libc, so no `errno`): [`NetworkMaker`]'s process runs it on memory
/// it shares with runseal.
pub fn loopback_up() -> Result<()> {
    bring_loopback_up().map_err(call_error("ioctl(lo, SIOCSIFFLAGS, IFF_UP)".into()))
}

fn bring_loopback_up() -> rustix::io::Result<()> {
    use rustix::ioctl::{ioctl, Opcode, Updater};
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value. The name fits in IFNAMSIZ.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    const GET: Opcode = libc::SIOCGIFFLAGS as Opcode;
    const SET: Opcode = libc::SIOCSIFFLAGS as Opcode;
    // SAFETY: both opcodes take a `struct ifreq`, read (and for GET written) by the kernel
    // only during the call.
    unsafe {
        ioctl(&socket, Updater::<GET, libc::ifreq>::new(&mut request))?;
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        ioctl(&socket, Updater::<SET, libc::ifreq>::new(&mut request))
    }
}

/// A network namespace for a job, with its loopback up, being made by a process beside
/// runseal while runseal goes on (parses the runtime, checks it, plans the root): making
/// one is most of what a sandbox's clone costs. The process shares runseal's memory and fd
/// table (`clone(CLONE_VM | CLONE_FILES)`, not a thread of runseal's), makes only system
/// calls through rustix (no allocation, no `errno`, nothing of runseal's it could race
/// with), and leaves an fd of the namespace in the shared table. It starts on another CPU
/// than runseal's ([`Placement`]).
pub struct NetworkMaker {
    /// `None` once waited for.
    pid: Option<Pid>,
    /// Dropped after the maker is waited for (the drop below runs before its fields').
    stack: Stack,
    /// The namespace's fd once made, a negated errno if making it failed, [`PENDING`]
    /// before; written by the maker, read once it is gone.
    made: Box<AtomicI32>,
    placement: Placement,
}

/// The maker's stack: its calls need a few KiB.
const MAKER_STACK: usize = 64 * 1024;
const PENDING: i32 = i32::MIN;

impl NetworkMaker {
    pub fn start() -> Result<NetworkMaker> {
        extern "C" fn make(arg: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `arg` is the maker's `made`, which stays allocated until the maker
            // has waited for this process to end.
            let made = unsafe { &*(arg as *const AtomicI32) };
            let outcome = match new_network_namespace() {
                Ok(namespace) => namespace.into_raw_fd(),
                Err(e) => -e.raw_os_error(),
            };
            made.store(outcome, Ordering::Release);
            0
        }
        let mut maker = NetworkMaker {
            pid: None,
            stack: Stack::new(MAKER_STACK)?,
            made: Box::new(AtomicI32::new(PENDING)),
            placement: Placement::here(),
        };
        // SAFETY: the new process runs `make` on a stack of its own and shares this one's
        // memory: `make` touches only `made` (an atomic) and its stack, and calls no C
        // library function (its system calls are rustix's), so it takes no lock and sets
        // no `errno` of this process. No CLONE_THREAD: it is a process of its own, whose
        // namespace change stays its own and which this one waits for (in `finish` or on
        // drop) before `made` and the stack are freed.
        let ret = unsafe {
            libc::clone(
                make,
                maker.stack.top(),
                libc::CLONE_VM | libc::CLONE_FILES | libc::SIGCHLD,
                &*maker.made as *const AtomicI32 as *mut libc::c_void,
            )
        };
        if ret == -1 {
            return Err(Error::sys(
                "clone(CLONE_VM | CLONE_FILES)",
                std::io::Error::last_os_error(),
            ));
        }
        let pid = Pid::from_raw(ret).expect("the kernel returns a positive pid");
        maker.pid = Some(pid);
        maker.placement.away(pid);
        Ok(maker)
    }

    /// The namespace, once the maker is done.
    pub fn finish(mut self) -> Result<OwnedFd> {
        self.wait();
        match self.made.swap(PENDING, Ordering::Acquire) {
            PENDING => Err(Error::sys(
                "make a network namespace",
                std::io::Error::from(std::io::ErrorKind::Interrupted),
            )),
            // SAFETY: a non-negative value is the fd the maker opened into the table this
            // process shares, owned by no one else.
            fd if fd >= 0 => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            errno => Err(Error::sys(
                "make a network namespace (unshare(CLONE_NEWNET), open it, bring lo up)",
                std::io::Error::from_raw_os_error(-errno),
            )),
        }
    }

    fn wait(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        if self.made.load(Ordering::Acquire) == PENDING {
            // Still at work: it may now run on this CPU too, which is about to sleep.
            let _ = self.placement.anywhere(pid);
        }
        loop {
            match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
                Err(rustix::io::Errno::INTR) => continue,
                _ => return,
            }
        }
    }
}

impl Drop for NetworkMaker {
    fn drop(&mut self) {
        self.wait();
        let made = self.made.load(Ordering::Acquire);
        if made >= 0 {
            // SAFETY: the maker's fd, never handed out (`finish` takes it first).
            drop(unsafe { OwnedFd::from_raw_fd(made) });
        }
    }
}

/// In [`NetworkMaker`]'s process: a new network namespace for it, its fd and loopback.
fn new_network_namespace() -> rustix::io::Result<OwnedFd> {
    // SAFETY: unshare_unsafe is unsafe for CLONE_FILES, which is not asked for; a new
    // network namespace changes this process alone.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET)? };
    let namespace = rustix::fs::open(
        c"/proc/self/ns/net",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    bring_loopback_up()?;
    Ok(namespace)
}

/// Enters the network namespace `namespace` (made by a [`NetworkMaker`]).
pub fn enter_network_namespace(namespace: BorrowedFd<'_>) -> Result<()> {
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
    move_into_link_name_space(namespace, Some(LinkNameSpaceType::Network))
        .map_err(call_error("setns(CLONE_NEWNET)".into()))
}

/// Where a process runseal makes and then works beside runs: on a CPU other than
/// runseal's while runseal works, since a new process otherwise tends to wait on runseal's
/// CPU until runseal sleeps; on any CPU runseal may use once runseal is about to wait for
/// it. A hint about speed only, except that [`Placement::anywhere`] must hold before a job
/// inherits the set.
pub struct Placement {
    allowed: rustix::thread::CpuSet,
    /// `allowed` without this CPU; `None` if that leaves none.
    elsewhere: Option<rustix::thread::CpuSet>,
}

impl Placement {
    pub fn here() -> Placement {
        let allowed = rustix::thread::sched_getaffinity(None).unwrap_or_else(|_| {
            let mut all = rustix::thread::CpuSet::new();
            (0..rustix::thread::CpuSet::MAX_CPU).for_each(|cpu| all.set(cpu));
            all
        });
        let mut elsewhere = allowed;
        elsewhere.unset(rustix::thread::sched_getcpu());
        Placement {
            allowed,
            elsewhere: (elsewhere.count() > 0).then_some(elsewhere),
        }
    }

    /// Moves `pid` off this CPU, if there is another.
    pub fn away(&self, pid: Pid) {
        if let Some(elsewhere) = &self.elsewhere {
            let _ = rustix::thread::sched_setaffinity(Some(pid), elsewhere);
        }
    }

    /// Lets `pid` run on any CPU runseal may use again.
    pub fn anywhere(&self, pid: Pid) -> Result<()> {
        if self.elsewhere.is_none() {
            return Ok(());
        }
        rustix::thread::sched_setaffinity(Some(pid), &self.allowed)
            .map_err(call_error(format!("sched_setaffinity({pid:?})")))
    }
}

/// Dies with SIGKILL when the caller dies. (The caller then never says "go", so a death
/// before this call is seen as end-of-file on the ready pipe.)
pub fn die_with_parent() -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(call_error("prctl(PR_SET_PDEATHSIG, SIGKILL)".into()))
}

/// Drops every privilege for good and becomes `uid`:`gid`: bounding and ambient sets
/// emptied, securebits locked so that no exec regains anything, no_new_privs, then the
/// user switched (NO_SETUID_FIXUP keeps the capabilities that switch needs) and the
/// capability sets cleared.
pub fn drop_privileges(uid: u32, gid: u32) -> Result<()> {
    use rustix::thread::{self, CapabilitySet, CapabilitySets};
    keep_only_capabilities(CapabilitySet::empty())?;
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
    let (uid, gid) = (
        rustix::process::Uid::from_raw(uid),
        rustix::process::Gid::from_raw(gid),
    );
    thread::set_thread_groups(&[gid]).map_err(call_error(format!("setgroups([{gid:?}])")))?;
    thread::set_thread_res_gid(gid, gid, gid).map_err(call_error(format!("setresgid({gid:?})")))?;
    thread::set_thread_res_uid(uid, uid, uid).map_err(call_error(format!("setresuid({uid:?})")))?;
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    thread::set_capabilities(None, none).map_err(call_error("capset(all empty)".into()))
}

/// Closes every fd above stderr but `keep`.
pub fn close_fds_except(keep: BorrowedFd<'_>) -> Result<()> {
    let keep = keep.as_raw_fd() as libc::c_uint;
    for (first, last) in [(3, keep.saturating_sub(1)), (keep + 1, libc::c_uint::MAX)] {
        if first > last {
            continue;
        }
        // SAFETY: the caller (the sandbox's init, ending) holds no Rust object that owns
        // one of these fds and is used after this.
        if unsafe { libc::close_range(first, last, 0) } < 0 {
            return Err(Error::sys(
                format!("close_range({first}, {last}, 0)"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Marks every fd above stderr close-on-exec, so the next exec passes on nothing the
/// caller had open (a shell's `exec 7</srv`, a daemon's sockets) while the fds this process
/// still needs until then keep working.
pub fn close_inherited_fds() -> Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it only sets a flag on
    // fds, which no Rust object relies on being clear.
    let ret = unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    if ret < 0 {
        return Err(Error::sys(
            "close_range(3, ~0, CLOSE_RANGE_CLOEXEC)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
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

/// The signals `runseal run` takes synchronously while its job runs (see [`signal_fd`]):
/// those that end runseal itself, so that the job and its cgroups are cleaned up first.
const WAITED_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn waited_set() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset initialise and fill the set they are given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in WAITED_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks the waited signals for this thread and the threads and children it creates; the
/// job unblocks them with [`unblock_waited_signals`] before its exec.
pub fn block_waited_signals() -> Result<()> {
    mask_waited_signals(libc::SIG_BLOCK, "SIG_BLOCK")
}

pub fn unblock_waited_signals() -> Result<()> {
    mask_waited_signals(libc::SIG_UNBLOCK, "SIG_UNBLOCK")
}

fn mask_waited_signals(how: libc::c_int, name: &str) -> Result<()> {
    let set = waited_set();
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

/// An fd that reads the waited signals (blocked first, by [`block_waited_signals`]), so that
/// one `poll` waits for them beside pipes.
pub fn signal_fd() -> Result<OwnedFd> {
    let set = waited_set();
    // SAFETY: signalfd reads the set; -1 asks for a new fd, which is then owned here alone.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(Error::sys(
            "signalfd(INT|TERM|HUP)",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel just returned this fd, open and owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The next signal [`signal_fd`] has read, if one is pending.
pub fn read_signal(signals: BorrowedFd<'_>) -> Option<i32> {
    // One `struct signalfd_siginfo`: the signal's number comes first, as a u32.
    let mut info = [0u8; 128];
    match rustix::io::read(signals, &mut info) {
        Ok(128) => Some(u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32),
        _ => None,
    }
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

pub fn chroot_into(dir: &Path) -> Result<()> {
    rustix::process::chroot(dir).map_err(call_error(format!("chroot({})", dir.display())))?;
    rustix::process::chdir("/").map_err(call_error("chdir(/)".into()))
}

/// Removes every capability but `keep` from the bounding set, so that nothing exec'd from
/// here on can hold the others, uid 0 included.
pub fn keep_only_capabilities(keep: rustix::thread::CapabilitySet) -> Result<()> {
    for (name, cap) in rustix::thread::CapabilitySet::all().iter_names() {
        if keep.contains(cap) {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(cap) {
            // A capability newer than the running kernel: nobody can hold it.
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(Error::sys(format!("prctl(PR_CAPBSET_DROP, CAP_{name})"), e)),
        }
    }
    Ok(())
}

/// From PID 1 of a namespace: SIGKILL to every other process in it.
pub fn kill_all_others() -> Result<()> {
    // SAFETY: kill takes two integers and touches no memory of this process.
    let ret = unsafe { libc::kill(-1, libc::SIGKILL) };
    if ret < 0 {
        let error = std::io::Error::last_os_error();
        // ESRCH: nothing else was running.
        if error.raw_os_error() != Some(libc::ESRCH) {
            return Err(Error::sys("kill(-1, SIGKILL)", error));
        }
    }
    Ok(())
}

/// One event of a fanotify group: the process that caused it, the event bits and (unless
/// the event carries none) an fd of the file, opened for this process by the kernel.
pub struct FanotifyEvent {
    pub pid: i32,
    pub mask: u64,
    pub file: Option<OwnedFd>,
}

/// A notification-class fanotify group (`FAN_CLASS_NOTIF`) with an unlimited queue, read
/// without blocking; the fds of its events are opened read-only and non-blocking (a FIFO's
/// open would otherwise wait for a writer).
pub fn fanotify_init() -> Result<OwnedFd> {
    let flags = libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK;
    let flags = flags | libc::FAN_UNLIMITED_QUEUE;
    let event_flags = libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: fanotify_init takes two integers and returns a new fd or -1.
    let ret = unsafe { libc::fanotify_init(flags, event_flags as libc::c_uint) };
    if ret < 0 {
        return Err(Error::sys(
            "fanotify_init(FAN_CLASS_NOTIF|FAN_UNLIMITED_QUEUE)",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `ret` is a new fd that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ret) })
}

/// Marks the mount holding `path` (in the caller's mount namespace) for the opens and execs
/// of files there and the opens of dirs (`FAN_MARK_MOUNT`, `FAN_OPEN|FAN_OPEN_EXEC|FAN_ONDIR`).
pub fn fanotify_mark_mount(group: BorrowedFd<'_>, path: &Path) -> std::io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: the path is a NUL-terminated string alive for the call; the kernel reads it.
    let ret = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
            libc::FAN_OPEN | libc::FAN_OPEN_EXEC | libc::FAN_ONDIR,
            libc::AT_FDCWD,
            c_path.as_ptr(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the events queued on `group` now (none when it would block). Every event's fd is
/// owned by the returned event, so it is closed when the event is dropped.
pub fn fanotify_read(group: BorrowedFd<'_>) -> Result<Vec<FanotifyEvent>> {
    let mut events = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match rustix::io::read(group, &mut buffer) {
            Ok(0) | Err(rustix::io::Errno::AGAIN) => return Ok(events),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::sys("read(fanotify)", e)),
        };
        let size = std::mem::size_of::<libc::fanotify_event_metadata>();
        let mut offset = 0;
        while offset + size <= read {
            // SAFETY: `offset + size` lies within the bytes the kernel wrote; the struct is
            // plain old data, read unaligned from the byte buffer.
            let meta: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(buffer.as_ptr().add(offset).cast()) };
            if meta.vers != libc::FANOTIFY_METADATA_VERSION || (meta.event_len as usize) < size {
                return Err(Error::sys(
                    "read(fanotify)",
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "event metadata version {} length {}",
                            meta.vers, meta.event_len
                        ),
                    ),
                ));
            }
            let file = (meta.fd >= 0).then(|| {
                // SAFETY: the kernel opened this fd for this event in this process; nothing
                // else owns it.
                unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(meta.fd) }
            });
            events.push(FanotifyEvent {
                pid: meta.pid,
                mask: meta.mask,
                file,
            });
            offset += meta.event_len as usize;
        }
    }
}

/// Makes every mount of the caller's mount namespace read-only (`mount_setattr` of `/`
/// with `AT_RECURSIVE`).
pub fn make_all_read_only() -> Result<()> {
    let read_only = MountAttrFlags::MOUNT_ATTR_RDONLY;
    change_mount_attrs(
        None,
        c"/",
        libc::AT_RECURSIVE,
        read_only,
        MountAttrFlags::empty(),
    )
    .map_err(|e| Error::sys("mount_setattr(/, AT_RECURSIVE, MOUNT_ATTR_RDONLY)", e))
}

/// Binds the directory `dir` writable over itself (after [`make_all_read_only`]).
pub fn bind_writable_over_itself(dir: &Path) -> Result<()> {
    let tree = open_tree(
        CWD,
        dir,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(call_error(format!(
        "open_tree({}, OPEN_TREE_CLONE)",
        dir.display()
    )))?;
    let (nosuid, read_only) = (
        MountAttrFlags::MOUNT_ATTR_NOSUID,
        MountAttrFlags::MOUNT_ATTR_RDONLY,
    );
    change_mount_attrs(
        Some(tree.as_fd()),
        c"",
        libc::AT_EMPTY_PATH,
        nosuid,
        read_only,
    )
    .map_err(|e| {
        let call = format!("mount_setattr({}, clear MOUNT_ATTR_RDONLY)", dir.display());
        Error::sys(call, e)
    })?;
    move_mount(
        tree.as_fd(),
        "",
        CWD,
        dir,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(call_error(format!("move_mount(to {})", dir.display())))
}

/// Whether the child `pid` has ended, and how (`waitpid(WNOHANG)`); blocks with `block`.
pub fn wait_child(pid: Pid, block: bool) -> Result<Option<rustix::process::WaitStatus>> {
    let options = if block {
        rustix::process::WaitOptions::empty()
    } else {
        rustix::process::WaitOptions::NOHANG
    };
    loop {
        match rustix::process::waitpid(Some(pid), options) {
            Ok(status) => return Ok(status.map(|(_, s)| s)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::sys(format!("waitpid({pid:?})"), e)),
        }
    }
}

/// Waits up to `timeout` for one of `fds` to become readable or hung up; returns each one's
/// `revents` (`POLLIN`, `POLLHUP`, ...), all empty on a timeout or a signal.
pub fn wait_readable(
    fds: &[BorrowedFd<'_>],
    timeout: std::time::Duration,
) -> Result<Vec<libc::c_short>> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let millis = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: poll reads and writes only the pollfds passed by pointer with their count,
    // alive for the call.
    let ret = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, millis) };
    if ret < 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::sys("poll", error));
        }
    }
    Ok(polls.iter().map(|p| p.revents).collect())
}

/// Loads `program` into the calling thread as a seccomp filter whose
/// `SECCOMP_RET_USER_NOTIF` calls are reported on the returned listener
/// (`SECCOMP_FILTER_FLAG_NEW_LISTENER`; the caller needs no_new_privs). The listener is
/// close-on-exec.
pub fn seccomp_listener(program: &[libc::sock_filter]) -> Result<OwnedFd> {
    let call = "seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER)";
    let length = u16::try_from(program.len())
        .map_err(|_| Error::sys(call, std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    let fprog = libc::sock_fprog {
        len: length,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `length` instructions alive for the call, which the kernel
    // copies and never writes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(Error::sys(call, std::io::Error::last_os_error()));
    }
    // SAFETY: with NEW_LISTENER the kernel returns a new fd that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ret as i32) })
}

/// A system call a seccomp filter stopped for the supervisor: its thread (in this
/// process's PID namespace), number and raw arguments.
#[derive(Debug, Clone, Copy)]
pub struct SeccompNotice {
    pub id: u64,
    pub pid: u32,
    pub nr: i64,
    pub args: [u64; 6],
}

/// Receives the next notification pending on `listener` (`SECCOMP_IOCTL_NOTIF_RECV`),
/// `None` when its thread died or was interrupted since the listener became readable.
pub fn seccomp_receive(listener: BorrowedFd<'_>) -> Result<Option<SeccompNotice>> {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: SECCOMP_GET_NOTIF_SIZES writes one `seccomp_notif_sizes`, passed by pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    if ret < 0 {
        let error = std::io::Error::last_os_error();
        return Err(Error::sys("seccomp(SECCOMP_GET_NOTIF_SIZES)", error));
    }
    // The kernel writes its own size of the struct, which may outgrow this one's, and wants
    // the buffer zeroed.
    let size = usize::from(sizes.seccomp_notif).max(std::mem::size_of::<libc::seccomp_notif>());
    let mut buffer = vec![0u64; size.div_ceil(8)];
    loop {
        // SAFETY: the buffer holds at least the kernel's `seccomp_notif`, 8-byte aligned and
        // zeroed, alive for the call; the kernel writes into it and keeps no pointer.
        let ret = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                buffer.as_mut_ptr(),
            )
        };
        if ret == 0 {
            break;
        }
        match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            e if e.kind() == std::io::ErrorKind::Interrupted => buffer.fill(0),
            e => return Err(Error::sys("ioctl(SECCOMP_IOCTL_NOTIF_RECV)", e)),
        }
    }
    // SAFETY: the buffer starts with the kernel's `seccomp_notif` (plain old data), which
    // the successful call filled in.
    let notice: libc::seccomp_notif = unsafe { std::ptr::read(buffer.as_ptr().cast()) };
    Ok(Some(SeccompNotice {
        id: notice.id,
        pid: notice.pid,
        nr: i64::from(notice.data.nr),
        args: notice.data.args,
    }))
}

/// Whether the notification `id` is still pending (`SECCOMP_IOCTL_NOTIF_ID_VALID`): false
/// once its thread died, after which its pid may name another process.
pub fn seccomp_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    // SAFETY: the ioctl reads one u64, passed by pointer and alive for the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        )
    };
    ret == 0
}

/// Lets the stopped call `id` go on as if no filter had stopped it
/// (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`); a thread that died meanwhile is no error.
pub fn seccomp_continue(listener: BorrowedFd<'_>, id: u64) -> Result<()> {
    let mut response = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: the ioctl reads one `seccomp_notif_resp`, passed by pointer and alive for
    // the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut response as *mut libc::seccomp_notif_resp,
        )
    };
    if ret < 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ENOENT) {
            return Err(Error::sys(
                "ioctl(SECCOMP_IOCTL_NOTIF_SEND, CONTINUE)",
                error,
            ));
        }
    }
    Ok(())
}

/// Sends `fd` over the Unix socket `socket` (`SCM_RIGHTS`, with one byte).
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        socket,
        &[std::io::IoSlice::new(b"f")],
        &mut control,
        SendFlags::empty(),
    )
    .map(drop)
    .map_err(call_error("sendmsg(SCM_RIGHTS)".into()))
}

/// Receives an fd sent by [`send_fd`]; `None` when the peer closed the socket first.
pub fn receive_fd(socket: BorrowedFd<'_>) -> Result<Option<OwnedFd>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    loop {
        let received = rustix::net::recvmsg(
            socket,
            &mut [std::io::IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        );
        match received {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::sys("recvmsg(SCM_RIGHTS)", e)),
        }
    }
    let fd = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root, which making a network namespace needs; outside CI, a printed reason to skip.
    fn root() -> bool {
        if rustix::process::geteuid().is_root() {
            return true;
        }
        assert!(std::env::var_os("CI").is_none(), "needs root under CI");
        eprintln!("skipped: needs root (unshare(CLONE_NEWNET))");
        false
    }

    fn loopback_is_up() -> bool {
        use rustix::ioctl::{ioctl, Opcode, Updater};
        let socket = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::DGRAM,
            None,
        )
        .unwrap();
        // SAFETY: as in bring_loopback_up.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        const GET: Opcode = libc::SIOCGIFFLAGS as Opcode;
        // SAFETY: SIOCGIFFLAGS fills the ifreq passed.
        unsafe {
            ioctl(&socket, Updater::<GET, libc::ifreq>::new(&mut request)).unwrap();
            request.ifr_ifru.ifru_flags & libc::IFF_UP as libc::c_short != 0
        }
    }

    #[test]
    fn a_network_namespace_made_beside_is_new_with_its_loopback_up() {
        if !root() {
            return;
        }
        let ours = rustix::fs::stat("/proc/self/ns/net").unwrap().st_ino;
        let namespace = NetworkMaker::start().unwrap().finish().unwrap();
        assert_ne!(rustix::fs::fstat(&namespace).unwrap().st_ino, ours);
        // On a thread of its own, which alone enters it.
        let up = std::thread::spawn(move || {
            enter_network_namespace(namespace.as_fd()).unwrap();
            loopback_is_up()
        });
        assert!(up.join().unwrap());
        // A maker dropped unfinished is waited for: its process is reaped.
        let maker = NetworkMaker::start().unwrap();
        let pid = maker.pid.unwrap();
        drop(maker);
        assert_eq!(
            rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG).err(),
            Some(rustix::io::Errno::CHILD)
        );
    }
}
