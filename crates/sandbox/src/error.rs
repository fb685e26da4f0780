use runseal_spec::IoError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed; `call` names it with its arguments.
    #[error("{call}: {source}")]
    Sys {
        call: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] IoError),
    /// A config file holds something runseal cannot use; `at` is the key or the line.
    #[error("{}: {at}: {reason}", file.display())]
    Config {
        file: std::path::PathBuf,
        at: String,
        reason: String,
    },
    /// Creating or setting up a job's cgroup failed; `action` says what was done to `path`.
    #[error("cgroup: {action} {}: {source}", path.display())]
    Cgroup {
        action: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No cgroup hierarchy of the host offers a controller a limit needs.
    #[error(
        "cgroup: no `{controller}` controller: not enabled in the cgroup2 hierarchy \
         ({unified}) and no cgroup v1 hierarchy mounts it"
    )]
    NoController { controller: String, unified: String },
    /// The job's setup failed inside the sandbox, before the command ran; `exit_code` is
    /// 125 for the sandbox, 126 or 127 when the command cannot be executed or found.
    #[error("{message}")]
    Setup { message: String, exit_code: i32 },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The exit code `runseal run` gives for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Setup { exit_code, .. } => *exit_code,
            _ => crate::launch::SETUP_FAILED,
        }
    }

    pub fn sys(call: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            call: call.into(),
            source: source.into(),
        }
    }
}
