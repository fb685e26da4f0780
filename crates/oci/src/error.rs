use std::path::PathBuf;

use runseal_spec::IoError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Seal(#[from] runseal_seal::Error),
    #[error(transparent)]
    Spec(#[from] runseal_spec::Error),
    #[error(transparent)]
    Io(#[from] IoError),
    /// A transport name runseal does not know, or one written wrongly.
    #[error("`{text}`: {reason}")]
    Location { text: String, reason: String },
    /// What an image holds breaks a rule: its author is not trusted, so this is a refusal.
    #[error("{image}: {reason}")]
    Refused { image: String, reason: String },
    /// A blob whose bytes do not hash to the digest that names it.
    #[error(
        "{image}: blob {expected} has digest {actual}; refusing a tampered or truncated image"
    )]
    Digest {
        image: String,
        expected: String,
        actual: String,
    },
    /// The sealed tree no longer matches its manifest: exporting it would ship a change
    /// `verify` reports.
    #[error("{file}: changed since it was sealed ({what}); run `runseal verify`, then seal again")]
    Changed { file: PathBuf, what: String },
    #[error("{target}: {name} exists; remove it first or import with --name")]
    Exists { target: PathBuf, name: String },
    #[error("registry {reference}: {message}")]
    Registry { reference: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io(IoError::new(path, source))
    }

    pub fn refused(image: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::Refused {
            image: image.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether the input (the image, the runtime, the location given) is at fault (exit 1),
    /// not the machine or the network (exit 2).
    pub fn is_input_problem(&self) -> bool {
        match self {
            Error::Seal(e) => e.is_runtime_problem(),
            Error::Spec(e) => matches!(e, runseal_spec::Error::Yaml { .. }),
            Error::Location { .. }
            | Error::Refused { .. }
            | Error::Digest { .. }
            | Error::Changed { .. }
            | Error::Exists { .. } => true,
            Error::Io(_) | Error::Registry { .. } => false,
        }
    }
}
