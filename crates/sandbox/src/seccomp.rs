//! Seccomp filters for jobs and for the builder.
//!
//! A job gets an allowlist modelled on Docker's default profile: a system call missing from
//! it fails with ENOSYS, so programs treat a call the list does not know (a newer kernel's,
//! or `clone3` and `openat2`, whose arguments sit in structs a filter cannot read) as absent
//! and fall back to an older call that is checked. A second filter refuses with EPERM, as
//! the kernel would without the capability, the calls a job must never make (mounts,
//! namespaces, tracing, kernel code and keyrings, io_uring, terminal injection) and the
//! calls that would give a file setuid or setgid bits, so a job cannot leave a setuid
//! binary in its work dir for the host to run.
//!
//! The builder runs package managers as root, so it keeps the kernel's default of allowing
//! everything but the privileged classes; chown and setuid modes stay allowed there, since
//! dpkg installs setuid binaries into the build's overlay.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

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
const SET_ID_BITS: [u64; 2] = [libc::S_ISUID as u64, libc::S_ISGID as u64];

/// Open flags that create a file with the call's mode.
const CREATING: [libc::c_int; 2] = [libc::O_CREAT, libc::O_TMPFILE];

/// Virtual machine sockets reach the hypervisor, whatever the network namespace.
const AF_VSOCK: u64 = 40;

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

fn arch() -> Result<TargetArch> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        "riscv64" => Ok(TargetArch::riscv64),
        other => Err(Error::Architecture(other.to_string())),
    }
}

fn seccomp_error(e: impl Into<seccompiler::Error>) -> Error {
    Error::Seccomp(e.into())
}

/// `(arg & mask) == mask`: every bit of `mask` is set in argument `arg`.
fn has_bits(arg: u8, mask: u64) -> Result<SeccompCondition> {
    SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(mask),
        mask,
    )
    .map_err(seccomp_error)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule> {
    SeccompRule::new(conditions).map_err(seccomp_error)
}

fn unconditional(calls: &[i64]) -> Rules {
    calls.iter().map(|&call| (call, Vec::new())).collect()
}

fn compile(rules: Rules, on_match: SeccompAction, otherwise: SeccompAction) -> Result<BpfProgram> {
    SeccompFilter::new(rules, otherwise, on_match, arch()?)
        .map_err(seccomp_error)?
        .try_into()
        .map_err(seccomp_error)
}

/// The allowlist as a program of its own: the calls become ranges of numbers, searched as a
/// binary tree, so a call costs about a dozen instructions and the program a few hundred.
/// seccompiler compares one number after another (over 1,400 instructions for this list),
/// which the kernel translates and JITs at every job start and then walks on every call.
/// Anything outside the ranges fails with ENOSYS, numbers of another ABI (x32) included.
fn allowlist(calls: &[i64]) -> Result<BpfProgram> {
    // The numbers are the kernel's and never negative; one that were would stay refused.
    let mut numbers: Vec<u32> = calls
        .iter()
        .filter_map(|&n| u32::try_from(n).ok())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for n in numbers {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == n => *hi = n,
            _ => ranges.push((n, n)),
        }
    }
    let audit_arch = match arch()? {
        TargetArch::x86_64 => 62 | 0xC000_0000,
        TargetArch::aarch64 => 183 | 0xC000_0000,
        TargetArch::riscv64 => 243 | 0xC000_0000,
    };
    // seccomp_data: nr at offset 0, arch at 4.
    let mut program = vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jump(libc::BPF_JEQ, audit_arch, 1, 0),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
    ];
    program.extend(range_tree(&ranges));
    Ok(program)
}

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const ABSENT: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

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

/// Code deciding, for the number in the accumulator, whether it falls in one of `ranges`
/// (sorted, disjoint): allow if so, ENOSYS if not.
fn range_tree(ranges: &[(u32, u32)]) -> Vec<sock_filter> {
    match ranges {
        [] => vec![stmt(libc::BPF_RET | libc::BPF_K, ABSENT)],
        [(lo, hi)] => vec![
            jump(libc::BPF_JGE, *lo, 0, 2),
            jump(libc::BPF_JGT, *hi, 1, 0),
            stmt(libc::BPF_RET | libc::BPF_K, ALLOW),
            stmt(libc::BPF_RET | libc::BPF_K, ABSENT),
        ],
        _ => {
            let (below, from) = ranges.split_at(ranges.len() / 2);
            let below = range_tree(below);
            let mut code = match u8::try_from(below.len()) {
                // nr >= the upper half's first number: jump over the lower half.
                Ok(over) => vec![jump(libc::BPF_JGE, from[0].0, over, 0)],
                // Too far for a conditional jump: through an unconditional one.
                Err(_) => vec![
                    jump(libc::BPF_JGE, from[0].0, 0, 1),
                    stmt(libc::BPF_JMP | libc::BPF_JA, below.len() as u32),
                ],
            };
            code.extend(below);
            code.extend(range_tree(from));
            code
        }
    }
}

/// `clone` with a namespace flag and `ioctl(TIOCSTI)`: refused to jobs and builds.
fn privileged_arguments(rules: &mut Rules) -> Result<()> {
    let clone = CLONE_NAMESPACES
        .iter()
        .map(|&flag| rule(vec![has_bits(0, flag as u64)?]))
        .collect::<Result<Vec<_>>>()?;
    rules.insert(libc::SYS_clone, clone);
    let tiocsti = SeccompCondition::new(
        1,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(0xffff_ffff),
        libc::TIOCSTI,
    )
    .map_err(seccomp_error)?;
    rules.insert(libc::SYS_ioctl, vec![rule(vec![tiocsti])?]);
    Ok(())
}

/// The calls that would set S_ISUID or S_ISGID: a mode change, or a creation, whose mode
/// argument (at `mode_arg`) holds either bit; creations by `open` only with `O_CREAT` or
/// `O_TMPFILE` in the flags (at `flags_arg`).
fn set_id_modes(rules: &mut Rules) -> Result<()> {
    let mut mode_at = |call: i64, mode_arg: u8| -> Result<()> {
        let any_bit = SET_ID_BITS
            .iter()
            .map(|&bit| rule(vec![has_bits(mode_arg, bit)?]))
            .collect::<Result<Vec<_>>>()?;
        rules.insert(call, any_bit);
        Ok(())
    };
    mode_at(libc::SYS_fchmod, 1)?;
    mode_at(libc::SYS_fchmodat, 2)?;
    mode_at(SYS_FCHMODAT2, 2)?;
    mode_at(libc::SYS_mkdirat, 2)?;
    mode_at(libc::SYS_mknodat, 2)?;
    #[cfg(target_arch = "x86_64")]
    {
        mode_at(libc::SYS_chmod, 1)?;
        mode_at(libc::SYS_creat, 1)?;
        mode_at(libc::SYS_mkdir, 1)?;
        mode_at(libc::SYS_mknod, 1)?;
    }
    let mut creating_at = |call: i64, flags_arg: u8| -> Result<()> {
        let mut any = Vec::new();
        for flag in CREATING {
            for bit in SET_ID_BITS {
                any.push(rule(vec![
                    has_bits(flags_arg, flag as u64)?,
                    has_bits(flags_arg + 1, bit)?,
                ])?);
            }
        }
        rules.insert(call, any);
        Ok(())
    };
    creating_at(libc::SYS_openat, 2)?;
    #[cfg(target_arch = "x86_64")]
    creating_at(libc::SYS_open, 1)?;
    Ok(())
}

/// The job's filters: the allowlist (anything else ENOSYS), then the refusals (EPERM),
/// loaded last so that their EPERM is the answer for a call both filters stop.
pub fn job_filters() -> Result<Vec<BpfProgram>> {
    let mut refused = unconditional(&[PRIVILEGED, JOB_DENIED].concat());
    privileged_arguments(&mut refused)?;
    set_id_modes(&mut refused)?;
    let vsock = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, AF_VSOCK)
        .map_err(seccomp_error)?;
    refused.insert(libc::SYS_socket, vec![rule(vec![vsock])?]);
    Ok(vec![
        allowlist(&[ALLOWED, ALLOWED_ARCH].concat())?,
        compile(
            refused,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
        )?,
    ])
}

/// The builder's filters: the privileged classes refused (EPERM), everything else allowed;
/// `clone3` fails with ENOSYS so the C library falls back to `clone`, whose flags are seen.
pub fn builder_filters() -> Result<Vec<BpfProgram>> {
    let mut refused = unconditional(PRIVILEGED);
    privileged_arguments(&mut refused)?;
    Ok(vec![
        compile(
            refused,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
        )?,
        compile(
            unconditional(&[libc::SYS_clone3]),
            SeccompAction::Errno(libc::ENOSYS as u32),
            SeccompAction::Allow,
        )?,
    ])
}

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

    /// Runs the subset of classic BPF the allowlist uses on a call `nr` of arch `arch`.
    fn decide(program: &[sock_filter], nr: u32, arch: u32) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &program[pc];
            let code = u32::from(i.code);
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    acc = if i.k == 0 { nr } else { arch }
                }
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c => {
                    let taken = match c & !(libc::BPF_JMP | libc::BPF_K) {
                        op if op == libc::BPF_JEQ => acc == i.k,
                        op if op == libc::BPF_JGE => acc >= i.k,
                        op if op == libc::BPF_JGT => acc > i.k,
                        op => panic!("unexpected jump {op:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
            }
        }
    }

    #[test]
    fn the_allowlist_tree_allows_exactly_its_calls_and_stays_small() {
        let arch = match super::arch().unwrap() {
            TargetArch::x86_64 => 62 | 0xC000_0000,
            TargetArch::aarch64 => 183 | 0xC000_0000,
            TargetArch::riscv64 => 243 | 0xC000_0000,
        };
        // The real list, and one of 700 lone numbers, whose tree needs long jumps.
        let sparse: Vec<i64> = (0..1400).step_by(2).collect();
        for calls in [[ALLOWED, ALLOWED_ARCH].concat(), sparse] {
            let program = allowlist(&calls).unwrap();
            for nr in (0..1500).chain([0x4000_0000, 0x4000_0001, u32::MAX]) {
                let want = if calls.contains(&i64::from(nr)) {
                    ALLOW
                } else {
                    ABSENT
                };
                assert_eq!(decide(&program, nr, arch), want, "call {nr}");
            }
            assert_eq!(
                decide(&program, 0, arch ^ 1),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
        assert!(allowlist(&[ALLOWED, ALLOWED_ARCH].concat()).unwrap().len() < 400);
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
