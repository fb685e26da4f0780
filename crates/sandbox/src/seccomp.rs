//! The job's seccomp filter: everything is allowed except calls that change mounts or
//! namespaces, trace or inject into other processes, load kernel code, reach kernel keyrings,
//! or push input into a terminal (TIOCSTI). Denied calls fail with EPERM; `clone3` fails with
//! ENOSYS so the C library falls back to `clone`, whose namespace flags are checked.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::{Error, Result};

const DENIED: &[i64] = &[
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
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_adjtimex,
    libc::SYS_personality,
];

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

fn arch() -> Result<TargetArch> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        "riscv64" => Ok(TargetArch::riscv64),
        other => Err(Error::Invalid(format!(
            "no seccomp filter for architecture {other}"
        ))),
    }
}

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| Error::Invalid(format!("seccomp: {e}")))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule> {
    SeccompRule::new(conditions).map_err(|e| Error::Invalid(format!("seccomp: {e}")))
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(|e| Error::Invalid(format!("seccomp: {e}")))?;
    filter
        .try_into()
        .map_err(|e| Error::Invalid(format!("seccomp: {e}")))
}

/// The compiled filters: the deny list (EPERM), then `clone3` (ENOSYS).
pub fn job_filters() -> Result<Vec<BpfProgram>> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&call| (call, Vec::new())).collect();
    rules.insert(
        libc::SYS_ioctl,
        vec![rule(vec![condition(
            1,
            SeccompCmpOp::MaskedEq(0xffff_ffff),
            libc::TIOCSTI,
        )?])?],
    );
    let clone_rules = CLONE_NAMESPACES
        .iter()
        .map(|&flag| {
            rule(vec![condition(
                0,
                SeccompCmpOp::MaskedEq(flag as u64),
                flag as u64,
            )?])
        })
        .collect::<Result<Vec<_>>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let clone3 = [(libc::SYS_clone3, Vec::new())].into();
    Ok(vec![
        compile(rules, libc::EPERM, arch)?,
        compile(clone3, libc::ENOSYS, arch)?,
    ])
}

/// Loads the filters into the calling thread (needs no_new_privs or CAP_SYS_ADMIN).
pub fn load(filters: &[BpfProgram]) -> Result<()> {
    for filter in filters {
        seccompiler::apply_filter(filter)
            .map_err(|e| Error::Invalid(format!("seccomp(SECCOMP_SET_MODE_FILTER): {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filters_compile_for_this_machine() {
        let filters = super::job_filters().unwrap();
        assert_eq!(filters.len(), 2);
        assert!(filters[0].len() > super::DENIED.len());
    }
}
