//! The `runtime.yml` model, its validation rules and runtime spec resolution.
//!
//! Nothing here performs syscalls beyond reading files and directories; [`beneath`] is the
//! one lookup below a directory fd that every crate uses, and the checks built on it (a
//! source resolving beneath the runtime dir) live in `runseal-seal`.
#![forbid(unsafe_code)]

pub mod beneath;
mod config;
mod error;
pub mod paths;
mod resolve;
mod rules;

pub use config::{
    read_opened_runtime_yml, shell_default, BuildInfo, Mount, Requirements, RuntimeConfig,
    ISOLATED_DIR, RUNTIME_YML,
};
pub use error::{Error, IoError, Result};
pub use resolve::{
    canonical_language, compare_versions, list_runtimes, resolve, RuntimeDir, RuntimeSpec,
};
pub use rules::{reserved_target, validate, MountKind, RuleOptions, Violation, RESERVED_TARGETS};
