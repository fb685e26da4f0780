//! What a runtime needs at run time, computed without executing any of it.
//!
//! [`plan`] walks a runtime's mounts on a [`Root`] (the host, or a fixture tree in tests),
//! follows symlink chains, reads ELF headers and shebang lines, applies a [`Profile`] and
//! returns a [`Plan`]: every path the sealed tree must hold and why. [`check_tree`] runs
//! the same lookups inside a sealed tree to prove it complete.
#![forbid(unsafe_code)]

mod check;
pub mod elf;
mod error;
pub mod ldcache;
mod loader;
mod plan;
mod profile;
mod root;
mod scan;
#[cfg(test)]
mod testing;

pub use check::{check_tree, Problem};
pub use error::{Error, Result};
pub use loader::{LibrarySearch, Via};
pub use plan::{
    command_line, plan, top_level_sizes, Entry, EntryKind, Inclusion, LearnedSet, Plan, PlanInput,
    PlanMount, Reason, TopLevel, REFUSED_PREFIXES,
};
pub use profile::{Anchor, Profile, ProfileLinks, ProfilePath, ProfileSet, SmokeTest};
pub use root::{untrusted_dir, Link, Resolution, Root, MAX_SYMLINKS};
pub use scan::{scan, FileKind};
