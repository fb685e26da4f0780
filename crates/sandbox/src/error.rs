use std::path::PathBuf;

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
    /// A runtime.yml (a built one, read back) that runseal cannot use.
    #[error(transparent)]
    Spec(#[from] runseal_spec::Error),
    /// A config file holds something runseal cannot use; `at` is the key or the line.
    #[error("{}: {at}: {reason}", file.display())]
    Config {
        file: PathBuf,
        at: String,
        reason: String,
    },
    /// Creating or setting up a job's cgroup failed; `action` says what was done to `path`.
    #[error("cgroup: {action} {}: {source}", path.display())]
    Cgroup {
        action: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No cgroup hierarchy of the host offers a controller a limit needs.
    #[error(
        "cgroup: no `{controller}` controller: not enabled in the cgroup2 hierarchy \
         ({unified}) and no cgroup v1 hierarchy mounts it"
    )]
    NoController { controller: String, unified: String },
    /// A place in a root being built, or a mount source, that the sandbox will not use.
    #[error("{}: {problem}", path.display())]
    Place {
        path: PathBuf,
        problem: PlaceProblem,
    },
    /// The work dir the job was given cannot be its `/work`.
    #[error("work dir {}: {problem}", path.display())]
    Workdir {
        path: PathBuf,
        problem: WorkdirProblem,
    },
    /// A volume the job was given cannot be bound.
    #[error("volume {volume}: {problem}")]
    Volume {
        volume: String,
        problem: VolumeProblem,
    },
    /// A runtime's tree could not be held for the job: it kept being replaced, or someone
    /// else kept it locked.
    #[error("{}: {problem}", tree.display())]
    Tree { tree: PathBuf, problem: TreeProblem },
    /// Building or loading a seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(#[from] seccompiler::Error),
    /// No seccomp filter is defined for the machine's architecture.
    #[error("no seccomp filter for architecture {0}")]
    Architecture(String),
    /// The sandbox can only be made from a single-threaded process (`clone` copies one
    /// thread; namespaces and mounts would be half-applied).
    #[error("cannot create the sandbox from a process with {0} threads")]
    Threads(usize),
    #[error("no command to run")]
    NoCommand,
    /// A learn command could not be started, or its events could not be read.
    #[error("learn `{command}`: {message}")]
    Learn { command: String, message: String },
    /// What a setup script did, or the runtime it wrote, that a build cannot accept.
    #[error("{0}")]
    Build(#[from] BuildProblem),
    /// A plan step and what was prepared for it disagree: a bug in runseal, not in its input.
    #[error("{}: {what}", target.display())]
    Unprepared { target: PathBuf, what: &'static str },
    /// The job's setup failed inside the sandbox, before the command ran; `exit_code` is
    /// 125 for the sandbox, 126 or 127 when the command cannot be executed or found.
    #[error("{message}")]
    Setup { message: String, exit_code: i32 },
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceProblem {
    #[error("not a normalized path")]
    NotNormalized,
    #[error("has no parent directory")]
    NoParent,
    #[error("is a symlink: the sandbox creates and mounts nothing through one")]
    Symlink,
    #[error("is a directory where a file is mounted")]
    DirectoryForFile,
    #[error(
        "a mount source that is a symlink; only a top-level dir of {}/ may be one (it \
         becomes the same symlink in the job)",
        runseal_spec::ISOLATED_DIR
    )]
    SymlinkSource,
    #[error("a mount source that is a {0}, not a directory or file")]
    SpecialSource(String),
    #[error(
        "a mount source outside {}/: only sealed runtimes run",
        runseal_spec::ISOLATED_DIR
    )]
    Unsealed,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkdirProblem {
    #[error("its path crosses a symlink; name the real directory")]
    Symlink,
    #[error("not a directory")]
    NotDirectory,
    #[error("is the host's root directory")]
    HostRoot,
    #[error(
        "the job's user {uid}:{gid} cannot enter it (owner {owner}:{group}, mode {mode:o}); \
         chown it to that user or pick one with --user"
    )]
    Closed {
        uid: u32,
        gid: u32,
        owner: u32,
        group: u32,
        mode: u32,
    },
    #[error("{0}")]
    Open(#[source] std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeProblem {
    #[error("expected SRC:DST[:ro|rw] with absolute paths")]
    Syntax,
    #[error("the target {0}")]
    Target(String),
    #[error("the target is taken by another volume")]
    Duplicate,
    #[error("the target lies inside the work dir or another volume, on the host")]
    Nested,
    #[error("its source path crosses a symlink; name the real file or directory")]
    Symlink,
    #[error("its source is the host's root directory")]
    HostRoot,
    #[error("its source is not a directory or regular file")]
    Special,
    #[error("{0}")]
    Open(#[source] std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum TreeProblem {
    #[error("was replaced {0} times while the job started")]
    Replaced(usize),
    #[error("stayed locked by another process for {}s", .0.as_secs())]
    Locked(std::time::Duration),
    #[error("was removed while the job waited for it")]
    Removed,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildProblem {
    #[error("{} exited with {code}", script.display())]
    ScriptFailed { script: PathBuf, code: i32 },
    #[error("{} was killed", script.display())]
    ScriptKilled { script: PathBuf },
    #[error("{}: {source}", script.display())]
    Script {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: its #! line names the interpreter `{}`, which is not a file on this host (an \
         absolute path is needed)", script.display(), interpreter.display()
    )]
    NoInterpreter {
        script: PathBuf,
        interpreter: PathBuf,
    },
    #[error(
        "{}: a build shows the runtimes root at Joblet's /opt/joblet/runtimes too, so \
         neither may lie inside the other", root.display()
    )]
    NestedRoot { root: PathBuf },
    #[error(
        "the setup script must make one runtime dir ROOT/NAME under {} (or \
         /opt/joblet/runtimes/NAME, the same dir) and print it last or make no other dir \
         there, or be given --name NAME (it printed `{printed}`)", root.display()
    )]
    NoRuntimeDir { root: PathBuf, printed: String },
    #[error(
        "{}: the setup script wrote no runtime.yml there that is not reached through a \
         symlink ({source})", path.display()
    )]
    NoRuntimeYml {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}/runtime.yml names the runtime `{declared}`, but the build makes `{name}`", dir.display())]
    OtherName {
        dir: PathBuf,
        declared: String,
        name: String,
    },
    #[error(
        "{}: already exists; a build makes a new runtime (`runseal remove {name}` first)",
        dir.display()
    )]
    Exists { dir: PathBuf, name: String },
    #[error("{}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The seal of the built runtime failed (the sealer's own message).
    #[error("{0}")]
    Seal(String),
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

    pub(crate) fn place(path: impl Into<PathBuf>, problem: PlaceProblem) -> Self {
        Error::Place {
            path: path.into(),
            problem,
        }
    }

    pub(crate) fn unprepared(target: impl Into<PathBuf>, what: &'static str) -> Self {
        Error::Unprepared {
            target: target.into(),
            what,
        }
    }
}
