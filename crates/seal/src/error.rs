use std::path::PathBuf;

use runseal_spec::IoError;

use runseal_spec::Violation;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] runseal_spec::Error),
    #[error(transparent)]
    Closure(#[from] runseal_closure::Error),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{file}: {}", violations.iter().map(|v| if v.field.is_empty() { v.reason.clone() } else { format!("{}: {}", v.field, v.reason) }).collect::<Vec<_>>().join("; "))]
    Invalid {
        file: PathBuf,
        violations: Vec<Violation>,
    },
    #[error("{file}: {message}")]
    Unsealable { file: PathBuf, message: String },
    #[error("{path}: runtime is being sealed by another process (or cleaned by `runseal gc`)")]
    Busy { path: PathBuf },
    #[error("{path}: jobs are running on it; remove it once they have ended")]
    InUse { path: PathBuf },
    #[error(
        "{dir}: refusing to seal: {reason}, so someone other than root could swap its files \
         while root seals it; make it root's and not group- or world-writable, or pass \
         --allow-untrusted-dir"
    )]
    UntrustedDir { dir: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io(IoError::new(path, source))
    }

    /// Whether the runtime's own content is at fault (exit 1), not the machine (exit 2).
    pub fn is_runtime_problem(&self) -> bool {
        match self {
            Error::Spec(e) => matches!(e, runseal_spec::Error::Yaml { .. }),
            Error::Closure(e) => !matches!(e, runseal_closure::Error::Io(_)),
            Error::Invalid { .. } | Error::Unsealable { .. } | Error::UntrustedDir { .. } => true,
            Error::Io(_) | Error::Busy { .. } | Error::InUse { .. } => false,
        }
    }
}
