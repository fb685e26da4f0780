use std::path::PathBuf;

use runseal_spec::IoError;

/// Errors of computing or checking a closure; each names the path it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{path}: does not exist (needed as {needed_as})")]
    Missing { path: PathBuf, needed_as: String },
    #[error("{path}: symlink loop (more than {limit} links followed)")]
    SymlinkLoop { path: PathBuf, limit: usize },
    #[error("{path}: a component is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: is a {kind}; a sealed runtime holds only files, directories and symlinks")]
    SpecialFile { path: PathBuf, kind: &'static str },
    #[error("{job_path}: would hold both {first} and {second}")]
    Conflict {
        job_path: PathBuf,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{path}: invalid ELF file: {message}")]
    Elf { path: PathBuf, message: String },
    #[error("{path}: invalid ld.so.cache: {message}")]
    LdCache { path: PathBuf, message: String },
    #[error(
        "{path}: {problem}; a sealed copy would be readable by every job (reached as {trace}); \
         `--allow-path {path}` seals it anyway"
    )]
    Refused {
        path: PathBuf,
        problem: String,
        trace: String,
    },
    #[error(
        "{path}: {problem}, so its owner could swap what the seal reads through it for a \
         symlink to anything root may read (reached as {trace}); `--allow-untrusted-dir` \
         seals it anyway"
    )]
    Untrusted {
        path: PathBuf,
        problem: String,
        trace: String,
    },
    #[error("profile {name}: {message}")]
    Profile { name: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io(IoError::new(path, source))
    }
}
