//! What a job is: plain data, built by the caller from a runtime.yml and options.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runseal_spec::{Mount, RuntimeConfig, ISOLATED_DIR};
use rustix::fs::FileType;
use serde::{Deserialize, Serialize};

use crate::error::{Error, PlaceProblem, Result, TreeProblem, VolumeProblem, WorkdirProblem};
use crate::identity::{self, EtcFiles};
use crate::sys;

/// `PATH` for a runtime whose environment sets none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The user a job runs as unless asked otherwise: nobody/nogroup, which own nothing on a
/// Debian host, so nothing a job leaves behind (in its work dir) is anyone's but nobody's.
pub const DEFAULT_USER: User = User {
    uid: 65534,
    gid: 65534,
};

/// How many times opening a runtime's tree is retried when a re-seal swaps it meanwhile.
const GENERATION_ATTEMPTS: usize = 5;

/// A job, ready to start: every host object it uses was opened when it was made, so what
/// was checked is what gets mounted, whatever is renamed or replaced afterwards.
#[derive(Debug, Clone)]
pub struct Job {
    /// The runtime dir; mount sources are relative to it.
    pub runtime_dir: PathBuf,
    /// The runtime's sealed mounts (validated by the caller).
    pub mounts: Vec<Mount>,
    /// `mounts[i]`'s source, opened beneath the runtime's tree without following a last
    /// symlink.
    sources: Vec<Arc<OwnedFd>>,
    /// The sealed tree (`isolated/`) the sources are in, with a shared lock held for the
    /// job's whole life (this fd, never read, is the lock), so that a re-seal never deletes
    /// a tree a job is using.
    _generation: Arc<OwnedFd>,
    /// The job's whole environment, in order.
    pub environment: Vec<(String, String)>,
    /// Program and arguments; the program is looked up on the job's `PATH`.
    pub command: Vec<String>,
    /// A host directory bound read-write at `/work`, the job's working directory.
    pub workdir: Option<PathBuf>,
    workdir_fd: Option<Arc<OwnedFd>>,
    pub limits: Limits,
    pub network: Network,
    pub user: User,
    /// The files of the sandbox's own in the job's `/etc` ([`crate::identity`]).
    pub etc_files: EtcFiles,
    pub volumes: Vec<Volume>,
    /// `volumes[i]`'s source, opened when the job was made.
    volume_fds: Vec<Arc<OwnedFd>>,
}

/// A uid and gid of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// Parses `UID` or `UID:GID` (numbers; the gid defaults to the uid).
    pub fn parse(text: &str) -> std::result::Result<User, String> {
        let number = |part: &str| {
            part.parse::<u32>()
                .map_err(|_| format!("`{text}`: expected UID or UID:GID (numbers)"))
        };
        let (uid, gid) = match text.split_once(':') {
            Some((uid, gid)) => (number(uid)?, number(gid)?),
            None => (number(text)?, number(text)?),
        };
        Ok(User { uid, gid })
    }
}

/// A host file or directory the caller binds into the job (`--volume SRC:DST[:ro|rw]`),
/// nosuid and nodev, writable unless `readonly`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub source: PathBuf,
    pub target: PathBuf,
    #[serde(default)]
    pub readonly: bool,
}

/// Where no volume may go, nor under: what the sandbox makes of /proc and /dev, and /sys.
const VOLUME_FORBIDDEN: [&str; 3] = ["/proc", "/dev", "/sys"];

impl Volume {
    /// Parses `SRC:DST`, `SRC:DST:ro` or `SRC:DST:rw`, docker's `-v` syntax.
    pub fn parse(text: &str) -> std::result::Result<Volume, String> {
        let refused = || VolumeProblem::Syntax.to_string();
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, readonly) = match parts[..] {
            [source, target] => (source, target, false),
            [source, target, "ro"] => (source, target, true),
            [source, target, "rw"] => (source, target, false),
            _ => return Err(format!("`{text}`: {}", refused())),
        };
        if !(source.starts_with('/') && target.starts_with('/')) {
            return Err(format!("`{text}`: {}", refused()));
        }
        Ok(Volume {
            source: source.into(),
            target: target.into(),
            readonly,
        })
    }

    fn refused(&self, problem: VolumeProblem) -> Error {
        let mode = if self.readonly { "ro" } else { "rw" };
        Error::Volume {
            volume: format!("{}:{}:{mode}", self.source.display(), self.target.display()),
            problem,
        }
    }

    /// Why the target cannot take a volume, if it cannot.
    fn target_problem(&self) -> Option<String> {
        let Some(target) = self.target.to_str().filter(|t| t.starts_with('/')) else {
            return Some("must be an absolute path".into());
        };
        if let Some(problem) = runseal_spec::paths::lexical_problem(target) {
            return Some(problem.to_string());
        }
        let sandbox_own = ["/", "/tmp", "/work"].contains(&target)
            || VOLUME_FORBIDDEN
                .iter()
                .any(|dir| runseal_spec::paths::is_within(target, dir));
        if sandbox_own {
            return Some(
                "is /, /tmp, /work or under /proc, /dev or /sys: the sandbox's own".into(),
            );
        }
        None
    }

    /// Opens the source once, as the work dir is; checks the target. A target inside the
    /// work dir or inside another volume would have its missing parents made there, on the
    /// host, by the job's setup (as root): volumes go beside those, not into them.
    fn open(&self, all: &[Volume], has_workdir: bool) -> Result<OwnedFd> {
        if let Some(problem) = self.target_problem() {
            return Err(self.refused(VolumeProblem::Target(problem)));
        }
        let target = self.target.to_string_lossy();
        let inside = |dir: &Path| {
            dir != self.target && runseal_spec::paths::is_within(&target, &dir.to_string_lossy())
        };
        if has_workdir && inside(Path::new("/work")) || all.iter().any(|v| inside(&v.target)) {
            return Err(self.refused(VolumeProblem::Nested));
        }
        if all.iter().filter(|v| v.target == self.target).count() > 1 {
            return Err(self.refused(VolumeProblem::Duplicate));
        }
        let fd = sys::open_through_no_symlink(&self.source, false).map_err(|e| {
            self.refused(match e.raw_os_error() {
                Some(libc::ELOOP) => VolumeProblem::Symlink,
                _ => VolumeProblem::Open(e),
            })
        })?;
        match sys::file_type(fd.as_fd())? {
            FileType::Directory if sys::is_host_root(fd.as_fd())? => {
                Err(self.refused(VolumeProblem::HostRoot))
            }
            FileType::Directory | FileType::RegularFile => Ok(fd),
            _ => Err(self.refused(VolumeProblem::Special)),
        }
    }
}

/// What a caller asks of a job, beyond the runtime: plain data, also the daemon's request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobRequest {
    pub command: Vec<String>,
    /// Variables set over the runtime's environment, in order.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub network: Network,
    /// The user to run as; [`DEFAULT_USER`] when absent.
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

impl Job {
    /// The job `request` describes on the runtime in `dir`, whose (validated) runtime.yml
    /// is `config`: the runtime's environment with the request's variables over it. Opens
    /// the runtime's tree (with its shared lock), every mount source and the work dir.
    pub fn for_runtime(dir: &Path, config: RuntimeConfig, request: JobRequest) -> Result<Job> {
        let mut environment: Vec<(String, String)> = config.environment.into_iter().collect();
        if !environment.iter().any(|(k, _)| k == "PATH") {
            environment.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        for (key, value) in request.env {
            match environment.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => environment.push((key, value)),
            }
        }
        let user = request.user.unwrap_or(DEFAULT_USER);
        let has_workdir = request.workdir.is_some();
        for (key, value) in identity::environment(user, has_workdir) {
            if !environment.iter().any(|(k, _)| k == key) {
                environment.push((key.to_string(), value));
            }
        }
        let (generation, sources) = open_sources(dir, &config.mounts)?;
        let volume_fds = request
            .volumes
            .iter()
            .map(|volume| volume.open(&request.volumes, has_workdir).map(Arc::new))
            .collect::<Result<_>>()?;
        let workdir_fd = match &request.workdir {
            Some(path) => Some(Arc::new(open_workdir(path, user)?)),
            None => None,
        };
        Ok(Job {
            runtime_dir: dir.to_path_buf(),
            mounts: config.mounts,
            sources,
            _generation: generation,
            environment,
            command: request.command,
            workdir: request.workdir,
            workdir_fd,
            limits: request.limits,
            network: request.network,
            user,
            etc_files: identity::etc_files(
                user,
                has_workdir,
                identity::host_resolv_conf(request.network),
            ),
            volumes: request.volumes,
            volume_fds,
        })
    }

    /// The opened source of `mounts[index]`.
    pub(crate) fn source(&self, index: usize) -> BorrowedFd<'_> {
        self.sources[index].as_fd()
    }

    /// The opened source of `volumes[index]`.
    pub(crate) fn volume_fd(&self, index: usize) -> BorrowedFd<'_> {
        self.volume_fds[index].as_fd()
    }

    pub(crate) fn workdir_fd(&self) -> Option<BorrowedFd<'_>> {
        self.workdir_fd.as_deref().map(AsFd::as_fd)
    }
}

/// Opens `isolated/` under `dir` with a shared lock, then each mount's source beneath it.
/// A re-seal may swap the tree between the open and the lock; then the locked tree is no
/// longer the runtime's, and it starts over. A removal may have taken the dir meanwhile;
/// then the job does not start.
fn open_sources(dir: &Path, mounts: &[Mount]) -> Result<(Arc<OwnedFd>, Vec<Arc<OwnedFd>>)> {
    let base = sys::open_dir(dir)?;
    let relative: Vec<&Path> = mounts
        .iter()
        .map(|m| {
            Path::new(&m.source)
                .strip_prefix(ISOLATED_DIR)
                .map_err(|_| Error::place(dir.join(&m.source), PlaceProblem::Unsealed))
        })
        .collect::<Result<_>>()?;
    let tree_label = dir.join(ISOLATED_DIR);
    for _ in 0..GENERATION_ATTEMPTS {
        let open_tree =
            || sys::open_dir_beneath(base.as_fd(), Path::new(ISOLATED_DIR), &tree_label);
        let tree = open_tree()?;
        lock_shared(&tree, &tree_label)?;
        // A removal renames the runtime dir away before it deletes, holding the lock this
        // waited for: a dir no longer at its name is being emptied under the job.
        let still_named = sys::open_dir(dir)
            .ok()
            .map(|now| sys::same_file(base.as_fd(), now.as_fd()))
            .transpose()?;
        if still_named != Some(true) {
            return Err(Error::Tree {
                tree: tree_label,
                problem: TreeProblem::Removed,
            });
        }
        if sys::same_file(tree.as_fd(), open_tree()?.as_fd())? {
            let sources = relative
                .iter()
                .map(|rel| sys::open_beneath(tree.as_fd(), rel, &tree_label).map(Arc::new))
                .collect::<Result<_>>()?;
            return Ok((Arc::new(tree), sources));
        }
    }
    Err(Error::Tree {
        tree: tree_label,
        problem: TreeProblem::Replaced(GENERATION_ATTEMPTS),
    })
}

/// How long a job start waits for its tree's shared lock. Only a removal holds it
/// exclusively, for moments; anyone else holding it longer (any local user can open the
/// dir) makes the start fail rather than hang.
const LOCK_WAIT: Duration = Duration::from_secs(5);

fn lock_shared(tree: &OwnedFd, label: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    while !sys::try_lock_shared(tree.as_fd(), label)? {
        if std::time::Instant::now() >= deadline {
            return Err(Error::Tree {
                tree: label.to_path_buf(),
                problem: TreeProblem::Locked(LOCK_WAIT),
            });
        }
        std::thread::sleep(Duration::from_millis(10))
    }
    Ok(())
}

/// Opens the work dir once; that fd is what the job gets, so a rename or a symlink swapped
/// in afterwards changes nothing. No symlink is followed on the way: a work dir inside an
/// earlier job's work dir could otherwise be redirected by a link that job planted.
fn open_workdir(path: &Path, user: User) -> Result<OwnedFd> {
    let refused = |problem| Error::Workdir {
        path: path.to_path_buf(),
        problem,
    };
    let fd = sys::open_through_no_symlink(path, true).map_err(|e| {
        refused(match e.raw_os_error() {
            Some(libc::ELOOP) => WorkdirProblem::Symlink,
            Some(libc::ENOTDIR) => WorkdirProblem::NotDirectory,
            _ => WorkdirProblem::Open(e),
        })
    })?;
    if sys::file_type(fd.as_fd())? != FileType::Directory {
        return Err(refused(WorkdirProblem::NotDirectory));
    }
    if sys::is_host_root(fd.as_fd())? {
        return Err(refused(WorkdirProblem::HostRoot));
    }
    let stat = sys::stat(fd.as_fd())?;
    if !may_enter(&stat, user) {
        return Err(refused(WorkdirProblem::Closed {
            uid: user.uid,
            gid: user.gid,
            owner: stat.st_uid,
            group: stat.st_gid,
            mode: stat.st_mode & 0o7777,
        }));
    }
    Ok(fd)
}

/// Whether the permission bits let `user` (with no capabilities) search `dir`.
fn may_enter(dir: &rustix::fs::Stat, user: User) -> bool {
    let bits = if dir.st_uid == user.uid {
        0o100
    } else if dir.st_gid == user.gid {
        0o010
    } else {
        0o001
    };
    dir.st_mode & bits != 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    /// CPU time as a number of CPUs (1.5 = one and a half cores' worth per period).
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    /// The size of the job's `/tmp` (a tmpfs, counted in the job's memory too).
    pub tmp_size: Option<u64>,
    pub timeout: Option<Duration>,
}

impl Limits {
    pub fn needs_cgroup(&self) -> bool {
        self.memory_bytes.is_some() || self.cpus.is_some() || self.pids.is_some()
    }

    /// These limits, with `defaults` wherever one is unset.
    pub fn or(self, defaults: &Limits) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes.or(defaults.memory_bytes),
            cpus: self.cpus.or(defaults.cpus),
            pids: self.pids.or(defaults.pids),
            tmp_size: self.tmp_size.or(defaults.tmp_size),
            timeout: self.timeout.or(defaults.timeout),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new network namespace holding only loopback.
    #[default]
    None,
    /// The host's network.
    Host,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    /// Killed by the kernel's OOM killer at the job's memory limit.
    OutOfMemory {
        limit_bytes: u64,
    },
}

impl Outcome {
    /// The exit code a shell would report: the code, 128+N for signal N, 124 for a timeout.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Exited(code) => code,
            Outcome::Signaled(signal) => 128 + signal,
            Outcome::TimedOut => 124,
            Outcome::OutOfMemory { .. } => 128 + libc::SIGKILL,
        }
    }

    /// Why runseal ended the job, when the exit code alone does not say.
    pub fn reason(self) -> Option<String> {
        match self {
            Outcome::OutOfMemory { limit_bytes } => Some(format!(
                "killed: out of memory (limit {})",
                format_size(limit_bytes)
            )),
            _ => None,
        }
    }

    /// This outcome, as an OOM kill if the job died of SIGKILL while its memory cgroup
    /// (limited to `limit_bytes`) counted OOM kills, which `oom_kills` reads only then.
    pub fn with_oom_kills(
        self,
        oom_kills: impl FnOnce() -> u64,
        limit_bytes: Option<u64>,
    ) -> Outcome {
        match (self, limit_bytes) {
            (Outcome::Signaled(libc::SIGKILL), Some(limit_bytes)) if oom_kills() > 0 => {
                Outcome::OutOfMemory { limit_bytes }
            }
            _ => self,
        }
    }
}

/// The caller's own value of a variable, for a bare name in [`parse_env`].
pub type Inherit<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses `K=V` pairs (as `--env` takes them) into variables, in order. A bare `K` takes
/// `inherit(K)`, the caller's own value (none: the variable is left out), where the caller
/// has an environment to pass on; elsewhere it is an error.
pub fn parse_env(
    pairs: &[String],
    inherit: Option<Inherit<'_>>,
) -> std::result::Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    for pair in pairs {
        match (pair.split_once('='), inherit) {
            (Some((key, value)), _) if !key.is_empty() => {
                env.push((key.to_string(), value.to_string()))
            }
            (None, Some(inherit)) if !pair.is_empty() => {
                if let Some(value) = inherit(pair) {
                    env.push((pair.clone(), value));
                }
            }
            _ => return Err(format!("`{pair}`: expected K=V")),
        }
    }
    Ok(env)
}

/// Parses `512M`, `2G`, `1.5G`, `100k` or plain bytes (powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 512M, 2G, 1048576)"))?;
    let multiplier: u64 = match unit.to_ascii_lowercase().trim_end_matches(['b', 'i']) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use K, M, G or T)"
            ))
        }
    };
    let bytes = value * multiplier as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as u64)
}

/// `bytes` as [`parse_size`] reads it back: `64M`, `2G`, `1536M`, or plain bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("0").is_err());
        for size in ["64M", "2G", "1536M", "100K", "1000", "3T"] {
            assert_eq!(format_size(parse_size(size).unwrap()), size);
        }
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(Outcome::Exited(3).exit_code(), 3);
        assert_eq!(Outcome::Signaled(9).exit_code(), 137);
        assert_eq!(Outcome::TimedOut.exit_code(), 124);
        let oom = Outcome::OutOfMemory {
            limit_bytes: 64 << 20,
        };
        assert_eq!(oom.exit_code(), 137);
        assert_eq!(
            oom.reason().as_deref(),
            Some("killed: out of memory (limit 64M)")
        );
        assert_eq!(Outcome::Signaled(9).reason(), None);
    }

    #[test]
    fn only_a_sigkill_counted_by_the_memory_cgroup_is_an_oom_kill() {
        let oom = Outcome::OutOfMemory { limit_bytes: 64 };
        assert_eq!(Outcome::Signaled(9).with_oom_kills(|| 1, Some(64)), oom);
        assert_eq!(
            Outcome::Signaled(9).with_oom_kills(|| 0, Some(64)),
            Outcome::Signaled(9)
        );
        assert_eq!(
            Outcome::Signaled(9).with_oom_kills(|| 1, None),
            Outcome::Signaled(9)
        );
        assert_eq!(
            Outcome::Exited(1).with_oom_kills(|| 1, Some(64)),
            Outcome::Exited(1)
        );
        assert_eq!(
            Outcome::TimedOut.with_oom_kills(|| 1, Some(64)),
            Outcome::TimedOut
        );
    }
}
