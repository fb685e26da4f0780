use std::path::PathBuf;

/// Errors of loading runtime.yml files and resolving specs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] IoError),
    /// The YAML could not be parsed; `message` carries line and column.
    #[error("{path}: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: cannot serialize runtime.yml: {message}")]
    Serialize { path: PathBuf, message: String },
    #[error("no runtime matches `{spec}` under {root}; available: {available}")]
    UnknownSpec {
        spec: String,
        root: PathBuf,
        available: String,
    },
    #[error("`{spec}` is ambiguous under {root}: {candidates}")]
    AmbiguousSpec {
        spec: String,
        root: PathBuf,
        candidates: String,
    },
    #[error("{path}: not a runtime dir (no runtime.yml)")]
    NotARuntime { path: PathBuf },
}

pub type Result<T> = std::result::Result<T, Error>;

/// An I/O error and the path it happened on; every crate's errors carry this one.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct IoError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError {
            path: path.into(),
            source,
        }
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io(IoError::new(path, source))
    }
}
