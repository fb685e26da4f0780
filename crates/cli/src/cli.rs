//! Command-line interface definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub const DEFAULT_ROOT: &str = "/opt/runseal/runtimes";

/// Seal language runtimes so that jobs using them see nothing of the host.
///
/// A runtime is a directory holding runtime.yml (as Joblet's runtime setup scripts write it).
/// `seal` copies everything the runtime needs into its `isolated/` dir and rewrites
/// runtime.yml to mount only that; `validate` refuses any runtime.yml whose mounts could
/// reach outside the runtime dir.
///
/// RUNTIME is a runtime dir path (anything with a `/`) or a spec resolved under --root:
/// `name`, `name@version`, `lang:version` (java:17 matches version 17 and 17.x) or
/// `lang-version`. The highest matching version wins.
///
/// Exit codes: 0 success, 1 the runtime is invalid or cannot be sealed, 2 usage or I/O error.
#[derive(Debug, Parser)]
#[command(name = "runseal", version, max_term_width = 100)]
pub struct Args {
    /// Directory holding the runtimes.
    #[arg(long, global = true, env = "RUNSEAL_ROOT", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,

    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a runtime.yml against the sealed-runtime rules; print each violation.
    ///
    /// Every mount source must be a normalized `isolated/...` path that resolves inside the
    /// runtime dir (checked with openat2 RESOLVE_BENEATH, so a planted symlink is caught);
    /// every target absolute, normalized, unique and not /, /proc, /dev or /sys; every
    /// mount read-only; environment names valid and PATH-like values absolute.
    /// Each violation is printed as `<file>: <field>: <reason>`.
    Validate {
        /// Runtime dir or spec.
        runtime: String,
        /// Accept `readonly: false` mounts.
        #[arg(long)]
        allow_writable: bool,
    },
    /// Copy a runtime's whole closure into isolated/ and rewrite runtime.yml to use only it.
    ///
    /// The closure: the mount trees (symlinks, modes and mtimes kept), every symlink chain's
    /// targets, ELF interpreters and libraries read from ELF headers, script interpreters,
    /// and the profile's files (for Java: the CA trust store and /etc config). The first
    /// seal keeps runtime.yml.original. Sealing again copies only what changed; sealing an
    /// unchanged runtime writes nothing. setuid/setgid bits are stripped; devices, fifos
    /// and sockets are refused. A crash at any point leaves the old or the new runtime.
    Seal {
        /// Runtime dir or spec.
        runtime: String,
        /// Print what would be copied and why; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Use this profile (java, generic) instead of the one runtime.yml's language picks.
        #[arg(long)]
        profile: Option<String>,
        /// Accept `readonly: false` mounts in the input.
        #[arg(long)]
        allow_writable: bool,
        /// Fail instead of waiting when another seal of this runtime is running.
        #[arg(long)]
        no_wait: bool,
    },
    /// Prove a sealed runtime complete, unchanged and contained (static checks).
    ///
    /// Runs `validate`; checks that every symlink, ELF interpreter, needed library and script
    /// interpreter in isolated/ resolves inside it as the loader would resolve it in the job
    /// (no ld.so.cache, nothing of the host); and compares every file with the manifest
    /// written at seal time (BLAKE3), reporting each changed, added or removed path.
    Verify {
        /// Runtime dir or spec.
        runtime: String,
    },
}
