//! Runs a job whose whole filesystem is a sealed runtime.
//!
//! The job gets new mount, PID, IPC, UTS, cgroup and (by default) network namespaces; a tmpfs
//! root holding only the runtime's sealed mounts (read-only, nosuid, nodev), a fresh `/proc`,
//! a minimal `/dev`, a private `/tmp` and the work dir, all built through fds; `pivot_root`
//! with the old root detached; an unprivileged user, no capabilities, `no_new_privs`, its
//! own session and a seccomp filter; memory, CPU, pid and `/tmp` limits through cgroup v2 or
//! v1. Failing to apply any of it is an error.
//!
//! Every system call goes through [`sys`], the crate's only `unsafe` code.
#![deny(unsafe_code)]

mod build;
mod cgroup;
pub mod config;
mod error;
mod identity;
mod isolation;
mod job;
mod launch;
mod learn;
#[cfg(test)]
mod recorder;
mod report;
mod requested;
mod rootfs;
mod seccomp;
#[allow(unsafe_code)]
mod sys;

pub use build::{build_in_overlay, BuildSpec};
pub use cgroup::{CgroupMode, Cgroups};
pub use config::Config;
pub use error::{Error, Result};
pub use isolation::{check_mount_table, parse_mountinfo, MountLine};
pub use job::{
    format_size, parse_env, parse_size, Job, JobRequest, Limits, Network, Outcome, User, Volume,
    DEFAULT_USER,
};
pub use launch::{mount_table, run, run_in, SETUP_FAILED, STOP_GRACE};
pub use learn::{in_child_process, learn, LearnRequest, Learned};
pub use rootfs::{plan_root, Source, Step};
pub use seccomp::builder_filters;
pub use sys::{die_with_parent, restore_default_sigpipe, NetworkMaker};
