//! Seccomp filters for jobs and for the builder.
//!
//! A job gets an allowlist modelled on Docker's default profile: a system call missing from
//! it fails with ENOSYS, so programs treat a call the list does not know (a newer kernel's,
//! or `clone3` and `openat2`, whose arguments sit in structs a filter cannot read) as absent
//! and fall back to an older call that is checked. The same filter refuses with EPERM, as
//! the kernel would without the capability, the calls a job must never make (mounts,
//! namespaces, tracing, kernel code and keyrings, io_uring, terminal injection) and the
//! calls that would give a file setuid or setgid bits, so a job cannot leave a setuid
//! binary in its work dir for the host to run.
//!
//! The builder runs package managers as root, so it keeps the kernel's default of allowing
//! everything but the privileged classes; chown and setuid modes stay allowed there, since
//! dpkg installs setuid binaries into the build's overlay.

use std::collections::BTreeMap;

use seccompiler::{sock_filter, BpfProgram, TargetArch};

use crate::error::{Error, Result};

/// Numbers the `libc` crate does not name on every architecture; calls added since Linux
/// 5.1 share one number on all of them.
const SYS_FCHMODAT2: i64 = 452;
const SYS_MSEAL: i64 = 462;

/// What a job may call (apart from the refusals below).
const ALLOWED: &[i64] = &[
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_brk,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_chdir,
    libc::SYS_clock_getres,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_clone,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_connect,
    libc::SYS_copy_file_range,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fadvise64,
    libc::SYS_fallocate,
    libc::SYS_fanotify_mark,
    libc::SYS_fchdir,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    SYS_FCHMODAT2,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_fcntl,
    libc::SYS_fdatasync,
    libc::SYS_fgetxattr,
    libc::SYS_flistxattr,
    libc::SYS_flock,
    libc::SYS_fremovexattr,
    libc::SYS_fsetxattr,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fsync,
    libc::SYS_ftruncate,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_getcpu,
    libc::SYS_getcwd,
    libc::SYS_getdents64,
    libc::SYS_getegid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getgroups,
    libc::SYS_getitimer,
    libc::SYS_getpeername,
    libc::SYS_getpgid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_getpriority,
    libc::SYS_getrandom,
    libc::SYS_getresgid,
    libc::SYS_getresuid,
    libc::SYS_get_robust_list,
    libc::SYS_getrusage,
    libc::SYS_getsid,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_gettid,
    libc::SYS_gettimeofday,
    libc::SYS_getuid,
    libc::SYS_getxattr,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_rm_watch,
    libc::SYS_io_cancel,
    libc::SYS_ioctl,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    libc::SYS_ioprio_get,
    libc::SYS_ioprio_set,
    libc::SYS_io_setup,
    libc::SYS_io_submit,
    libc::SYS_kill,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_restrict_self,
    libc::SYS_lgetxattr,
    libc::SYS_linkat,
    libc::SYS_listen,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_lremovexattr,
    libc::SYS_lseek,
    libc::SYS_lsetxattr,
    libc::SYS_madvise,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_memfd_secret,
    libc::SYS_mincore,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_mlockall,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_mq_getsetattr,
    libc::SYS_mq_notify,
    libc::SYS_mq_open,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_unlink,
    libc::SYS_mremap,
    SYS_MSEAL,
    libc::SYS_msgctl,
    libc::SYS_msgget,
    libc::SYS_msgrcv,
    libc::SYS_msgsnd,
    libc::SYS_msync,
    libc::SYS_munlock,
    libc::SYS_munlockall,
    libc::SYS_munmap,
    libc::SYS_nanosleep,
    libc::SYS_newfstatat,
    libc::SYS_openat,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pipe2,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_pkey_mprotect,
    libc::SYS_ppoll,
    libc::SYS_prctl,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_prlimit64,
    libc::SYS_process_mrelease,
    libc::SYS_pselect6,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
    libc::SYS_read,
    libc::SYS_readahead,
    libc::SYS_readlinkat,
    libc::SYS_readv,
    libc::SYS_recvfrom,
    libc::SYS_recvmmsg,
    libc::SYS_recvmsg,
    libc::SYS_remap_file_pages,
    libc::SYS_removexattr,
    libc::SYS_renameat2,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_getattr,
    libc::SYS_sched_getparam,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_setattr,
    libc::SYS_sched_setparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_yield,
    libc::SYS_seccomp,
    libc::SYS_semctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_sendfile,
    libc::SYS_sendmmsg,
    libc::SYS_sendmsg,
    libc::SYS_sendto,
    libc::SYS_setfsgid,
    libc::SYS_setfsuid,
    libc::SYS_setgid,
    libc::SYS_setgroups,
    libc::SYS_setitimer,
    libc::SYS_setpgid,
    libc::SYS_setpriority,
    libc::SYS_setregid,
    libc::SYS_setresgid,
    libc::SYS_setresuid,
    libc::SYS_setreuid,
    libc::SYS_set_robust_list,
    libc::SYS_setsid,
    libc::SYS_setsockopt,
    libc::SYS_set_tid_address,
    libc::SYS_setuid,
    libc::SYS_setxattr,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_shmget,
    libc::SYS_shutdown,
    libc::SYS_sigaltstack,
    libc::SYS_signalfd4,
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_splice,
    libc::SYS_statfs,
    libc::SYS_statx,
    libc::SYS_symlinkat,
    libc::SYS_sync,
    libc::SYS_syncfs,
    libc::SYS_sysinfo,
    libc::SYS_tee,
    libc::SYS_tgkill,
    libc::SYS_timer_create,
    libc::SYS_timer_delete,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_gettime,
    libc::SYS_timer_settime,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime,
    libc::SYS_times,
    libc::SYS_tkill,
    libc::SYS_truncate,
    libc::SYS_umask,
    libc::SYS_uname,
    libc::SYS_unlinkat,
    libc::SYS_utimensat,
    libc::SYS_vmsplice,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_write,
    libc::SYS_writev,
];

/// The older calls x86_64 keeps beside their `*at` successors.
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[i64] = &[
    libc::SYS_access,
    libc::SYS_alarm,
    libc::SYS_arch_prctl,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_creat,
    libc::SYS_dup2,
    libc::SYS_epoll_create,
    libc::SYS_epoll_wait,
    libc::SYS_eventfd,
    libc::SYS_fork,
    libc::SYS_futimesat,
    libc::SYS_getdents,
    libc::SYS_getpgrp,
    libc::SYS_getrlimit,
    libc::SYS_inotify_init,
    libc::SYS_lchown,
    libc::SYS_link,
    libc::SYS_lstat,
    libc::SYS_mkdir,
    libc::SYS_mknod,
    libc::SYS_open,
    libc::SYS_pause,
    libc::SYS_pipe,
    libc::SYS_poll,
    libc::SYS_readlink,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_rmdir,
    libc::SYS_select,
    libc::SYS_setrlimit,
    libc::SYS_signalfd,
    libc::SYS_stat,
    libc::SYS_symlink,
    libc::SYS_sync_file_range,
    libc::SYS_time,
    libc::SYS_unlink,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_vfork,
];

#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[i64] = &[];

/// Refused with EPERM to jobs and builds alike: mounts and namespaces, tracing other
/// processes, kernel code, keyrings, BPF, io_uring (its operations bypass this filter),
/// file handles (they open files past any mount), rebooting, swap, the clock, hostnames.
const PRIVILEGED: &[i64] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_process_madvise,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_fanotify_init,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_vhangup,
];

/// Refused with EPERM to jobs only: execution domains (they can turn off ASLR).
const JOB_DENIED: &[i64] = &[libc::SYS_personality];

/// Namespace flags a job may not pass to `clone`.
const CLONE_NAMESPACES: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// Mode bits a job may not give a file.
const SET_ID_BITS: [u32; 2] = [libc::S_ISUID, libc::S_ISGID];

/// Open flags that create a file with the call's mode.
const CREATING: [libc::c_int; 2] = [libc::O_CREAT, libc::O_TMPFILE];

/// Virtual machine sockets reach the hypervisor, whatever the network namespace.
const AF_VSOCK: u32 = 40;

/// What a call gets when none of its argument rules holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    /// EPERM, as the kernel answers without the capability.
    Refuse,
    /// ENOSYS, as for a call the kernel does not know.
    Absent,
}

impl Verdict {
    fn ret(self) -> u32 {
        match self {
            Verdict::Allow => ALLOW,
            Verdict::Refuse => REFUSED,
            Verdict::Absent => ABSENT,
        }
    }
}

/// `(argument & mask) == value`, or without a value `(argument & mask) != 0`, on the low
/// 32 bits of argument `arg`: every flag and mode bit looked at lives there, and the high
/// half of an `int` argument is not defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArgCheck {
    arg: u8,
    mask: u32,
    value: Option<u32>,
}

/// Every bit of `mask` is set in argument `arg`.
fn has_bits(arg: u8, mask: u32) -> ArgCheck {
    ArgCheck {
        arg,
        mask,
        value: Some(mask),
    }
}

/// Any bit of `mask` is set in argument `arg`.
fn any_bit(arg: u8, mask: u32) -> ArgCheck {
    ArgCheck {
        arg,
        mask,
        value: None,
    }
}

fn equals(arg: u8, value: u32) -> ArgCheck {
    ArgCheck {
        arg,
        mask: u32::MAX,
        value: Some(value),
    }
}

/// A call is refused (EPERM) when all the checks of any one of its rules hold.
type Rules = Vec<Vec<ArgCheck>>;

/// What one filter decides: a verdict per call number, and rules on the arguments of some.
struct Policy {
    /// The verdict of every call not in `calls`.
    otherwise: Verdict,
    calls: BTreeMap<u32, Verdict>,
    arguments: BTreeMap<u32, Rules>,
}

impl Policy {
    fn new(otherwise: Verdict) -> Policy {
        Policy {
            otherwise,
            calls: BTreeMap::new(),
            arguments: BTreeMap::new(),
        }
    }

    /// Gives `verdict` to `calls`; the kernel's numbers are never negative, and one that
    /// were would keep the default verdict.
    fn set(&mut self, calls: &[i64], verdict: Verdict) {
        for nr in calls.iter().filter_map(|&n| u32::try_from(n).ok()) {
            self.calls.insert(nr, verdict);
        }
    }

    fn rules(&mut self, call: i64, rules: Rules) {
        if let Ok(nr) = u32::try_from(call) {
            self.arguments.insert(nr, rules);
        }
    }

    /// `clone` with a namespace flag and `ioctl(TIOCSTI)`: refused to jobs and builds.
    fn privileged_arguments(&mut self) {
        let namespaces = CLONE_NAMESPACES
            .iter()
            .fold(0, |all, &flag| all | flag as u32);
        self.rules(libc::SYS_clone, vec![vec![any_bit(0, namespaces)]]);
        self.rules(libc::SYS_ioctl, vec![vec![equals(1, libc::TIOCSTI as u32)]]);
    }

    /// The calls that would set S_ISUID or S_ISGID: a mode change, or a creation, whose
    /// mode argument (at `mode_arg`) holds either bit; creations by `open` only with
    /// `O_CREAT` or `O_TMPFILE` in the flags (at `flags_arg`).
    fn set_id_modes(&mut self) {
        let set_id = SET_ID_BITS.iter().fold(0, |all, &bit| all | bit);
        let setting = |mode_arg: u8| -> Rules { vec![vec![any_bit(mode_arg, set_id)]] };
        let creating = |flags_arg: u8| -> Rules {
            CREATING
                .iter()
                .map(|&flag| {
                    vec![
                        has_bits(flags_arg, flag as u32),
                        any_bit(flags_arg + 1, set_id),
                    ]
                })
                .collect()
        };
        self.rules(libc::SYS_fchmod, setting(1));
        self.rules(libc::SYS_fchmodat, setting(2));
        self.rules(SYS_FCHMODAT2, setting(2));
        self.rules(libc::SYS_mkdirat, setting(2));
        self.rules(libc::SYS_mknodat, setting(2));
        self.rules(libc::SYS_openat, creating(2));
        #[cfg(target_arch = "x86_64")]
        {
            self.rules(libc::SYS_chmod, setting(1));
            self.rules(libc::SYS_creat, setting(1));
            self.rules(libc::SYS_mkdir, setting(1));
            self.rules(libc::SYS_mknod, setting(1));
            self.rules(libc::SYS_open, creating(1));
        }
    }

    /// The policy as one classic BPF program. The call numbers are cut into runs that get
    /// the same answer, searched as a binary tree ([`Emitter`]): a call costs about a dozen
    /// instructions and the job's whole program under 200, where seccompiler compares one number after
    /// another (over 1,400 instructions for the job's allowlist, which the kernel
    /// translates and JITs at every job start and then walks on every call). One program
    /// rather than an allowlist and a refusal filter: the kernel checks and JITs it once
    /// per start and runs one filter per call. Numbers of another ABI on this arch (x86_64's
    /// x32, the same audit arch with bit 30 set) are unknown calls whatever the policy says
    /// of the others, so that a denylist (the builder's) cannot be walked around through
    /// them.
    fn compile(&self) -> Result<BpfProgram> {
        let mut runs: Vec<(u32, Leaf)> = Vec::new();
        let mut push = |from: u32, leaf| push_run(&mut runs, from, leaf);
        let mut next: u64 = 0;
        let listed: std::collections::BTreeSet<u32> = self
            .calls
            .keys()
            .chain(self.arguments.keys())
            .copied()
            .collect();
        for nr in listed {
            if u64::from(nr) > next {
                push(next as u32, Leaf::Return(self.otherwise.ret()));
            }
            let verdict = self.calls.get(&nr).copied().unwrap_or(self.otherwise);
            push(
                nr,
                match self.arguments.get(&nr) {
                    // A refused call stays refused whatever its arguments.
                    Some(rules) if verdict != Verdict::Refuse => Leaf::Check(rules, verdict.ret()),
                    _ => Leaf::Return(verdict.ret()),
                },
            );
            next = u64::from(nr) + 1;
        }
        if next <= u64::from(u32::MAX) {
            push(next as u32, Leaf::Return(self.otherwise.ret()));
        }
        // seccomp_data: nr at offset 0, arch at 4.
        let head = vec![
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
            jump(libc::BPF_JEQ, audit_arch()?, 1, 0),
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1),
            stmt(libc::BPF_RET | libc::BPF_K, ABSENT),
        ];
        Ok(Emitter::default().program(head, &runs))
    }
}

/// Adds the run starting at `from`, unless it only continues the previous one.
fn push_run<'a>(runs: &mut Vec<(u32, Leaf<'a>)>, from: u32, leaf: Leaf<'a>) {
    match (runs.last(), &leaf) {
        (Some((_, Leaf::Return(last))), Leaf::Return(this)) if last == this => {}
        _ => runs.push((from, leaf)),
    }
}

/// What the program does for one run of call numbers.
enum Leaf<'a> {
    Return(u32),
    /// EPERM if one of the rules holds, else return the value.
    Check(&'a Rules, u32),
}

fn arch() -> Result<TargetArch> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        "riscv64" => Ok(TargetArch::riscv64),
        other => Err(Error::Architecture(other.to_string())),
    }
}

/// The `AUDIT_ARCH_*` value seccomp reports for this architecture's native calls.
fn audit_arch() -> Result<u32> {
    Ok(match arch()? {
        TargetArch::x86_64 => 62 | 0xC000_0000,
        TargetArch::aarch64 => 183 | 0xC000_0000,
        TargetArch::riscv64 => 243 | 0xC000_0000,
    })
}

/// x86_64's x32 calls are its own numbers with this bit set; no native number has it.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const ABSENT: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const REFUSED: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(op: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

/// Where code of a program being emitted back to front starts: its index counted from the
/// program's last instruction, and the value it returns if it is only a `RET`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: usize,
    returns: Option<u32>,
}

/// The search over the call numbers, emitted back to front, so that the target of every
/// jump (which only goes forward) is placed before the jump is. A node is one `JGE` whose
/// two branches jump, each to its half; a half that only returns jumps to a `RET` shared
/// by every half returning that value, rather than holding its own. A conditional jump
/// reaches 255 instructions: a target beyond gets a copy of its `RET` or a `JA` near.
#[derive(Default)]
struct Emitter {
    /// The program so far, its last instruction first.
    code: Vec<sock_filter>,
    /// The nearest `RET` of each value.
    returns: BTreeMap<u32, usize>,
}

/// How far a conditional jump may go; two short of its 255, as the node's second branch
/// may add an instruction between the first's target and the jump.
const NEAR: usize = 253;

impl Emitter {
    fn push(&mut self, insn: sock_filter) -> usize {
        self.code.push(insn);
        self.code.len() - 1
    }

    fn ret(&mut self, value: u32) -> Entry {
        let at = match self.returns.get(&value) {
            Some(&at) => at,
            None => {
                let at = self.push(stmt(libc::BPF_RET | libc::BPF_K, value));
                self.returns.insert(value, at);
                at
            }
        };
        Entry {
            at,
            returns: Some(value),
        }
    }

    /// Where the next instruction pushed can jump to reach `to`.
    fn near(&mut self, to: Entry) -> usize {
        let distance = self.code.len() - to.at - 1;
        if distance <= NEAR {
            return to.at;
        }
        match to.returns {
            Some(value) => {
                let at = self.push(stmt(libc::BPF_RET | libc::BPF_K, value));
                self.returns.insert(value, at);
                at
            }
            None => self.push(stmt(libc::BPF_JMP | libc::BPF_JA, distance as u32)),
        }
    }

    /// Code deciding, for the call number in the accumulator, which of `runs` (each from
    /// its first number to the next run's, together covering every number) it is in, and
    /// doing what that run does.
    fn search(&mut self, runs: &[(u32, Leaf)]) -> Entry {
        match runs {
            [] => self.ret(ABSENT),
            [(_, Leaf::Return(value))] => self.ret(*value),
            [(_, leaf)] => {
                for insn in leaf_code(leaf).into_iter().rev() {
                    self.push(insn);
                }
                Entry {
                    at: self.code.len() - 1,
                    returns: None,
                }
            }
            _ => {
                let (below, from) = runs.split_at(runs.len() / 2);
                let upper = self.search(from);
                let lower = self.search(below);
                let (upper, lower) = (self.near(upper), self.near(lower));
                let at = self.code.len();
                let offset = |to: usize| (at - to - 1) as u8;
                let node = jump(libc::BPF_JGE, from[0].0, offset(upper), offset(lower));
                Entry {
                    at: self.push(node),
                    returns: None,
                }
            }
        }
    }

    /// The program: `head`, then the search over `runs` right after it.
    fn program(mut self, head: Vec<sock_filter>, runs: &[(u32, Leaf)]) -> Vec<sock_filter> {
        let entry = self.search(runs);
        if entry.at + 1 != self.code.len() {
            // The search is a lone shared `RET`, placed before the code that follows it.
            let value = entry.returns.unwrap_or(ABSENT);
            self.push(stmt(libc::BPF_RET | libc::BPF_K, value));
        }
        head.into_iter()
            .chain(self.code.into_iter().rev())
            .collect()
    }
}

/// A check loads an argument's low half (little-endian: at its own offset), masks it and
/// compares, or tests its bits (`JSET`); a failed one jumps to the next rule, past the rest
/// of its own and its EPERM.
fn leaf_code(leaf: &Leaf) -> Vec<sock_filter> {
    let (rules, otherwise) = match leaf {
        Leaf::Return(k) => return vec![stmt(libc::BPF_RET | libc::BPF_K, *k)],
        Leaf::Check(rules, otherwise) => (*rules, *otherwise),
    };
    let masks = |check: &ArgCheck| check.value.is_some() && check.mask != u32::MAX;
    let size = |check: &ArgCheck| if masks(check) { 3 } else { 2 };
    let mut code = Vec::new();
    for rule in rules {
        for (i, check) in rule.iter().enumerate() {
            // seccomp_data: args[i] at offset 16 + 8 i.
            code.push(stmt(
                libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
                16 + 8 * u32::from(check.arg),
            ));
            if masks(check) {
                code.push(stmt(
                    libc::BPF_ALU | libc::BPF_AND | libc::BPF_K,
                    check.mask,
                ));
            }
            let rest = (rule[i + 1..].iter().map(size).sum::<usize>() + 1) as u8;
            code.push(match check.value {
                Some(value) => jump(libc::BPF_JEQ, value, 0, rest),
                None => jump(libc::BPF_JSET, check.mask, 0, rest),
            });
        }
        code.push(stmt(libc::BPF_RET | libc::BPF_K, REFUSED));
    }
    code.push(stmt(libc::BPF_RET | libc::BPF_K, otherwise));
    code
}

/// The job's filter: the allowlist (anything else ENOSYS) with the refusals (EPERM) in it,
/// the refused calls' EPERM winning over the allowlist's ENOSYS.
fn job_policy() -> Policy {
    let mut policy = Policy::new(Verdict::Absent);
    policy.set(ALLOWED, Verdict::Allow);
    policy.set(ALLOWED_ARCH, Verdict::Allow);
    policy.set(PRIVILEGED, Verdict::Refuse);
    policy.set(JOB_DENIED, Verdict::Refuse);
    policy.privileged_arguments();
    policy.set_id_modes();
    policy.rules(libc::SYS_socket, vec![vec![equals(0, AF_VSOCK)]]);
    policy
}

/// The builder's filter: the privileged classes refused (EPERM), everything else allowed;
/// `clone3` fails with ENOSYS so the C library falls back to `clone`, whose flags are seen.
fn builder_policy() -> Policy {
    let mut policy = Policy::new(Verdict::Allow);
    policy.set(PRIVILEGED, Verdict::Refuse);
    policy.set(&[libc::SYS_clone3], Verdict::Absent);
    policy.privileged_arguments();
    policy
}

pub fn job_filters() -> Result<Vec<BpfProgram>> {
    Ok(vec![job_policy().compile()?])
}

pub fn builder_filters() -> Result<Vec<BpfProgram>> {
    Ok(vec![builder_policy().compile()?])
}

/// The filters as bytes, for another process to [`decode`]: per program its length in
/// instructions (4 bytes), then its instructions as the kernel lays them out.
pub fn encode(filters: &[BpfProgram]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for program in filters {
        bytes.extend((program.len() as u32).to_ne_bytes());
        for insn in program {
            bytes.extend(insn.code.to_ne_bytes());
            bytes.extend([insn.jt, insn.jf]);
            bytes.extend(insn.k.to_ne_bytes());
        }
    }
    bytes
}

/// The filters [`encode`] made `bytes` of; `None` unless they are exactly that.
pub fn decode(mut bytes: &[u8]) -> Option<Vec<BpfProgram>> {
    let mut filters = Vec::new();
    while let Some((len, rest)) = bytes.split_first_chunk::<4>() {
        let len = u32::from_ne_bytes(*len) as usize;
        let (program, rest) = rest.split_at_checked(len.checked_mul(INSN_BYTES)?)?;
        filters.push(
            program
                .chunks_exact(INSN_BYTES)
                .map(|insn| sock_filter {
                    code: u16::from_ne_bytes([insn[0], insn[1]]),
                    jt: insn[2],
                    jf: insn[3],
                    k: u32::from_ne_bytes([insn[4], insn[5], insn[6], insn[7]]),
                })
                .collect(),
        );
        bytes = rest;
    }
    bytes.is_empty().then_some(filters)
}

/// The size of a classic BPF instruction: code (2), jt, jf, k (4).
const INSN_BYTES: usize = 8;

/// The largest program the kernel takes (BPF_MAXINSNS), in bytes of [`encode`].
pub const MAX_ENCODED: usize = 4 + 4096 * INSN_BYTES;

/// Loads the filters into the calling thread (needs no_new_privs or CAP_SYS_ADMIN).
pub fn load(filters: &[BpfProgram]) -> Result<()> {
    for filter in filters {
        seccompiler::apply_filter(filter).map_err(Error::Seccomp)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::{DirBuilder, OpenOptions, Permissions};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    use std::path::Path;

    use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
    use rustix::io::Errno;
    use std::os::fd::AsFd;

    use super::*;

    /// Runs the subset of classic BPF the compiled policies use on call `nr` of `arch`
    /// with arguments `args`.
    fn decide(program: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &program[pc];
            let code = u32::from(i.code);
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    acc = match i.k {
                        0 => nr,
                        4 => arch,
                        k if (16..64).contains(&k) && k % 4 == 0 => {
                            let arg = args[(k as usize - 16) / 8];
                            if k % 8 == 0 {
                                arg as u32
                            } else {
                                (arg >> 32) as u32
                            }
                        }
                        k => panic!("unexpected load at {k}"),
                    }
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= i.k,
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c => {
                    let taken = match c & !(libc::BPF_JMP | libc::BPF_K) {
                        op if op == libc::BPF_JEQ => acc == i.k,
                        op if op == libc::BPF_JGE => acc >= i.k,
                        op if op == libc::BPF_JGT => acc > i.k,
                        op if op == libc::BPF_JSET => acc & i.k != 0,
                        op => panic!("unexpected jump {op:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
            }
        }
    }

    /// The answer `policy` means for a call without arguments: what the program must give.
    fn meant(policy: &Policy, nr: u32) -> u32 {
        if nr >= X32_SYSCALL_BIT {
            return ABSENT;
        }
        policy
            .calls
            .get(&nr)
            .copied()
            .unwrap_or(policy.otherwise)
            .ret()
    }

    #[test]
    fn the_job_program_answers_every_call_as_its_lists_say_and_stays_small() {
        let arch = audit_arch().unwrap();
        let job = job_policy();
        // A policy of 700 lone numbers, whose search tree needs long jumps.
        let mut sparse = Policy::new(Verdict::Absent);
        sparse.set(&(0..1400).step_by(2).collect::<Vec<i64>>(), Verdict::Allow);
        for policy in [&job, &sparse] {
            let program = policy.compile().unwrap();
            for nr in (0..1500).chain([0x4000_0000, 0x4000_0001, u32::MAX]) {
                let got = decide(&program, nr, arch, [0; 6]);
                assert_eq!(got, meant(policy, nr), "call {nr}");
            }
            assert_eq!(
                decide(&program, 0, arch ^ 1, [0; 6]),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
        // Every start has the kernel check, translate and JIT it: its size is start time.
        assert!(job.compile().unwrap().len() <= 200);
        for nr in PRIVILEGED.iter().chain(JOB_DENIED) {
            assert_eq!(meant(&job, *nr as u32), REFUSED, "call {nr}");
        }
        assert_eq!(meant(&job, libc::SYS_openat2 as u32), ABSENT);
        assert_eq!(meant(&job, libc::SYS_clone3 as u32), ABSENT);
    }

    #[test]
    fn filters_arrive_as_sent_and_anything_else_is_refused() {
        let filters = job_filters().unwrap();
        let bytes = encode(&filters);
        assert!(bytes.len() <= MAX_ENCODED);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.len(), 1);
        let same = |a: &sock_filter, b: &sock_filter| {
            (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k)
        };
        assert!(decoded[0].len() == filters[0].len());
        assert!(decoded[0].iter().zip(&filters[0]).all(|(a, b)| same(a, b)));
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode(&[bytes.as_slice(), &[0]].concat()).is_none());
        assert!(decode(&u32::MAX.to_ne_bytes()).is_none());
        assert_eq!(decode(&[]).map(|f| f.len()), Some(0));
    }

    #[test]
    fn the_job_program_refuses_by_argument() {
        let arch = audit_arch().unwrap();
        let program = job_policy().compile().unwrap();
        let expect = |want: u32, nr: i64, given: &[u64]| {
            let mut args = [0; 6];
            args[..given.len()].copy_from_slice(given);
            assert_eq!(
                decide(&program, nr as u32, arch, args),
                want,
                "call {nr} with {given:?}"
            );
        };
        let (creat, tmpfile) = (libc::O_CREAT as u64, libc::O_TMPFILE as u64);
        let (sigchld, newuser) = (libc::SIGCHLD as u64, libc::CLONE_NEWUSER as u64);
        expect(ALLOW, libc::SYS_clone, &[sigchld]);
        expect(REFUSED, libc::SYS_clone, &[newuser]);
        expect(
            REFUSED,
            libc::SYS_clone,
            &[libc::CLONE_NEWNET as u64 | sigchld],
        );
        for flag in CLONE_NAMESPACES {
            expect(REFUSED, libc::SYS_clone, &[flag as u64 | sigchld]);
        }
        // What pthread_create passes: a thread, no namespace.
        let thread = libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID;
        expect(ALLOW, libc::SYS_clone, &[thread as u64]);
        expect(REFUSED, libc::SYS_ioctl, &[1, libc::TIOCSTI]);
        expect(REFUSED, libc::SYS_ioctl, &[1, 1 << 32 | libc::TIOCSTI]);
        expect(ALLOW, libc::SYS_ioctl, &[1, libc::TIOCGWINSZ]);
        expect(REFUSED, libc::SYS_socket, &[AF_VSOCK.into(), 1]);
        expect(ALLOW, libc::SYS_socket, &[libc::AF_INET as u64, 1]);
        expect(REFUSED, libc::SYS_fchmod, &[3, 0o4755]);
        expect(ALLOW, libc::SYS_fchmod, &[3, 0o755]);
        expect(REFUSED, libc::SYS_fchmod, &[3, 0o6755]);
        expect(ALLOW, libc::SYS_fchmod, &[3, 0o1777]);
        expect(REFUSED, libc::SYS_fchmodat, &[3, 0, 0o2755]);
        expect(REFUSED, SYS_FCHMODAT2, &[3, 0, 0o2755]);
        expect(REFUSED, libc::SYS_mkdirat, &[3, 0, 0o2775]);
        expect(REFUSED, libc::SYS_mknodat, &[3, 0, 0o4644]);
        expect(REFUSED, libc::SYS_openat, &[3, 0, creat, 0o4755]);
        expect(ALLOW, libc::SYS_openat, &[3, 0, creat, 0o644]);
        expect(ALLOW, libc::SYS_openat, &[3, 0, 0, 0o4755]);
        expect(REFUSED, libc::SYS_openat, &[3, 0, tmpfile, 0o2755]);
        // O_TMPFILE is two bits; O_DIRECTORY, one of them, creates nothing.
        expect(
            ALLOW,
            libc::SYS_openat,
            &[3, 0, libc::O_DIRECTORY as u64, 0o2755],
        );
        #[cfg(target_arch = "x86_64")]
        {
            expect(REFUSED, libc::SYS_open, &[0, creat, 0o4755]);
            expect(ALLOW, libc::SYS_open, &[0, 0, 0o4755]);
            expect(REFUSED, libc::SYS_chmod, &[0, 0o2755]);
            expect(REFUSED, libc::SYS_creat, &[0, 0o4700]);
            expect(REFUSED, libc::SYS_mkdir, &[0, 0o2755]);
            expect(ALLOW, libc::SYS_mkdir, &[0, 0o755]);
            expect(REFUSED, libc::SYS_mknod, &[0, 0o4600]);
        }
    }

    #[test]
    fn the_builder_program_refuses_only_the_privileged_classes() {
        let arch = audit_arch().unwrap();
        let builder = builder_policy();
        let program = builder.compile().unwrap();
        let x32 = [libc::SYS_mount, libc::SYS_unshare, libc::SYS_ptrace]
            .map(|nr| X32_SYSCALL_BIT | nr as u32);
        for nr in (0..1500).chain([0x4000_0000, u32::MAX]).chain(x32) {
            let want = match i64::from(nr) {
                n if PRIVILEGED.contains(&n) => REFUSED,
                libc::SYS_clone3 => ABSENT,
                // x32's `mount`, `unshare`..., around the denylist.
                n if n >= i64::from(X32_SYSCALL_BIT) => ABSENT,
                _ => ALLOW,
            };
            assert_eq!(decide(&program, nr, arch, [0; 6]), want, "call {nr}");
        }
        let userns = [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0];
        assert_eq!(
            decide(&program, libc::SYS_clone as u32, arch, userns),
            REFUSED
        );
        let chmod = [3, 0o4755, 0, 0, 0, 0];
        assert_eq!(
            decide(&program, libc::SYS_fchmod as u32, arch, chmod),
            ALLOW
        );
    }

    /// What each attempt returned, made on a thread of its own with `filters` loaded (a
    /// filter binds only the thread that loads it and what it starts).
    fn under(filters: Vec<BpfProgram>, dir: &Path) -> Vec<(&'static str, Option<i32>)> {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            load(&filters).unwrap();
            let errno = |r: std::io::Result<()>| r.err().map(|e| e.raw_os_error().unwrap_or(-1));
            let file = dir.join("file");
            std::fs::write(&file, "x").unwrap();
            let new = |name: &str, mode: u32| {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .mode(mode)
                    .open(dir.join(name))
                    .map(drop)
            };
            vec![
                (
                    "chmod 0755",
                    errno(std::fs::set_permissions(
                        &file,
                        Permissions::from_mode(0o755),
                    )),
                ),
                (
                    "chmod 4755",
                    errno(std::fs::set_permissions(
                        &file,
                        Permissions::from_mode(0o4755),
                    )),
                ),
                (
                    "chmod 2755",
                    errno(std::fs::set_permissions(
                        &file,
                        Permissions::from_mode(0o2755),
                    )),
                ),
                (
                    "fchmod 6755",
                    errno(
                        std::fs::File::open(&file)
                            .and_then(|f| f.set_permissions(Permissions::from_mode(0o6755))),
                    ),
                ),
                ("create 0644", errno(new("plain", 0o644))),
                ("create 4755", errno(new("setuid", 0o4755))),
                (
                    "mkdir 2775",
                    errno(DirBuilder::new().mode(0o2775).create(dir.join("sgid"))),
                ),
                (
                    "mkdir 0755",
                    errno(DirBuilder::new().mode(0o755).create(dir.join("plain-dir"))),
                ),
                (
                    "openat2",
                    errno(
                        rustix::fs::openat2(
                            CWD,
                            &dir,
                            OFlags::RDONLY,
                            Mode::empty(),
                            ResolveFlags::empty(),
                        )
                        .map(drop)
                        .map_err(Into::into),
                    ),
                ),
                ("setns", errno(setns_own_uts())),
                (
                    "mount",
                    errno(rustix::mount::mount_bind(&dir, &dir).map_err(Into::into)),
                ),
                (
                    "spawn",
                    errno(std::process::Command::new("true").status().map(drop)),
                ),
            ]
        })
        .join()
        .unwrap()
    }

    /// Joins the namespace the thread is already in: harmless, and refused all the same.
    fn setns_own_uts() -> std::io::Result<()> {
        let own = std::fs::File::open("/proc/thread-self/ns/uts")?;
        rustix::thread::move_into_link_name_space(own.as_fd(), None)?;
        Ok(())
    }

    fn expect(results: &[(&str, Option<i32>)], attempt: &str, errno: Option<Errno>) {
        let got = results.iter().find(|(name, _)| *name == attempt).unwrap().1;
        assert_eq!(
            got,
            errno.map(|e| e.raw_os_error()),
            "{attempt}: {results:?}"
        );
    }

    #[test]
    fn jobs_cannot_set_setuid_bits_nor_reach_namespaces_and_openat2_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let results = under(job_filters().unwrap(), dir.path());
        for allowed in ["chmod 0755", "create 0644", "mkdir 0755", "spawn"] {
            expect(&results, allowed, None);
        }
        for refused in [
            "chmod 4755",
            "chmod 2755",
            "fchmod 6755",
            "create 4755",
            "mkdir 2775",
            "setns",
            "mount",
        ] {
            expect(&results, refused, Some(Errno::PERM));
        }
        expect(&results, "openat2", Some(Errno::NOSYS));
        assert!(!dir.path().join("setuid").exists());
    }

    #[test]
    fn the_builder_may_set_setuid_bits_but_not_reach_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let results = under(builder_filters().unwrap(), dir.path());
        for allowed in [
            "chmod 4755",
            "chmod 2755",
            "fchmod 6755",
            "create 4755",
            "mkdir 2775",
            "openat2",
            "spawn",
        ] {
            expect(&results, allowed, None);
        }
        expect(&results, "setns", Some(Errno::PERM));
        expect(&results, "mount", Some(Errno::PERM));
    }
}
