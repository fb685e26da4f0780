//! The builder: a runtime's setup script runs against an overlay of the host's root whose
//! writable layer is a tmpfs in a private mount namespace, so whatever it installs, deletes
//! or rewrites never reaches the host. Only the runtimes root is bound through, writable, for
//! the runtime.yml the script writes; the caller's `seal` then reads the script's results
//! through the overlay while it still exists, and copies them into the runtime dir.
//!
//! The script runs as root (package managers need it) but without the capabilities that
//! reach past the overlay: mounting, chroot, device nodes, raw I/O, modules, reboot, ptrace.
//! It sees the host's network (package registries), a fresh /proc and a minimal /dev.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::pipe::{pipe_with, PipeFlags};

use rustix::thread::CapabilitySet;
use seccompiler::BpfProgram;

use runseal_spec::beneath::{self, Links};
use runseal_spec::paths::below_root;

use crate::error::{BuildProblem, Error, Result};
use crate::launch::wait;
use crate::report::Report;
use crate::rootfs::{detach_trees, populate, proc_and_dev, HostFds, Source, Step};
use crate::seccomp;
use crate::sys::{self, Dirs, Forked, Leaf, MountAttr, MountOps, RealMounts};

/// Where the build's tmpfs is mounted, inside the builder's own mount namespace.
const BUILD_MOUNTPOINT: &str = "/run/runseal/build";

#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The setup script, run as `sh SCRIPT RUNTIMES_ROOT`.
    pub script: PathBuf,
    pub runtimes_root: PathBuf,
    /// The runtime dir's name under the root; else the last line the script prints.
    pub name: Option<String>,
}

/// Runs `spec`'s script in the builder, then `seal(merged_root, runtime_dir)` while the
/// overlay still exists. Returns the runtime dir. The script's output goes to stderr.
pub fn build_in_overlay(
    spec: &BuildSpec,
    seal: &dyn Fn(&Path, &Path) -> std::result::Result<(), String>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(BUILD_MOUNTPOINT)
        .map_err(|e| Error::sys(format!("mkdir -p {BUILD_MOUNTPOINT}"), e))?;
    std::fs::create_dir_all(&spec.runtimes_root)
        .map_err(|e| Error::sys(format!("mkdir -p {}", spec.runtimes_root.display()), e))?;
    let (report_read, report_write) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    match sys::clone_into_namespaces(flags)? {
        Forked::Child => {
            drop(report_read);
            let (report, code) = match builder(spec, seal) {
                Ok(dir) => (Report::Built(dir), 0),
                Err(e) => (Report::Failed(e.to_string()), 1),
            };
            report.send(&report_write);
            sys::exit_now(code)
        }
        Forked::Parent(pid) => {
            drop(report_write);
            let report = Report::receive(report_read);
            wait(pid)?;
            let message = match report {
                Some(Report::Built(dir)) => return Ok(dir),
                Some(Report::Failed(message)) => message,
                other => format!("the builder ended without saying what it built ({other:?})"),
            };
            Err(Error::Setup {
                message,
                exit_code: 1,
            })
        }
    }
}

/// PID 1 of the builder's namespaces.
fn builder(
    spec: &BuildSpec,
    seal: &dyn Fn(&Path, &Path) -> std::result::Result<(), String>,
) -> Result<PathBuf> {
    sys::die_with_parent()?;
    let host = HostFds::open()?;
    let merged = builder_root(&mut RealMounts, Path::new(BUILD_MOUNTPOINT), spec, &host)?;
    let filters = seccomp::builder_filters()?;
    let (output_read, output_write) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let script_pid = match sys::fork()? {
        Forked::Child => {
            drop(output_read);
            let error = run_script(spec, &merged, output_write, &filters);
            eprintln!("runseal build: {error}");
            sys::exit_now(127)
        }
        Forked::Parent(pid) => pid,
    };
    drop(output_write);
    let mut last_line = String::new();
    for line in BufReader::new(std::fs::File::from(output_read)).lines() {
        let line = line.map_err(|e| Error::sys("read(setup output)", e))?;
        eprintln!("{line}");
        if !line.trim().is_empty() {
            last_line = line.trim().to_string();
        }
    }
    let status = wait(script_pid)?;
    // Whatever the script left running in the background could keep changing the runtime
    // dir while it is sealed; as PID 1 of the builder, end it all first.
    sys::kill_all_others()?;
    match status.exit_status() {
        Some(0) => {}
        Some(code) => {
            return Err(BuildProblem::ScriptFailed {
                script: spec.script.clone(),
                code,
            }
            .into())
        }
        None => {
            return Err(BuildProblem::ScriptKilled {
                script: spec.script.clone(),
            }
            .into())
        }
    }
    let name = runtime_name(spec, &last_line)?;
    let dir = spec.runtimes_root.join(&name);
    let yaml = read_runtime_yml(&merged, &dir)?;
    // A build makes the runtime NAME, not one that answers to another runtime's name.
    let declared = runseal_spec::RuntimeConfig::parse(&yaml, &dir.join("runtime.yml"))?.name;
    if let Some(declared) = declared.filter(|declared| *declared != name) {
        return Err(BuildProblem::OtherName {
            dir,
            declared,
            name,
        }
        .into());
    }
    // A fresh dir of runseal's own on the host: nothing the script wrote reaches the host
    // but this text and what the seal copies (setuid bits stripped, modes checked).
    std::fs::create_dir(&dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => BuildProblem::Exists {
            dir: dir.clone(),
            name,
        },
        _ => BuildProblem::CreateDir {
            dir: dir.clone(),
            source,
        },
    })?;
    let sealed = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(runseal_spec::RUNTIME_YML))
        .and_then(|mut file| file.write_all(yaml.as_bytes()))
        .map_err(|e| Error::sys(format!("write {}/runtime.yml", dir.display()), e))
        .and_then(|()| seal(&merged, &dir).map_err(|e| BuildProblem::Seal(e).into()));
    if let Err(e) = sealed {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(dir)
}

/// The runtime the script made: `--name`, else the last line it printed, which must be
/// `ROOT/NAME` for one plain NAME. A script may not name a runtime anywhere else.
fn runtime_name(spec: &BuildSpec, last_line: &str) -> Result<String> {
    let name = match &spec.name {
        Some(name) => name.clone(),
        None => Path::new(last_line)
            .strip_prefix(&spec.runtimes_root)
            .ok()
            .and_then(|rest| rest.to_str())
            .unwrap_or_default()
            .to_string(),
    };
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && Path::new(&name).components().count() == 1
        && !name.contains('/');
    if plain {
        return Ok(name);
    }
    Err(BuildProblem::NoRuntimeDir {
        root: spec.runtimes_root.clone(),
        printed: last_line.to_string(),
    }
    .into())
}

/// The runtime.yml the script wrote at `dir` inside the overlay `merged`: resolved inside
/// the overlay through no symlink (a link the script made at `ROOT/NAME` would otherwise
/// lead out of it, to any file of the host), a regular file of reasonable size.
fn read_runtime_yml(merged: &Path, dir: &Path) -> Result<String> {
    use rustix::fs::OFlags;
    let inside = dir.join(runseal_spec::RUNTIME_YML);
    let root = sys::open_dir(merged)?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK;
    let file = beneath::open(&root, Path::new(below_root(&inside)), flags, Links::Refuse).map_err(
        |e| BuildProblem::NoRuntimeYml {
            path: inside.clone(),
            source: e.into(),
        },
    )?;
    Ok(runseal_spec::read_opened_runtime_yml(
        std::fs::File::from(file),
        &inside,
    )?)
}

/// The builder's root: a private tmpfs on `base` holds an overlay of `/` (every write of
/// the script lands in its upper dir, on the tmpfs), populated with [`builder_steps`].
/// Returns where the overlay is attached.
fn builder_root(
    ops: &mut dyn MountOps,
    base: &Path,
    spec: &BuildSpec,
    host: &HostFds,
) -> Result<PathBuf> {
    ops.make_mounts_private()?;
    let scratch = ops.tmpfs(0o700, None)?;
    ops.attach(scratch.as_fd(), sys::open_dir(base)?.as_fd(), base)?;
    let scratch_dirs = Dirs::new(scratch.as_fd());
    scratch_dirs.make(Path::new("/upper"), Leaf::Dir)?;
    scratch_dirs.make(Path::new("/work"), Leaf::Dir)?;
    let merged_at = scratch_dirs.make(Path::new("/merged"), Leaf::Dir)?;
    let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
    let overlay = ops.overlay(&["/".into()], Some((upper, work)))?;
    ops.attach(overlay.as_fd(), merged_at.as_fd(), &merged)?;
    let steps = builder_steps(spec);
    let trees = detach_trees(ops, None, host, &steps)?;
    populate(ops, overlay.as_fd(), trees, &steps)?;
    Ok(merged)
}

/// The builder's root on top of the overlay, as steps of the same kind a job root is made of.
fn builder_steps(spec: &BuildSpec) -> Vec<Step> {
    let mut steps: Vec<Step> = ["/proc", "/dev", "/tmp", "/run"]
        .into_iter()
        .map(|dir| Step::SandboxDir { path: dir.into() })
        .collect();
    steps.extend(proc_and_dev());
    for (dir, mode) in [("/tmp", 0o1777), ("/run", 0o755)] {
        steps.push(Step::Tmpfs {
            target: dir.into(),
            mode,
            size: None,
        });
    }
    // Host state a setup script has no business reading, and the runtimes root, where it
    // writes its runtime.yml into a tmpfs of its own: it sees no other runtime, and nothing
    // it writes there reaches the host except through the seal.
    for dir in HIDDEN_DIRS
        .iter()
        .map(PathBuf::from)
        .chain([spec.runtimes_root.clone()])
    {
        steps.push(Step::SandboxDir { path: dir.clone() });
        steps.push(Step::Tmpfs {
            target: dir,
            mode: 0o755,
            size: None,
        });
    }
    for file in HIDDEN_FILES {
        steps.push(Step::Mask {
            target: file.into(),
        });
    }
    // The script's dir, for the files it sources beside it (it may live in /tmp), unless
    // that dir is one the script must not see: then the script alone.
    let script_dir = spec.script.parent().unwrap_or(Path::new("/"));
    let hidden = HIDDEN_DIRS
        .iter()
        .map(Path::new)
        .chain([spec.runtimes_root.as_path()])
        .any(|dir| script_dir.starts_with(dir));
    let (shown, leaf) = if hidden {
        (spec.script.as_path(), Leaf::File)
    } else {
        (script_dir, Leaf::Dir)
    };
    steps.push(Step::Bind {
        source: Source::Host(shown.to_path_buf()),
        target: shown.to_path_buf(),
        leaf,
        attr: MountAttr::READ_ONLY,
    });
    steps
}

/// Directories of the host a setup script sees empty: users' homes and temp files.
const HIDDEN_DIRS: [&str; 3] = ["/root", "/home", "/var/tmp"];

/// Files of the host a setup script sees as /dev/null: password hashes and host keys.
const HIDDEN_FILES: [&str; 10] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
    "/etc/security/opasswd",
    "/etc/sudoers",
];

/// What a package manager needs of root's powers, and nothing that reaches past the
/// overlay: no mount, raw I/O, file handles (`open_by_handle_at` needs DAC_READ_SEARCH),
/// network configuration, modules, ptrace, or resource limits beyond the host's.
const KEPT_CAPABILITIES: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID);

/// In the script's process: chroot into the overlay, give up every capability but
/// [`KEPT_CAPABILITIES`], close what the caller had open, load the builder's seccomp
/// filters, send stdout into the pipe, exec. Returns only on failure.
fn run_script(spec: &BuildSpec, merged: &Path, output: OwnedFd, filters: &[BpfProgram]) -> Error {
    let setup = sys::chroot_into(merged)
        .and_then(|()| sys::keep_only_capabilities(KEPT_CAPABILITIES))
        .and_then(|()| sys::close_inherited_fds())
        .and_then(|()| seccomp::load(filters));
    if let Err(e) = setup {
        return e;
    }
    let mut command = Command::new("/bin/sh");
    command
        .arg(&spec.script)
        .arg(&spec.runtimes_root)
        .stdout(std::fs::File::from(output));
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    let _ = std::io::stderr().flush();
    Error::sys(format!("exec /bin/sh {}", spec.script.display()), error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{refused_symlink_at, Recorder};

    /// A stand-in for the overlay of `/`, holding a host secret and the host dirs the
    /// builder hides.
    fn host_like() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for dir in ["etc", "root", "home/alice", "var/tmp", "usr/bin"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("etc/shadow"), "root:$y$secret").unwrap();
        root
    }

    fn spec(script_dir: &Path, runtimes_root: &Path) -> BuildSpec {
        BuildSpec {
            script: script_dir.join("setup.sh"),
            runtimes_root: runtimes_root.to_path_buf(),
            name: None,
        }
    }

    /// The builder's root made with `root` standing in for the overlay of `/`.
    fn build_root(spec: &BuildSpec, root: &Path) -> (Result<PathBuf>, Recorder) {
        let mut recorder = Recorder::new();
        recorder.overlay_shows = Some(root.to_path_buf());
        let host = HostFds::open().unwrap();
        let base = recorder.scratch.path().join("base");
        std::fs::create_dir(&base).unwrap();
        let outcome = builder_root(&mut recorder, &base, spec, &host);
        (outcome, recorder)
    }

    #[test]
    fn the_builder_root_hides_runtimes_and_secrets_and_shows_the_script_read_only() {
        let (scripts, runtimes) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let spec = spec(scripts.path(), runtimes.path());
        let root = host_like();
        let (outcome, recorder) = build_root(&spec, root.path());
        let base = recorder.scratch.path().join("base");
        assert_eq!(outcome.unwrap(), base.join("merged"));
        let b = base.display();
        // The scratch tmpfs is attached before anything else, the overlay on it, and only
        // then is the builder's root populated inside the overlay.
        assert_eq!(
            recorder.log[..4],
            [
                "private /".to_string(),
                format!("attach tmpfs 700 None at {b}"),
                format!("overlay / upper {b}/upper work {b}/work"),
                format!("attach overlay at {b}/merged"),
            ]
        );
        assert!(
            base.read_dir().unwrap().next().is_none(),
            "nothing made on the host"
        );
        let log = recorder.log.join("\n");
        let runtimes = runtimes.path().display();
        for expected in [
            format!("attach tmpfs 755 None at {runtimes}"),
            "attach tmpfs 755 None at /root".to_string(),
            "attach tmpfs 755 None at /home".to_string(),
            "attach tmpfs 755 None at /var/tmp".to_string(),
            "attach tree null at /etc/shadow".to_string(),
            "attach proc at /proc".to_string(),
            format!("ro {} (tree ", scripts.path().display()),
        ] {
            assert!(log.contains(&expected), "{expected}:\n{log}");
        }
        // The runtimes root is never bound from the host, only made empty.
        assert!(!log.contains(&format!("tree {} ", runtimes)), "{log}");
    }

    #[test]
    fn a_symlink_where_the_builder_hides_a_dir_stops_the_build_and_reaches_nothing() {
        let (scripts, runtimes) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let spec = spec(scripts.path(), runtimes.path());
        let root = host_like();
        let outside = tempfile::tempdir().unwrap();
        std::fs::remove_dir_all(root.path().join("home")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("home")).unwrap();
        let (outcome, recorder) = build_root(&spec, root.path());
        let err = outcome.unwrap_err();
        assert!(refused_symlink_at(&err, "/home"), "{err}");
        assert!(!recorder.log.iter().any(|l| l.ends_with(" at /home")));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
