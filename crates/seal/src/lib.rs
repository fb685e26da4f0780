//! Sealing a runtime dir: its closure copied into `isolated/`, a manifest of the copy and a
//! runtime.yml whose mounts all point inside it, with no state in between visible after a crash.
#![forbid(unsafe_code)]

mod adopt;
mod beneath;
mod copy;
pub mod dirfd;
mod error;
mod integrity;
pub mod inventory;
mod layout;
mod manifest;
mod progress;
mod sbom;
mod seal;
pub mod store;
mod trust;
pub mod usage;
mod validate;

pub use copy::stamp;
pub use error::{Error, Result};
pub use integrity::{check_integrity, Difference};
pub use layout::{Layout, MANIFEST_NAME};
pub use manifest::{sealed_mode, CopyStamp, Manifest, ManifestEntry, ManifestKind, FORMAT};
pub use progress::{NoProgress, Progress};
pub use sbom::{read_sbom, sbom_path, SBOM_NAME};
pub use seal::{
    detection_may_learn, learn_commands, profiles_for, remove_runtime, seal, seal_from, LearnPlan,
    Outcome, SealOptions, SealReport,
};
pub use validate::{runnable_config, validate_runtime, ValidationReport};
